"""Typed, path-aware reading of one decoded wire map: ``Fields``.

Each reader method takes a key, checks the value found there against one rule of
docs/wire-format.md (a string of at most so many characters, an integer in a range, a
finite number, a list of tiers in tier order, an array map, ...) and returns it typed,
or raises one ``SchemaError`` that names the field by its path (``frame.image.shape``)
and says what is wrong. The map may have come in either wire form: binary values are
read by the ``BinaryReader`` the form supplies.

``check_colour`` and ``check_signature`` are the rules of a frame's colour and of an
encoded image's first bytes; readers and writers both apply them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from schemas.errors import SchemaError
from schemas.limits import (
    COLOUR_CHANNELS,
    MAX_CLASSES,
    MAX_DETECTIONS,
    MAX_LABEL_CHARS,
    MAX_LINES,
    MAX_REGIONS,
    MAX_TEXT_CHARS,
)
from schemas.messages import (
    Colour,
    Detection,
    Encoded,
    Encoding,
    Pixels,
    Region,
    Source,
    TextLine,
)

__all__ = [
    "DTYPES",
    "BinaryReader",
    "Fields",
    "bytes_value",
    "check_colour",
    "check_inside",
    "check_signature",
]

# The array dtypes the wire carries, by their wire name; always little-endian.
DTYPES: dict[str, np.dtype[Any]] = {"uint8": np.dtype(np.uint8), "float32": np.dtype("<f4")}
# Tiers in the order a frame passes them (``Source`` lists them in that order).
_TIERS = tuple(Source)

T = TypeVar("T")
# Turns the value found at a binary position (and that position's path, for errors)
# into bytes, or raises SchemaError. Each wire form has its own.
BinaryReader = Callable[[Any, str], bytes]


def bytes_value(value: Any, path: str) -> bytes:
    """The ``BinaryReader`` of a map whose binary values are ``bytes``.

    That is what msgpack unpacks a ``bin`` to, and what ``to_map`` writes.
    """
    if not isinstance(value, bytes):
        raise SchemaError(f"{path}: expected binary data, got {type(value).__name__}")
    return value


class Fields:
    """Typed, path-aware access to one decoded map."""

    def __init__(self, raw: Mapping[Any, Any], path: str, binary: BinaryReader) -> None:
        self.raw = raw
        self.path = path
        self._binary = binary

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            raise SchemaError(f"{self.path}.{key}: missing")
        return self.raw[key]

    def fail(self, key: str, problem: str) -> SchemaError:
        return SchemaError(f"{self.path}.{key}: {problem}")

    def text(
        self,
        key: str,
        pattern: re.Pattern[str] | None = None,
        max_len: int = 1024,
        *,
        min_len: int = 0,
    ) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        if len(value) < min_len:
            raise self.fail(key, f"shorter than {min_len} character{'s' * (min_len != 1)}")
        if len(value) > max_len:
            raise self.fail(key, f"longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"{value[:80]!r} does not match {pattern.pattern}")
        return value

    def integer(self, key: str, lo: int, hi: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is outside {lo}..{hi}")
        return value

    def number(self, key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(key, f"{value} is not a finite number")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is outside {lo}..{hi}")
        return value

    def optional(self, key: str, read: Callable[[str], T]) -> T | None:
        return None if self._get(key) is None else read(key)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {type(value).__name__}")
        return value

    def binary(self, key: str) -> bytes:
        return self._binary(self._get(key), f"{self.path}.{key}")

    def enum(self, key: str, kind: type[Any]) -> Any:
        value = self._get(key)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(key, f"{value!r} is not one of {allowed}") from None

    def items(self, key: str, max_len: int) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            raise self.fail(key, f"{len(value)} items, at most {max_len} allowed")
        return value

    def labels(self, key: str) -> tuple[int, ...]:
        items = self.items(key, MAX_REGIONS)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise self.fail(key, "expected a list of integers")
        if any(not 0 <= v < MAX_CLASSES for v in items):
            raise self.fail(key, f"labels must be in 0..{MAX_CLASSES - 1}")
        return tuple(items)

    def tiers(self, key: str) -> tuple[Source, ...]:
        """A list of distinct tier names in tier order (device, edge, cloud)."""
        out: list[Source] = []
        for i, item in enumerate(self.items(key, len(_TIERS))):
            if not isinstance(item, str) or item not in _TIERS:
                allowed = ", ".join(_TIERS)
                raise self.fail(f"{key}[{i}]", f"{item!r} is not one of {allowed}")
            tier = Source(item)
            if tier in out:
                raise self.fail(key, f"{tier.value!r} appears twice; each tier at most once")
            out.append(tier)
        if out != sorted(out, key=_TIERS.index):
            raise self.fail(
                key, f"{[t.value for t in out]} is out of order; tiers go {', '.join(_TIERS)}"
            )
        return tuple(out)

    def array(self, key: str, dtype: str, ndim: int | tuple[int, ...]) -> np.ndarray:
        return self.array_at(self._get(key), f"{self.path}.{key}", dtype, ndim)

    def array_at(
        self,
        raw: Any,
        path: str,
        dtype: str,
        ndim: int | tuple[int, ...],
        *,
        channels: int | None = None,
    ) -> np.ndarray:
        """An array map found anywhere in this message (``path`` names it in errors).

        ``ndim`` is the number of dimensions, or a tuple of the numbers allowed;
        ``channels``, the size a 3-D array's last dimension must have.
        """
        ndims = (ndim,) if isinstance(ndim, int) else ndim
        if not isinstance(raw, dict):
            raise SchemaError(f"{path}: expected an array map {{dtype, shape, data}}")
        f = Fields(raw, path, self._binary)
        got = f.text("dtype", max_len=16)
        if got != dtype:
            raise SchemaError(f"{path}.dtype: {got!r}, expected {dtype!r}")
        shape = f.items("shape", 8)
        if len(shape) not in ndims or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 16 for v in shape
        ):
            count = " or ".join(str(n) for n in ndims)
            raise SchemaError(f"{path}.shape: {shape} is not {count} sizes in 0..65536")
        if channels is not None and len(shape) == 3 and shape[2] != channels:
            raise SchemaError(
                f"{path}.shape: {shape} has {shape[2]} channel{'s' * (shape[2] != 1)}; a colour "
                f"image is [rows, columns, {channels}]"
            )
        data = f.binary("data")
        np_dtype = DTYPES[dtype]
        expected = math.prod(shape) * np_dtype.itemsize
        if len(data) != expected:
            raise SchemaError(
                f"{path}: shape {shape} of {dtype} needs {expected} bytes, got {len(data)}"
            )
        array: np.ndarray = np.frombuffer(data, dtype=np_dtype).reshape(shape)
        if np_dtype.kind == "f" and not np.isfinite(array).all():
            raise SchemaError(f"{path}: contains NaN or infinity")
        return array

    def pixels(self, key: str) -> Pixels:
        return self.pixels_at(self._get(key), f"{self.path}.{key}")

    def pixels_at(self, raw: Any, path: str) -> Pixels:
        """An image found anywhere in this message: an array map of uint8, 2-D
        ``[rows, columns]`` or 3-D ``[rows, columns, 3]``, or, when the map has the key
        ``encoding``, an encoded image ``{encoding, data}``."""
        if isinstance(raw, dict) and "encoding" in raw:
            f = Fields(raw, path, self._binary)
            encoding = f.enum("encoding", Encoding)
            data = f.binary("data")
            check_signature(f"{path}.data", data, encoding)
            return Encoded(data, encoding)
        if not isinstance(raw, dict):
            raise SchemaError(
                f"{path}: expected an array map {{dtype, shape, data}} or an encoded image "
                "{encoding, data}"
            )
        return self.array_at(raw, path, "uint8", (2, 3), channels=COLOUR_CHANNELS)

    def box(self, key: str) -> Region:
        return _region(self._get(key), f"{self.path}.{key}")

    def regions(self, key: str) -> tuple[Region, ...]:
        items = self.items(key, MAX_REGIONS)
        return tuple(_region(item, f"{self.path}.{key}[{i}]") for i, item in enumerate(items))

    def _maps(self, key: str, max_len: int) -> list[Fields]:
        """The list at ``key``, each item a map to read field by field."""
        out = []
        for i, item in enumerate(self.items(key, max_len)):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}]", f"expected a map, got {type(item).__name__}")
            out.append(Fields(item, f"{self.path}.{key}[{i}]", self._binary))
        return out

    def detections(self, key: str) -> tuple[Detection, ...]:
        """At most MAX_DETECTIONS maps ``{box, label, label_index, score, source}``."""
        return tuple(
            Detection(
                box=f.box("box"),
                label=f.text("label", max_len=MAX_LABEL_CHARS, min_len=1),
                label_index=f.integer("label_index", 0, MAX_CLASSES - 1),
                score=f.number("score", 0.0, 1.0),
                source=f.enum("source", Source),
            )
            for f in self._maps(key, MAX_DETECTIONS)
        )

    def lines(self, key: str) -> tuple[TextLine, ...]:
        """At most MAX_LINES maps ``{box, text, confidence, source}``."""
        return tuple(
            TextLine(
                box=f.box("box"),
                text=f.text("text", max_len=MAX_TEXT_CHARS),
                confidence=f.number("confidence", 0.0, 1.0),
                source=f.enum("source", Source),
            )
            for f in self._maps(key, MAX_LINES)
        )


def _region(item: Any, path: str) -> Region:
    """``[x, y, width, height]``: integers, x and y >= 0, width and height >= 1."""
    if (
        not isinstance(item, list)
        or len(item) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
    ):
        raise SchemaError(f"{path}: expected [x, y, width, height] integers")
    x, y, w, h = item
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise SchemaError(f"{path}: {item} needs x, y >= 0 and width, height >= 1")
    return Region(x, y, w, h)


def check_signature(path: str, data: bytes, encoding: Encoding) -> None:
    """Refuse encoded image bytes that do not start with their format's signature."""
    signature = encoding.signature
    if not data.startswith(signature):
        got = data[: len(signature)].hex(" ").upper() or "nothing (empty)"
        raise SchemaError(
            f"{path}: starts with {got}, not the {encoding.value} signature "
            f"{signature.hex(' ').upper()}"
        )


def check_colour(path: str, image: Pixels, colour: Colour) -> None:
    """Refuse a frame's ``colour`` that does not fit its image.

    A 2-D image is ``gray``; a 3-D one ``rgb`` or ``bgr``; an encoded image ``rgb``
    (its file says what channels it has; the edge decodes it). An array of another
    number of dimensions is left to the array's own check.
    """
    if isinstance(image, Encoded):
        if colour is not Colour.RGB:
            raise SchemaError(
                f"{path}: {colour.value!r} does not fit an encoded image; an encoded image "
                "is 'rgb' (its file says what it holds)"
            )
    elif image.ndim == 2 and colour is not Colour.GRAY:
        raise SchemaError(
            f"{path}: {colour.value!r} does not fit a 2-D image [rows, columns]; it is 'gray'"
        )
    elif image.ndim == 3 and colour is Colour.GRAY:
        raise SchemaError(
            f"{path}: 'gray' does not fit a 3-D image [rows, columns, 3]; it is 'rgb' or 'bgr'"
        )


def check_inside(path: str, regions: tuple[Region, ...], image: np.ndarray) -> None:
    """Refuse a region that reaches outside a raw ``image``; ``path`` names the list."""
    height, width = image.shape[:2]
    for i, r in enumerate(regions):
        if r.x + r.w > width or r.y + r.h > height:
            raise SchemaError(
                f"{path}[{i}]: {[r.x, r.y, r.w, r.h]} reaches outside the {width}x{height} image"
            )
