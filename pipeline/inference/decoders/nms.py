"""Greedy non-maximum suppression in numpy. Pure.

Per-class suppression uses the Ultralytics trick: each box is shifted by its class
index times a span larger than every coordinate, so boxes of different classes never
overlap and one class-agnostic pass does the work of one pass per class.
"""

from __future__ import annotations

import numpy as np

__all__ = ["iou", "nms"]


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box [4] with boxes [K, 4], all x1, y1, x2, y2.

    Boxes without area have IoU 0 with everything.
    """
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area = max(float(box[2] - box[0]), 0.0) * max(float(box[3] - box[1]), 0.0)
    areas = np.clip(others[:, 2] - others[:, 0], 0.0, None) * np.clip(
        others[:, 3] - others[:, 1], 0.0, None
    )
    union = area + areas - inter
    return np.where(union > 0.0, inter / np.where(union > 0.0, union, 1.0), 0.0)


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    *,
    classes: np.ndarray | None = None,
    max_detections: int | None = None,
) -> np.ndarray:
    """Indexes (int64) of the boxes kept, best score first (ties: lower index first).

    A box is dropped when its IoU with a better kept box exceeds ``iou_threshold``.
    With ``classes`` (int [K]) only boxes of the same class suppress each other.
    Stops once ``max_detections`` boxes are kept. Inputs must be finite.
    """
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if classes is not None and len(boxes):
        span = float(np.abs(boxes).max()) * 2.0 + 1.0
        boxes = boxes + (np.asarray(classes, dtype=np.float64) * span)[:, None]
    limit = len(order) if max_detections is None else max_detections
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
