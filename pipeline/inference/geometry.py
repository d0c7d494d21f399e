"""Where a model's input pixels came from: undoing a resize or a letterbox.

Pure. Preprocessing (``pipeline.inference.preprocess``) fits each source image into
the model's input and records a ``Geometry``; decoders map what the model found back
into the source image's pixels with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Geometry"]


@dataclass(frozen=True, slots=True)
class Geometry:
    """input = source * scale + pad, per axis; the source image is ``width`` x ``height``.

    A stretch has ``pad`` 0 and different scales; a letterbox one scale and a border.
    """

    width: int
    height: int
    scale_x: float = 1.0
    scale_y: float = 1.0
    pad_x: float = 0.0
    pad_y: float = 0.0

    @classmethod
    def identity(cls, width: int, height: int) -> Geometry:
        """The model saw the source image as it is."""
        return cls(width, height)

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes [K, 4] (x1, y1, x2, y2) in input pixels -> source pixels, clipped to it."""
        out = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = (out[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, float(self.width), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(self.height), out=out[:, 1::2])
        return out

    def points_to_source(self, points: np.ndarray) -> np.ndarray:
        """Points [..., 2] (x, y) in input pixels -> source pixels, clipped to it."""
        out = np.asarray(points, dtype=np.float32).copy()
        out[..., 0] = np.clip((out[..., 0] - self.pad_x) / self.scale_x, 0.0, float(self.width))
        out[..., 1] = np.clip((out[..., 1] - self.pad_y) / self.scale_y, 0.0, float(self.height))
        return out
