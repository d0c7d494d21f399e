"""What the box detectors share: their common parameters and candidates -> ``Boxes``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.declared import ranged
from pipeline.inference.decoders._common import Params
from pipeline.inference.decoders.nms import nms
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Boxes

__all__ = ["DetectParams", "cxcywh_to_xyxy", "finish"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectParams(Params):
    """Thresholds shared by the box detectors.

    ``score_threshold``: boxes scoring below it are dropped. ``iou_threshold``: NMS
    drops a box overlapping a better one by more than this. ``class_agnostic``: NMS
    across classes instead of within each. ``max_detections``: at most this many
    boxes per image. ``output``: the tensor to read; "" means the model's first.
    """

    score_threshold: float = ranged(0.25, lo=0.0, hi=1.0)
    iou_threshold: float = ranged(0.45, lo=0.0, hi=1.0)
    max_detections: int = ranged(100, lo=1)
    class_agnostic: bool = False
    output: str = ""


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre x, y, width, height [K, 4] -> x1, y1, x2, y2 [K, 4]."""
    half = boxes[:, 2:4] / 2.0
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)


def finish(
    xyxy: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    geometry: Geometry,
    params: DetectParams,
    *,
    suppress: bool = True,
) -> Boxes:
    """One image's candidates (boxes in input pixels) -> its ``Boxes`` in source pixels.

    Drops candidates with a non-finite coordinate or score, or a score below the
    threshold; then NMS (unless ``suppress`` is False: the model did it), best first,
    at most ``max_detections``; then undoes the resize/letterbox.
    """
    ok = np.all(np.isfinite(xyxy), axis=1) & np.isfinite(scores)
    ok[ok] = scores[ok] >= params.score_threshold
    xyxy, scores, classes = xyxy[ok], scores[ok], classes[ok]
    if suppress:
        keep = nms(
            xyxy,
            scores,
            params.iou_threshold,
            classes=None if params.class_agnostic else classes,
            max_detections=params.max_detections,
        )
    else:
        keep = np.argsort(-scores, kind="stable")[: params.max_detections]
    boxes = geometry.to_source(xyxy[keep])
    # A box wholly in the letterbox's border clips to nothing in the source image.
    seen = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep = keep[seen]
    return Boxes(
        xyxy=boxes[seen],
        scores=np.clip(scores[keep], 0.0, 1.0).astype(np.float32),
        classes=classes[keep].astype(np.int64),
    )
