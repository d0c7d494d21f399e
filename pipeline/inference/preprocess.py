"""Preprocessing: decoded images -> one model input batch, and how to undo it.

Chosen by the model's manifest entry (``input``); pure and CPU-bound, so the workers
run it off the event loop. Each image is resized by cv2 into one preallocated uint8
batch; colour order, layout and normalisation are then one vectorised pass over the
whole batch. Every image gets a ``Geometry`` that maps the model's boxes back into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NoReturn, get_args

import cv2
import numpy as np

from pipeline.inference.digits import pixels_to_features
from pipeline.inference.geometry import Geometry
from pipeline.inference.images import check, convert
from schemas.errors import ModelError

__all__ = [
    "PREPROCESSORS",
    "InputSpec",
    "Preprocessor",
    "digits_features",
    "prepare",
    "preprocess",
]

Layout = Literal["nchw", "nhwc"]
ColourOrder = Literal["rgb", "bgr", "gray"]
DType = Literal["float32", "float16", "uint8"]
Resize = Literal["letterbox", "stretch", "fit_height"]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How a model wants its input (the manifest entry's ``input`` table).

    Pixels are normalised as ``(x * scale - mean) / std`` per channel, in the model's
    ``colour`` order (one value serves every channel). ``width``/``height`` None means
    dynamic: the image keeps its aspect ratio, its longer side at most ``max_side``
    (never scaled up), each side rounded to a multiple of ``multiple``. ``resize``:
    ``letterbox`` keeps the aspect ratio and pads with ``pad_value``; ``stretch`` does
    not keep it; ``fit_height`` (text lines) scales to ``height``, keeps the aspect ratio
    up to ``width`` (``max_side`` if None) and pads on the right with 0 after
    normalisation. ``preprocess`` names a registered preprocessor (``image`` for every
    image model; ``digits8x8`` for the digits fixture's 64 features).

    Checked when made: ModelError names the field and says what would be right.
    """

    name: str = ""  # the input tensor; "" means the model's only input
    preprocess: str = "image"
    layout: Layout = "nchw"
    width: int | None = None
    height: int | None = None
    multiple: int = 32
    max_side: int = 960
    colour: ColourOrder = "rgb"
    dtype: DType = "float32"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, ...] = field(default=(1.0, 1.0, 1.0))
    resize: Resize = "letterbox"
    pad_value: int = 114
    max_batch: int = 32

    def __post_init__(self) -> None:
        _lookup(self.preprocess)
        for name, allowed in (
            ("layout", Layout),
            ("colour", ColourOrder),
            ("dtype", DType),
            ("resize", Resize),
        ):
            if getattr(self, name) not in get_args(allowed):
                _bad(name, getattr(self, name), f"one of {list(get_args(allowed))}")
        for name in ("width", "height"):
            size = getattr(self, name)
            if size is not None and not _whole(size):
                _bad(name, size, "a whole number >= 1, or None for a dynamic size")
        for name in ("multiple", "max_side", "max_batch"):
            if not _whole(getattr(self, name)):
                _bad(name, getattr(self, name), "a whole number >= 1")
        if not _whole(self.pad_value, 0, 255):
            _bad("pad_value", self.pad_value, "a whole number 0..255")
        if not (math.isfinite(self.scale) and self.scale > 0):
            _bad("scale", self.scale, "a finite number > 0")
        self._check_channels()
        self._check_sizes()

    def _check_channels(self) -> None:
        """mean and std: one value or three, finite, std non-zero; one channel for grey."""
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, 3) or not all(math.isfinite(v) for v in values):
                _bad(name, values, "one finite value, or three (one per channel)")
            if self.colour == "gray" and len(set(values)) > 1:
                _bad(name, values, "one value: a gray model has one channel")
        if 0 in self.std:
            _bad("std", self.std, "non-zero values (they divide)")

    def _check_sizes(self) -> None:
        """The sizes each ``resize`` needs."""
        fixed = self.width is not None and self.height is not None
        if self.resize == "fit_height" and self.height is None:
            _bad("height", None, "the text line height that fit_height scales to")
        if self.resize == "stretch" and not fixed:
            _bad("width", self.width, "set, with height: stretch needs a fixed size")
        if self.resize == "letterbox" and (self.width is None) != (self.height is None):
            _bad("width", self.width, "set together with height, or both None (dynamic)")
        if self.resize == "letterbox" and not fixed and self.max_side < self.multiple:
            _bad("max_side", self.max_side, f"at least multiple ({self.multiple})")


# A preprocessor: decoded images and a spec -> the batch tensor and one Geometry each.
Preprocessor = Callable[[Sequence[np.ndarray], InputSpec], tuple[np.ndarray, list[Geometry]]]


@dataclass(frozen=True, slots=True)
class _Placement:
    """Where one image lands in the batch: resized to width x height at (x, y)."""

    width: int
    height: int
    x: int = 0
    y: int = 0


def prepare(images: Sequence[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    """Decoded RGB (H x W x 3) or grey (H x W) uint8 images -> one batch tensor for the
    model, and the ``Geometry`` of each image.

    The tensor is [N, C, H, W] (``nchw``) or [N, H, W, C] in ``spec.dtype``, with C 1
    for a gray model and 3 otherwise, in ``spec.colour`` order. A grey image given to a
    colour model is repeated into three channels; a colour image given to a gray one
    is converted to luma. ``uint8`` is not normalised. Sizes:

    * fixed ``letterbox``: one scale, centred, ``pad_value`` border (as Ultralytics);
    * ``stretch``: each axis scaled to the fixed size;
    * ``fit_height``: see ``InputSpec``; the batch is as wide as its widest line;
    * dynamic (``letterbox`` without width and height): each image at its own size
      (as PaddleOCR's detector resizes), placed top-left in a batch as large as the
      largest, the rest ``pad_value``. An image alone in its batch has no padding.

    ValueError for no images or more than ``spec.max_batch``; SchemaError for an array
    that is not an image.
    """
    arrays = _checked(images, spec)
    channels = 1 if spec.colour == "gray" else 3
    if channels == 1:
        arrays = [convert(a, "gray") for a in arrays]
    placements, (width, height) = _plan(arrays, spec)
    fill = 0 if spec.resize == "fit_height" else spec.pad_value
    batch = np.full((len(arrays), height, width, channels), fill, dtype=np.uint8)
    for i, (array, place) in enumerate(zip(arrays, placements, strict=True)):
        if array.shape[:2] != (place.height, place.width):
            array = cv2.resize(
                np.ascontiguousarray(array),
                (place.width, place.height),
                interpolation=cv2.INTER_LINEAR,
            )
        region = batch[i, place.y : place.y + place.height, place.x : place.x + place.width]
        region[...] = array.reshape(place.height, place.width, -1)  # grey broadcasts
    tensor = _normalise(batch, spec)
    if spec.resize == "fit_height":
        for i, place in enumerate(placements):  # PaddleOCR pads lines with 0 when normalised
            if spec.layout == "nchw":
                tensor[i, :, :, place.width :] = 0
            else:
                tensor[i, :, place.width :, :] = 0
    geometries = [
        Geometry(
            width=a.shape[1],
            height=a.shape[0],
            scale_x=p.width / a.shape[1],
            scale_y=p.height / a.shape[0],
            pad_x=float(p.x),
            pad_y=float(p.y),
        )
        for a, p in zip(arrays, placements, strict=True)
    ]
    return tensor, geometries


def digits_features(
    images: Sequence[np.ndarray], spec: InputSpec
) -> tuple[np.ndarray, list[Geometry]]:
    """The digits fixture's input: float32 [N, 64] features of each crop (colour crops
    are converted to grey first) and identity geometries."""
    crops = [convert(a, "gray") for a in _checked(images, spec)]
    geometries = [Geometry.identity(c.shape[1], c.shape[0]) for c in crops]
    return pixels_to_features(crops), geometries


PREPROCESSORS: Final[dict[str, Preprocessor]] = {
    "image": prepare,
    "digits8x8": digits_features,
}


def preprocess(images: Sequence[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    """Run the preprocessor ``spec.preprocess`` names; ModelError if none is registered."""
    return _lookup(spec.preprocess)(images, spec)


def _lookup(name: str) -> Preprocessor:
    """The registered preprocessor called ``name``; ModelError listing them if none is."""
    if name not in PREPROCESSORS:
        _bad("preprocess", name, f"one of the registered preprocessors {sorted(PREPROCESSORS)}")
    return PREPROCESSORS[name]


def _bad(name: str, value: object, right: str) -> NoReturn:
    """Raise ModelError: field ``name`` is ``value`` and should be ``right``."""
    raise ModelError(f"input spec: {name} is {value!r}, expected {right}")


def _whole(value: object, low: int = 1, high: float = math.inf) -> bool:
    """Whether ``value`` is an int (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _checked(images: Sequence[np.ndarray], spec: InputSpec) -> list[np.ndarray]:
    """The images, each checked; ValueError for an empty or too large batch."""
    if not 1 <= len(images) <= spec.max_batch:
        raise ValueError(f"a batch has 1..{spec.max_batch} images, got {len(images)}")
    return [check(a, where=f"image {i}") for i, a in enumerate(images)]


def _plan(
    arrays: Sequence[np.ndarray], spec: InputSpec
) -> tuple[list[_Placement], tuple[int, int]]:
    """Each image's placement and the batch's (width, height)."""
    sizes = [(a.shape[1], a.shape[0]) for a in arrays]
    if spec.resize == "fit_height":
        assert spec.height is not None  # InputSpec checks it
        line_h = spec.height
        limit = spec.width if spec.width is not None else spec.max_side
        placements = [_Placement(min(max(1, -(-line_h * w // h)), limit), line_h) for w, h in sizes]
        return placements, (max(p.width for p in placements), line_h)
    if spec.width is None or spec.height is None:
        placements = [_dynamic(w, h, spec) for w, h in sizes]
        return placements, (max(p.width for p in placements), max(p.height for p in placements))
    out_w, out_h = spec.width, spec.height
    if spec.resize == "stretch":
        return [_Placement(out_w, out_h) for _ in sizes], (out_w, out_h)
    return [_letterbox(w, h, out_w, out_h) for w, h in sizes], (out_w, out_h)


def _letterbox(width: int, height: int, out_w: int, out_h: int) -> _Placement:
    """Ultralytics' letterbox: one scale that fits, rounded size, centred border."""
    ratio = min(out_w / width, out_h / height)
    new_w = min(out_w, max(1, round(width * ratio)))
    new_h = min(out_h, max(1, round(height * ratio)))
    x = round((out_w - new_w) / 2 - 0.1)
    y = round((out_h - new_h) / 2 - 0.1)
    return _Placement(new_w, new_h, x, y)


def _dynamic(width: int, height: int, spec: InputSpec) -> _Placement:
    """PaddleOCR det's size: longer side at most max_side, sides rounded to a multiple."""
    ratio = min(1.0, spec.max_side / max(width, height))
    steps = spec.max_side // spec.multiple

    def side(length: int) -> int:
        return min(steps, max(1, round(length * ratio / spec.multiple))) * spec.multiple

    return _Placement(side(width), side(height))


def _normalise(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 [N, H, W, C] in model channel order -> the tensor, in one pass."""
    pixels = batch[..., ::-1] if spec.colour == "bgr" else batch
    if spec.layout == "nchw":
        pixels = pixels.transpose(0, 3, 1, 2)
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels)
    channels = batch.shape[3]
    std = np.resize(np.asarray(spec.std, dtype=np.float64), channels)
    mean = np.resize(np.asarray(spec.mean, dtype=np.float64), channels)
    shape = (channels, 1, 1) if spec.layout == "nchw" else (channels,)
    gain = (spec.scale / std).astype(np.float32).reshape(shape)
    offset = (mean / std).astype(np.float32).reshape(shape)
    out = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, gain, out=out)
    np.subtract(out, offset, out=out)
    return out if spec.dtype == "float32" else out.astype(np.float16)
