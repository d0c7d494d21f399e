"""A camera's picture as it is sent: resized to the configured size (then JPEG-encoded
by ``pipeline.inference.images.encode_jpeg``, the project's one encoder)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["output_size", "resize"]


def output_size(width: int, height: int, want_w: int | None, want_h: int | None) -> tuple[int, int]:
    """The size a ``width`` x ``height`` picture is sent at: the wanted width and height,
    or, with one of them None, the other scaled to keep the aspect ratio (None and
    None: unchanged)."""
    if want_w is None and want_h is None:
        return width, height
    if want_w is None:
        assert want_h is not None
        return max(1, round(width * want_h / height)), want_h
    if want_h is None:
        return want_w, max(1, round(height * want_w / width))
    return want_w, want_h


def resize(image: np.ndarray, want_w: int | None, want_h: int | None) -> np.ndarray:
    """``image`` (H x W x 3) at ``output_size``; the same array when that is its size."""
    height, width = image.shape[:2]
    size = output_size(width, height, want_w, want_h)
    if size == (width, height):
        return image
    shrinking = size[0] * size[1] < width * height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)
