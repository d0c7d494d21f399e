"""What every decoder shares: the base of its parameters and picking an output.

A decoder's parameters are a frozen dataclass whose fields' metadata
(:func:`pipeline.declared.ranged`, ...) state their rules: a manifest's ``decoder``
table is built by :func:`pipeline.declared.build` (types, ranges, unknown keys), and
parameters made in code are checked against the same ranges on construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar, NoReturn

import numpy as np

from pipeline.declared import validate
from pipeline.inference.geometry import Geometry
from schemas.errors import ModelError

__all__ = [
    "Params",
    "batch_of",
    "fail",
    "input_size",
    "pick_output",
    "require_finite",
    "shape_error",
]


def fail(decoder: str, problem: str) -> NoReturn:
    """Raise ModelError about ``decoder``'s outputs or parameters."""
    raise ModelError(f"decoder {decoder!r}: {problem}")


class Params:
    """Base of the decoders' frozen parameter dataclasses: ``decoder`` is the registered
    name; made in code, they are checked against their fields' ranges (ModelError)."""

    __slots__ = ()
    decoder: ClassVar[str] = ""

    def __post_init__(self) -> None:
        validate(self, f"decoder {self.decoder!r}", path="decoder")


def pick_output(decoder: str, outputs: Mapping[str, np.ndarray], name: str, key: str) -> np.ndarray:
    """The tensor ``name``, or the first output when ``name`` is "" (``key`` names the
    parameter, for the message)."""
    if not name:
        if not outputs:
            fail(decoder, "the model gave no outputs")
        return np.asarray(next(iter(outputs.values())))
    if name not in outputs:
        fail(decoder, f"{key} is {name!r} but the model's outputs are {sorted(outputs)}")
    return np.asarray(outputs[name])


def batch_of(
    decoder: str,
    tensor: np.ndarray,
    geometries: Sequence[Geometry],
    expected: str,
    least: tuple[int, ...],
) -> None:
    """Check ``tensor`` is one row per image with ``len(least)`` more dimensions, each
    at least as long as ``least`` says; else ModelError quoting ``expected``."""
    if (
        tensor.ndim != 1 + len(least)
        or tensor.shape[0] != len(geometries)
        or any(size < low for size, low in zip(tensor.shape[1:], least, strict=True))
    ):
        shape_error(decoder, tensor, geometries, expected)


def shape_error(
    decoder: str, tensor: np.ndarray, geometries: Sequence[Geometry], expected: str
) -> NoReturn:
    """ModelError: ``tensor``'s shape is not ``expected``."""
    fail(
        decoder,
        f"output is {list(tensor.shape)} for {len(geometries)} image(s); expected "
        f"{expected}: check the decoder type and its output in the manifest",
    )


def require_finite(decoder: str, tensor: np.ndarray) -> None:
    """ModelError if ``tensor`` holds NaN or infinity: there is no sensible answer."""
    if not np.all(np.isfinite(tensor)):
        fail(decoder, "output holds NaN or infinity; the model or its input is broken")


def input_size(geometry: Geometry, width: int, height: int) -> tuple[float, float]:
    """The model input's width and height: ``width``/``height`` when set (> 0), else
    the source size scaled plus the pad on both sides (a centred letterbox)."""
    w = width or round(geometry.width * geometry.scale_x + 2 * geometry.pad_x)
    h = height or round(geometry.height * geometry.scale_y + 2 * geometry.pad_y)
    return float(w), float(h)
