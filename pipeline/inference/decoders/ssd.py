"""SSD-style heads with separate tensors -> one ``Boxes`` per image. Pure.

Boxes ``[B, K, 4]``, scores ``[B, K]``, classes ``[B, K]`` and optionally a count
``[B]`` of valid rows (rows past it are padding). The defaults match the TensorFlow
Object Detection API / TFLite export: ``detection_*`` tensors, boxes y1, x1, y2, x2 in
0..1 of the input, NMS already done in the graph.

Normalised boxes are multiplied by the model input's size: ``input_width`` and
``input_height`` when set, else the source size times the scale plus twice the pad
(a centred letterbox; set them for any other preprocessing). Classes are indexes
into the model's labels after subtracting ``class_offset`` (1 for label maps whose 0
is the background); rows whose class is then negative are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from pipeline.declared import ranged
from pipeline.inference.decoders import register
from pipeline.inference.decoders._boxes import DetectParams, finish
from pipeline.inference.decoders._common import (
    batch_of,
    input_size,
    pick_output,
    shape_error,
)
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Decoded

__all__ = ["SsdParams", "decode_ssd"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SsdParams(DetectParams):
    """``DetectParams`` (``output`` unused: the tensors are named here), and:

    ``boxes_output``, ``scores_output``, ``classes_output``: the tensors' names;
    ``count_output``: the count tensor's, "" for none; ``box_format``: coordinate
    order; ``normalized``: boxes in 0..1 of the input, else input pixels;
    ``input_width``/``input_height``: the input's size, 0 to derive it; ``nms``: run
    NMS here too (for graphs without it); ``class_offset``: subtracted from classes.
    """

    decoder: ClassVar[str] = "ssd"
    boxes_output: str = "detection_boxes"
    scores_output: str = "detection_scores"
    classes_output: str = "detection_classes"
    count_output: str = ""
    box_format: Literal["xyxy", "yxyx"] = "yxyx"
    normalized: bool = True
    input_width: int = ranged(0, lo=0)
    input_height: int = ranged(0, lo=0)
    nms: bool = False
    class_offset: int = ranged(0, lo=0)


def _tensors(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: SsdParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boxes [B, K, 4] (x1, y1, x2, y2), scores, classes [B, K], counts [B], checked."""
    boxes = pick_output("ssd", outputs, params.boxes_output, "decoder.boxes_output")
    scores = pick_output("ssd", outputs, params.scores_output, "decoder.scores_output")
    classes = pick_output("ssd", outputs, params.classes_output, "decoder.classes_output")
    batch_of("ssd", boxes, geometries, "boxes [batch, K, 4]", (0, 4))
    if boxes.shape[2] != 4:
        shape_error("ssd", boxes, geometries, "boxes [batch, K, 4]")
    k = boxes.shape[1]
    for tensor, what in ((scores, "scores"), (classes, "classes")):
        if tensor.shape != boxes.shape[:2]:
            shape_error("ssd", tensor, geometries, f"{what} [batch, {k}] like the boxes")
    counts = np.full(len(geometries), k, dtype=np.int64)
    if params.count_output:
        given = pick_output("ssd", outputs, params.count_output, "decoder.count_output")
        if given.shape != (len(geometries),):
            shape_error("ssd", given, geometries, "count [batch]")
        finite = np.where(np.isfinite(given), given, 0)
        counts = np.clip(finite, 0, k).astype(np.int64)
    xyxy = boxes.astype(np.float32)
    if params.box_format == "yxyx":
        xyxy = xyxy[:, :, [1, 0, 3, 2]]
    return xyxy, scores.astype(np.float32), classes, counts


@register("ssd", SsdParams)
def decode_ssd(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: SsdParams
) -> list[Decoded]:
    """Separate box, score, class (and count) tensors -> one ``Boxes`` per image."""
    xyxy, scores, classes, counts = _tensors(outputs, geometries, params)
    answers: list[Decoded] = []
    for i, geometry in enumerate(geometries):
        n = int(counts[i])
        boxes = xyxy[i, :n]
        if params.normalized:
            width, height = input_size(geometry, params.input_width, params.input_height)
            boxes = boxes * np.array([width, height, width, height], dtype=np.float32)
        ids = classes[i, :n].astype(np.float64) - params.class_offset
        ok = np.isfinite(ids) & (ids >= 0)
        answers.append(
            finish(
                boxes[ok],
                scores[i, :n][ok],
                ids[ok].astype(np.int64),
                geometry,
                params,
                suppress=params.nms,
            )
        )
    return answers
