"""YOLO heads without NMS in the graph: one candidate box per anchor. Pure.

``yolov8`` (Ultralytics v8 and later): ``[B, 4 + nc, A]``, rows cx, cy, w, h in input
pixels then each class's score, already sigmoided; no objectness. ``yolov5``:
``[B, A, 5 + nc]``, columns cx, cy, w, h, objectness, class scores; a box's score is
objectness times its class's score. Each anchor keeps its best class only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline.inference.decoders import register
from pipeline.inference.decoders._boxes import DetectParams, cxcywh_to_xyxy, finish
from pipeline.inference.decoders._common import batch_of, pick_output
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Boxes, Decoded

__all__ = ["YoloV5Params", "YoloV8Params", "decode_yolov5", "decode_yolov8"]


@dataclass(frozen=True, slots=True, kw_only=True)
class YoloV8Params(DetectParams):
    """``DetectParams``, and ``transposed``: the output is ``[B, A, 4 + nc]`` instead."""

    decoder: ClassVar[str] = "yolov8"
    transposed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class YoloV5Params(DetectParams):
    """``DetectParams`` for a YOLOv5-layout head."""

    decoder: ClassVar[str] = "yolov5"


def _best_class(
    rows: np.ndarray, class_scores: np.ndarray, geometry: Geometry, params: DetectParams
) -> Boxes:
    """Anchors [A, 4] (cx, cy, w, h) and their class scores [A, nc] -> ``Boxes``."""
    # NaN scores count as 0 so that argmax never picks one; finish drops the rest.
    clean = np.where(np.isfinite(class_scores), class_scores, 0.0)
    classes = np.argmax(clean, axis=1)
    scores = np.take_along_axis(clean, classes[:, None], axis=1)[:, 0]
    return finish(cxcywh_to_xyxy(rows), scores, classes, geometry, params)


@register("yolov8", YoloV8Params)
def decode_yolov8(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: YoloV8Params
) -> list[Decoded]:
    """Ultralytics v8+ head -> one ``Boxes`` per image (see the module's docstring)."""
    head = pick_output("yolov8", outputs, params.output, "decoder.output")
    if params.transposed:
        batch_of("yolov8", head, geometries, "[batch, anchors, 4 + classes]", (0, 5))
    else:
        hint = "[batch, 4 + classes, anchors] (or set decoder.transposed)"
        batch_of("yolov8", head, geometries, hint, (5, 0))
        head = head.transpose(0, 2, 1)
    rows = head.astype(np.float32)
    return [
        _best_class(r[:, :4], r[:, 4:], g, params) for r, g in zip(rows, geometries, strict=True)
    ]


@register("yolov5", YoloV5Params)
def decode_yolov5(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: YoloV5Params
) -> list[Decoded]:
    """YOLOv5 head -> one ``Boxes`` per image (see the module's docstring)."""
    head = pick_output("yolov5", outputs, params.output, "decoder.output")
    batch_of("yolov5", head, geometries, "[batch, anchors, 5 + classes]", (0, 6))
    rows = head.astype(np.float32)
    return [
        _best_class(r[:, :4], r[:, 4:5] * r[:, 5:], g, params)
        for r, g in zip(rows, geometries, strict=True)
    ]
