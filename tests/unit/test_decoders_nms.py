"""Greedy NMS on boxes whose overlaps are known by hand."""

from __future__ import annotations

import numpy as np

from pipeline.inference.decoders.nms import iou, nms

# Box 1 is box 0 shifted right by 2: intersection 8 x 10 = 80, union 120, IoU 2/3.
# Box 2 is box 0 shifted right by 5: intersection 50, union 150, IoU 1/3.
# Box 3 is far from everything.
BOXES = np.array(
    [[0, 0, 10, 10], [2, 0, 12, 10], [5, 0, 15, 10], [100, 100, 110, 120]], dtype=np.float32
)


def test_iou_of_known_overlaps() -> None:
    np.testing.assert_allclose(iou(BOXES[0], BOXES), [1.0, 2 / 3, 1 / 3, 0.0], rtol=1e-6)


def test_iou_of_a_box_without_area_is_zero() -> None:
    flat = np.array([[3, 3, 3, 8], [0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(iou(flat[0], flat), [0.0, 0.0])
    np.testing.assert_array_equal(iou(BOXES[0], flat), [0.0, 0.0])


def test_suppresses_above_the_threshold_only() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    # 1 overlaps 0 by 2/3 > 0.5: dropped; 2 overlaps 0 by 1/3: kept.
    assert nms(BOXES, scores, 0.5).tolist() == [0, 2, 3]
    # With a threshold of 0.3, 2 goes too.
    assert nms(BOXES, scores, 0.3).tolist() == [0, 3]
    # A suppressed box suppresses nothing: 2 overlaps 1 by 7/13 > 0.5 but 1 is gone.
    assert nms(BOXES, scores, 0.6).tolist() == [0, 2, 3]


def test_best_score_first_and_ties_by_index() -> None:
    scores = np.array([0.5, 0.5, 0.9, 0.5], dtype=np.float32)
    # 2 first; it overlaps 1 by 7/13 and 0 by 1/3; at 0.5, 1 is dropped, 0 kept.
    assert nms(BOXES, scores, 0.5).tolist() == [2, 0, 3]
    assert nms(BOXES, scores, 1.0).tolist() == [2, 0, 1, 3]


def test_per_class_boxes_only_suppress_their_own_class() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    classes = np.array([0, 1, 0, 1])
    assert nms(BOXES, scores, 0.5, classes=classes).tolist() == [0, 1, 2, 3]
    assert nms(BOXES, scores, 0.3, classes=classes).tolist() == [0, 1, 3]
    same = np.array([4, 4, 4, 4])
    assert nms(BOXES, scores, 0.5, classes=same).tolist() == nms(BOXES, scores, 0.5).tolist()


def test_per_class_offset_works_for_negative_and_large_coordinates() -> None:
    boxes = np.array([[-5000, -5000, 9000, 9000], [-5000, -5000, 9000, 9000]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms(boxes, scores, 0.5, classes=np.array([0, 1])).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5, classes=np.array([1, 1])).tolist() == [0]


def test_max_detections_and_empty_input() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6], dtype=np.float32)
    assert nms(BOXES, scores, 1.0, max_detections=2).tolist() == [0, 1]
    kept = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5, classes=np.zeros(0))
    assert kept.dtype == np.int64
    assert kept.tolist() == []
