"""Preprocessing: decoded images -> one model input batch, and how to undo it.

Chosen by the model's manifest entry (``input``); runs off the event loop.
(Skeleton: the fields of ``InputSpec`` are the contract; ``prepare`` is to be written.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["InputSpec"]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How a model wants its input (the manifest entry's ``input`` table).

    Pixels are normalised as ``(x * scale - mean) / std`` per channel, in the model's
    ``colour`` order. ``width``/``height`` None means dynamic: the image keeps its
    aspect ratio, its longer side at most ``max_side``, each side rounded to a
    multiple of ``multiple``. ``resize``: ``letterbox`` keeps the aspect ratio and
    pads with ``pad_value``; ``stretch`` does not keep it; ``fit_height`` (text
    lines) scales to ``height``, keeps the aspect ratio up to ``width`` and pads on
    the right. ``preprocess`` names a registered preprocessor (``image`` for every
    image model; ``digits8x8`` for the digits fixture's 64 features).
    """

    name: str = ""  # the input tensor; "" means the model's only input
    preprocess: str = "image"
    layout: Literal["nchw", "nhwc"] = "nchw"
    width: int | None = None
    height: int | None = None
    multiple: int = 32
    max_side: int = 960
    colour: Literal["rgb", "bgr", "gray"] = "rgb"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, ...] = field(default=(1.0, 1.0, 1.0))
    resize: Literal["letterbox", "stretch", "fit_height"] = "letterbox"
    pad_value: int = 114
    max_batch: int = 32
