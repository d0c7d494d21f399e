"""Pixels in and out: decoding, encoding, colour conversion and crops. Pure, uses cv2.

The one place hybridfleet decodes, encodes or converts pixels. An image here is a
uint8 array, H x W (grey) or H x W x 3 (RGB unless a function says otherwise).
Everything is synchronous and CPU-bound: the workers call it off the event loop.

Decoding a wire image reads its width and height from the JPEG or PNG header first
and refuses one over ``MAX_PIXELS`` before any pixel is decoded (cv2 has no header-only
read), so a small file that would decode to gigabytes never allocates them.
"""

from __future__ import annotations

import math
import struct
from typing import Final, Literal

import cv2
import numpy as np

from schemas.errors import SchemaError
from schemas.messages import Colour, Encoded, Encoding, Pixels, Region

__all__ = [
    "MAX_PIXELS",
    "ColourName",
    "check",
    "convert",
    "crop",
    "crop_quad",
    "decode",
    "encode_jpeg",
    "encode_png",
    "to_rgb",
]

# The most pixels (width * height) a decoded image may have: 4096 x 4096.
MAX_PIXELS: Final = 4096 * 4096

# A colour order, as the message enum or its plain string (as an InputSpec has it).
ColourName = Colour | Literal["rgb", "bgr", "gray"]

# JPEG start-of-frame markers (they carry the size): C0..CF except DHT, JPG and DAC.
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers with no length field: TEM, RST0..7, SOI.
_JPEG_BARE: Final = frozenset({0x01, *range(0xD0, 0xD9)})
_JPEG_SOS: Final = 0xDA
# Decoded as stored: grey stays one channel, alpha is dropped, 16-bit becomes 8-bit, and
# an EXIF orientation is ignored, so a region's pixels are those the sender saw.
_IMREAD: Final = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION


def check(array: np.ndarray, *, where: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``array`` itself if it is an image: uint8, non-empty, H x W or H x W x 3, at most
    ``max_pixels`` pixels; SchemaError naming ``where`` otherwise."""
    if not isinstance(array, np.ndarray):
        raise SchemaError(f"{where}: expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise SchemaError(f"{where}: dtype {array.dtype} is not uint8")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise SchemaError(f"{where}: shape {list(array.shape)} is not H x W or H x W x 3")
    height, width = array.shape[:2]
    _check_size(width, height, where, max_pixels)
    return array


def decode(pixels: Pixels, *, where: str = "image", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image from the wire as a uint8 array: a raw array is checked and returned as
    it is (in whatever colour order the message says); an ``Encoded`` JPEG or PNG
    decodes to RGB H x W x 3, or H x W when it is grey.

    SchemaError naming ``where`` if the bytes are empty, are not the declared encoding,
    are corrupt or truncated, or the image has more than ``max_pixels`` pixels (read
    from the header, before decoding). A JPEG damaged in the middle of its data may
    still decode (libjpeg fills in what it cannot read); nothing can tell it apart.
    """
    if isinstance(pixels, np.ndarray):
        return check(pixels, where=where, max_pixels=max_pixels)
    if not isinstance(pixels, Encoded):
        raise SchemaError(f"{where}: expected an array or Encoded, got {type(pixels).__name__}")
    data = bytes(pixels.data)
    if pixels.encoding not in tuple(Encoding):
        raise SchemaError(f"{where}: unknown encoding {pixels.encoding!r}")
    encoding = Encoding(pixels.encoding)
    width, height = _header_size(data, encoding, where)
    _check_size(width, height, where, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD)
    if image is None:
        raise SchemaError(f"{where}: {encoding.value} data ({len(data)} bytes) is corrupt")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return check(image, where=where, max_pixels=max_pixels)


def to_rgb(array: np.ndarray, colour: ColourName) -> np.ndarray:
    """Raw pixels in ``colour`` order -> RGB H x W x 3; grey stays H x W.

    Returns ``array`` itself when nothing changes. SchemaError if the shape does not
    match ``colour`` (grey is 2-D, rgb and bgr have three channels).
    """
    order = Colour(colour)
    if (array.ndim == 2) != (order is Colour.GRAY):
        raise SchemaError(f"image: shape {list(array.shape)} does not match colour {order.value}")
    if order is Colour.BGR:
        return np.ascontiguousarray(array[..., ::-1])
    return array


def convert(array: np.ndarray, want: ColourName) -> np.ndarray:
    """An RGB (H x W x 3) or grey (H x W) image in the colour ``want``: rgb or bgr
    H x W x 3, or gray H x W (ITU-R BT.601 luma, as cv2 computes it).

    Returns ``array`` itself when it already is what was asked for.
    """
    order = Colour(want)
    if array.ndim == 2:
        if order is Colour.GRAY:
            return array
        return np.ascontiguousarray(np.broadcast_to(array[..., None], (*array.shape, 3)))
    if order is Colour.GRAY:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)
    if order is Colour.BGR:
        return np.ascontiguousarray(array[..., ::-1])
    return array


def encode_jpeg(array: np.ndarray, quality: int) -> Encoded:
    """An RGB or grey image as a JPEG of ``quality`` 1..100 (a grey image stays grey).

    SchemaError for an array ``check`` refuses, so nothing is written that ``decode``
    would refuse to read back.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    return _encode(array, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality], Encoding.JPEG)


def encode_png(array: np.ndarray) -> Encoded:
    """An RGB or grey image as a lossless PNG; SchemaError as for ``encode_jpeg``."""
    return _encode(array, ".png", [], Encoding.PNG)


def crop(array: np.ndarray, box: Region, *, margin: float = 0.0) -> np.ndarray:
    """The pixels of ``array`` inside ``box`` grown by ``margin`` times its width and
    height on each side, clipped to the image: a view, not a copy.

    A box partly outside the image gives the part inside. ValueError for a box with no
    area, a negative margin, or a box wholly outside the image (nothing to crop: the
    caller decides what that means rather than getting an empty array).
    """
    if box.w <= 0 or box.h <= 0:
        raise ValueError(f"crop: box {box} has no area")
    if margin < 0:
        raise ValueError(f"crop: margin must be >= 0, got {margin}")
    height, width = array.shape[:2]
    x0 = max(0, math.floor(box.x - margin * box.w))
    y0 = max(0, math.floor(box.y - margin * box.h))
    x1 = min(width, math.ceil(box.x + box.w + margin * box.w))
    y1 = min(height, math.ceil(box.y + box.h + margin * box.h))
    if x0 >= x1 or y0 >= y1:
        raise ValueError(f"crop: box {box} is outside the {width}x{height} image")
    return array[y0:y1, x0:x1]


def crop_quad(array: np.ndarray, quad: np.ndarray, height: int = 48) -> np.ndarray:
    """A text quadrilateral warped to a horizontal strip ``height`` pixels high.

    ``quad`` is float32 [4, 2] (x, y) points: top-left, top-right, bottom-right,
    bottom-left, as text detectors give them. As PaddleOCR's ``get_rotate_crop_image``:
    the text's width and height are the longer of each pair of opposite sides, the
    warp is bicubic with replicated borders, and a region at least 1.5 times taller
    than wide is vertical text, turned 90 degrees counter-clockwise. The strip's width
    keeps the region's aspect ratio. ValueError for a malformed or degenerate quad.
    """
    points = np.asarray(quad, dtype=np.float32)
    if points.shape != (4, 2) or not np.isfinite(points).all():
        raise ValueError(f"crop_quad: expected finite float [4, 2] points, got {points.shape}")
    if height < 1:
        raise ValueError(f"crop_quad: height must be >= 1, got {height}")
    sides = np.linalg.norm(points - np.roll(points, -1, axis=0), axis=1)  # top, right, bottom, left
    text_w = float(max(sides[0], sides[2]))
    text_h = float(max(sides[1], sides[3]))
    if text_w < 1.0 or text_h < 1.0:
        raise ValueError(f"crop_quad: quad {points.tolist()} is under one pixel across")
    vertical = text_h >= 1.5 * text_w
    along, across = (text_h, text_w) if vertical else (text_w, text_h)
    length = max(1, round(along * height / across))
    out_w, out_h = (height, length) if vertical else (length, height)
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    strip = cv2.warpPerspective(
        np.ascontiguousarray(array),
        matrix,
        (out_w, out_h),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return np.ascontiguousarray(np.rot90(strip)) if vertical else strip


def _check_size(width: int, height: int, where: str, max_pixels: int) -> None:
    """SchemaError if an image of ``width`` x ``height`` is empty or too large."""
    if width < 1 or height < 1:
        raise SchemaError(f"{where}: image of {width}x{height} pixels is empty")
    if width * height > max_pixels:
        raise SchemaError(
            f"{where}: image of {width}x{height} pixels is over the limit of {max_pixels}"
        )


def _header_size(data: bytes, encoding: Encoding, where: str) -> tuple[int, int]:
    """(width, height) from a JPEG's or PNG's header; SchemaError if it has none."""
    if encoding is Encoding.PNG:
        # Signature, then the IHDR chunk: length, type, width, height (big-endian).
        if not data.startswith(Encoding.PNG.signature):
            raise SchemaError(f"{where}: data ({len(data)} bytes) is not a PNG")
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise SchemaError(f"{where}: PNG data ({len(data)} bytes) has no IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if not data.startswith(Encoding.JPEG.signature):
        raise SchemaError(f"{where}: data ({len(data)} bytes) is not a JPEG")
    return _jpeg_size(data, where)


def _jpeg_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment of a JPEG."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise SchemaError(f"{where}: JPEG data is corrupt (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # a fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_BARE:
            pos += 2
            continue
        if marker == _JPEG_SOS:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    raise SchemaError(f"{where}: JPEG data ({len(data)} bytes) has no frame header")


def _encode(array: np.ndarray, ext: str, params: list[int], encoding: Encoding) -> Encoded:
    """``array`` (RGB or grey) encoded by cv2 as ``ext``."""
    image = check(array, where="encode")
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"cv2 could not encode a {list(image.shape)} image as {ext}")
    return Encoded(data=buffer.tobytes(), encoding=encoding)
