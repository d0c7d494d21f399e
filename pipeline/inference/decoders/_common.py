"""What every decoder shares: validated parameter dataclasses and picking an output.

``Params`` is the base of every decoder's parameters: on construction it checks each
field against its annotation (``float``, ``int``, ``bool``, ``str``, a ``Literal`` or
``tuple[str, ...]``) and against the bounds given with ``number``/``count``, and
raises ``ModelError`` naming the manifest key to fix. An int given for a float and a
list given for a tuple (both what JSON makes) are converted.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NoReturn

import numpy as np

from pipeline.inference.geometry import Geometry
from schemas.errors import ModelError

__all__ = [
    "Params",
    "batch_of",
    "count",
    "fail",
    "input_size",
    "number",
    "pick_output",
    "require_finite",
    "shape_error",
]

_LOW, _HIGH, _ABOVE = "low", "high", "above"


def number(
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
) -> Any:
    """A float field: ``low <= value <= high``, ``value > above``; always finite."""
    return dataclasses.field(default=default, metadata={_LOW: low, _HIGH: high, _ABOVE: above})


def count(default: int, *, low: int = 0) -> Any:
    """An int field, at least ``low``."""
    return dataclasses.field(default=default, metadata={_LOW: low})


def fail(decoder: str, problem: str) -> NoReturn:
    """Raise ModelError about ``decoder``'s outputs or parameters."""
    raise ModelError(f"decoder {decoder!r}: {problem}")


class Params:
    """Base of the decoders' frozen parameter dataclasses: validates on construction."""

    __slots__ = ()
    decoder: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _checked(self.decoder, f, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)


def _checked(decoder: str, f: dataclasses.Field[Any], hint: Any, value: Any) -> Any:
    """``value`` converted to the field's type, or ModelError saying what to write."""
    key = f"decoder.{f.name}"
    got = f"got {value!r} ({type(value).__name__}); fix {key} in the manifest"
    if typing.get_origin(hint) is Literal:
        if value not in typing.get_args(hint):
            fail(decoder, f"{f.name} must be one of {list(typing.get_args(hint))}, {got}")
        return value
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            fail(decoder, f"{f.name} must be a {hint.__name__}, {got}")
        return value
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            fail(decoder, f"{f.name} must be a list of strings, {got}")
        return tuple(value)
    if hint is int:
        low = f.metadata[_LOW]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            fail(decoder, f"{f.name} must be an integer >= {low}, {got}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _within(f, value):
            fail(decoder, f"{f.name} must be a number {_bounds(f)}, {got}")
        return float(value)
    raise TypeError(f"{f.name}: no check for {hint!r}")  # a programming error, not a manifest's


def _within(f: dataclasses.Field[Any], value: float) -> bool:
    low, high, above = f.metadata[_LOW], f.metadata[_HIGH], f.metadata[_ABOVE]
    return (
        math.isfinite(value)
        and (low is None or value >= low)
        and (high is None or value <= high)
        and (above is None or value > above)
    )


def _bounds(f: dataclasses.Field[Any]) -> str:
    low, high, above = f.metadata[_LOW], f.metadata[_HIGH], f.metadata[_ABOVE]
    parts = [f">= {low}"] if low is not None else []
    parts += [f"> {above}"] if above is not None else []
    parts += [f"<= {high}"] if high is not None else []
    return " and ".join(parts) if parts else "(finite)"


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
