"""DB text detection (PaddleOCR's det models): probability map -> text boxes. Pure.

The map ``[B, 1, H, W]`` gives each input pixel's probability of being text; it must
be at the model input's resolution (as PaddleOCR's DB heads are). Per image: pixels
above ``bitmap_threshold`` form regions; each region's outline (at most
``max_candidates`` of them) gets its minimum-area rectangle; rectangles shorter than
``min_size`` on a side, or whose mean probability inside is below ``box_threshold``,
are dropped; the rest are grown on every side by ``area * unclip_ratio / perimeter``
(PaddleOCR's unclip, done on the rectangle instead of with pyclipper, which gives the
same rectangle up to its rounded corners) and dropped if still shorter than
``min_size + 2``. NaN or infinity in the map counts as probability 0.

Each ``Boxes`` has ``polygons`` [K, 4, 2]: the corners top-left, top-right,
bottom-right, bottom-left in source pixels; ``xyxy`` their bounding boxes; ``scores``
the mean probabilities; ``classes`` all 0. Boxes are in reading order, not best
first: top to bottom, boxes whose top-left corners are less than ``line_tolerance``
source pixels apart vertically count as one line, left to right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from pipeline.declared import ranged
from pipeline.inference.decoders import register
from pipeline.inference.decoders._common import (
    Params,
    batch_of,
    pick_output,
    shape_error,
)
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Boxes, Decoded

__all__ = ["DbParams", "decode_db"]

_Rect = tuple[Sequence[float], Sequence[float], float]


@dataclass(frozen=True, slots=True, kw_only=True)
class DbParams(Params):
    """PaddleOCR's DB post-processing settings (names as in its ``DBPostProcess``,
    ``thresh`` -> ``bitmap_threshold``, ``box_thresh`` -> ``box_threshold``); see the
    module's docstring. ``output``: the tensor, "" for the first."""

    decoder: ClassVar[str] = "db"
    output: str = ""
    bitmap_threshold: float = ranged(0.3, lo=0.0, hi=1.0)
    box_threshold: float = ranged(0.6, lo=0.0, hi=1.0)
    unclip_ratio: float = ranged(1.5, lo=0.0)
    max_candidates: int = ranged(1000, lo=1)
    min_size: int = ranged(3, lo=1)
    line_tolerance: float = ranged(10.0, lo=0.0)


def _corners(rect: _Rect) -> np.ndarray:
    """A rotated rectangle's corners [4, 2]: top-left, top-right, bottom-right, bottom-left."""
    by_x = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: (p[0], p[1]))
    left = sorted(by_x[:2], key=lambda p: p[1])
    right = sorted(by_x[2:], key=lambda p: p[1])
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _mean_inside(prob: np.ndarray, corners: np.ndarray) -> float:
    """Mean of ``prob`` over the pixels inside the quadrilateral ``corners``."""
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(corners.min(axis=0)), 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)), 0, [w - 1, h - 1]).astype(int)
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (corners - np.array([x0, y0], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def _regions(prob: np.ndarray, params: DbParams) -> list[tuple[np.ndarray, float]]:
    """One map [H, W] -> the text boxes' corners [4, 2] in map pixels, and scores."""
    bitmap = (prob > params.bitmap_threshold).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[np.ndarray, float]] = []
    for contour in contours[: params.max_candidates]:
        centre, (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < params.min_size:
            continue
        score = _mean_inside(prob, _corners((centre, (w, h), angle)))
        if score < params.box_threshold:
            continue
        grow = w * h * params.unclip_ratio / (2.0 * (w + h))
        if min(w, h) + 2.0 * grow < params.min_size + 2:
            continue
        found.append((_corners((centre, (w + 2.0 * grow, h + 2.0 * grow), angle)), score))
    return found


def _reading_order(polygons: np.ndarray, tolerance: float) -> list[int]:
    """Indexes of ``polygons`` [K, 4, 2] top to bottom, each line left to right."""
    x, y = polygons[:, 0, 0].tolist(), polygons[:, 0, 1].tolist()
    lines: list[list[int]] = []
    for i in sorted(range(len(x)), key=lambda i: (y[i], x[i])):
        if lines and y[i] - y[lines[-1][0]] < tolerance:
            lines[-1].append(i)
        else:
            lines.append([i])
    return [i for line in lines for i in sorted(line, key=lambda i: (x[i], y[i]))]


@register("db", DbParams)
def decode_db(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: DbParams
) -> list[Decoded]:
    """``[B, 1, H, W]`` probability maps -> one ``Boxes`` of text per image."""
    head = pick_output("db", outputs, params.output, "decoder.output")
    expected = "probability maps [batch, 1, height, width]"
    batch_of("db", head, geometries, expected, (1, 1, 1))
    if head.shape[1] != 1:
        shape_error("db", head, geometries, expected)
    maps = head[:, 0].astype(np.float32)
    maps[~np.isfinite(maps)] = 0.0
    answers: list[Decoded] = []
    for prob, geometry in zip(maps, geometries, strict=True):
        found = _regions(prob, params)
        corners = np.array([c for c, _ in found], dtype=np.float32).reshape(-1, 4, 2)
        polygons = geometry.points_to_source(corners)
        order = _reading_order(polygons, params.line_tolerance)
        polygons = polygons[order].reshape(-1, 4, 2)
        low = np.min(polygons, axis=1, initial=np.inf)  # initial: defined for no boxes
        high = np.max(polygons, axis=1, initial=-np.inf)
        answers.append(
            Boxes(
                xyxy=np.concatenate([low, high], axis=1),
                scores=np.clip(np.array([s for _, s in found], dtype=np.float32)[order], 0, 1),
                classes=np.zeros(len(order), dtype=np.int64),
                polygons=polygons,
            )
        )
    return answers
