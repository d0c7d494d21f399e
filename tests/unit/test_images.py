"""Decoding, encoding, colour conversion and crops (pipeline.inference.images)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from pipeline.inference.images import (
    MAX_PIXELS,
    check,
    convert,
    crop,
    crop_quad,
    decode,
    encode_jpeg,
    encode_png,
    to_rgb,
)
from schemas.errors import SchemaError
from schemas.messages import Colour, Encoded, Encoding, Region


def smooth(height: int = 120, width: int = 160) -> np.ndarray:
    """A smooth RGB image: a different gradient in each channel."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * x / (width - 1)
    g = 255 * y / (height - 1)
    b = 127.5 + 100 * np.sin(x / 20) * np.cos(y / 25)
    image: np.ndarray = np.rint(np.dstack([r, g, b])).astype(np.uint8)
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def test_raw_arrays_pass_through_checked() -> None:
    image = smooth()
    assert decode(image) is image
    grey = image[..., 0]
    assert decode(grey) is grey
    for bad in (
        image.astype(np.float32),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((0, 5), np.uint8),
        np.zeros(5, np.uint8),
    ):
        with pytest.raises(SchemaError, match=r"frame\.image"):
            decode(bad, where="frame.image")


def test_png_round_trip_is_exact_rgb_and_grey() -> None:
    image = smooth()
    encoded = encode_png(image)
    assert encoded.encoding is Encoding.PNG
    np.testing.assert_array_equal(decode(encoded), image)
    grey = np.ascontiguousarray(image[..., 1])
    out = decode(encode_png(grey))
    assert out.ndim == 2
    np.testing.assert_array_equal(out, grey)


def test_jpeg_round_trip_keeps_a_smooth_image() -> None:
    image = smooth()
    encoded = encode_jpeg(image, quality=90)
    assert encoded.encoding is Encoding.JPEG
    out = decode(encoded)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert psnr(out, image) > 30
    # Channel order survives: red grows left to right, green top to bottom.
    assert out[:, -1, 0].mean() > 200 > out[:, 0, 0].mean()
    assert out[-1, :, 1].mean() > 200 > out[0, :, 1].mean()


def test_grey_jpeg_stays_two_dimensional() -> None:
    grey = np.ascontiguousarray(smooth()[..., 0])
    out = decode(encode_jpeg(grey, quality=90))
    assert out.shape == grey.shape
    assert psnr(out, grey) > 30


def test_png_alpha_is_dropped() -> None:
    rgb = smooth(20, 30)
    bgra = np.dstack([rgb[..., ::-1], np.full((20, 30), 9, np.uint8)])
    ok, data = cv2.imencode(".png", bgra)
    assert ok
    np.testing.assert_array_equal(decode(Encoded(data.tobytes(), Encoding.PNG)), rgb)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\xff\xd8\xff" + bytes(50),  # JPEG magic, then nothing sensible
    ],
)
def test_garbage_jpeg_is_a_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError, match=r"frame\.image"):
        decode(Encoded(data, Encoding.JPEG), where="frame.image")


def test_truncated_jpeg_is_a_schema_error() -> None:
    data = encode_jpeg(smooth(), quality=90).data
    with pytest.raises(SchemaError, match="corrupt"):
        decode(Encoded(data[: len(data) // 2], Encoding.JPEG))


def test_corrupt_png_is_a_schema_error() -> None:
    data = encode_png(smooth()).data
    with pytest.raises(SchemaError, match="corrupt"):
        decode(Encoded(data[:40] + bytes(200) + data[240:], Encoding.PNG))


def test_encoding_must_match_the_bytes() -> None:
    png = encode_png(smooth()).data
    with pytest.raises(SchemaError, match="not a JPEG"):
        decode(Encoded(png, Encoding.JPEG))
    jpeg = encode_jpeg(smooth(), quality=80).data
    with pytest.raises(SchemaError, match="not a PNG"):
        decode(Encoded(jpeg, Encoding.PNG))


def test_oversized_header_is_refused_before_decoding() -> None:
    # A small JPEG whose frame header claims 5000 x 5000: refused from the header alone.
    data = bytearray(encode_jpeg(smooth(16, 16), quality=80).data)
    sof = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5 : sof + 9] = struct.pack(">HH", 5000, 5000)
    with pytest.raises(SchemaError, match="5000x5000 pixels is over the limit"):
        decode(Encoded(bytes(data), Encoding.JPEG))


def test_oversized_png_is_refused() -> None:
    side = 4097
    assert side * side > MAX_PIXELS
    ok, data = cv2.imencode(".png", np.zeros((side, side), np.uint8))
    assert ok
    with pytest.raises(SchemaError, match="over the limit"):
        decode(Encoded(data.tobytes(), Encoding.PNG))
    with pytest.raises(SchemaError, match="over the limit"):  # nor is one written
        encode_png(np.zeros((side, side), np.uint8))
    small = encode_png(np.zeros((10, 10), np.uint8))
    with pytest.raises(SchemaError, match="over the limit of 99"):
        decode(small, max_pixels=99)
    assert decode(small, max_pixels=100).shape == (10, 10)


def test_to_rgb() -> None:
    image = smooth(8, 8)
    np.testing.assert_array_equal(to_rgb(image[..., ::-1], Colour.BGR), image)
    assert to_rgb(image, "rgb") is image
    grey = image[..., 0]
    assert to_rgb(grey, Colour.GRAY) is grey
    with pytest.raises(SchemaError, match="does not match colour gray"):
        to_rgb(image, Colour.GRAY)
    with pytest.raises(SchemaError, match="does not match colour rgb"):
        to_rgb(grey, "rgb")


def test_convert() -> None:
    image = smooth(8, 8)
    np.testing.assert_array_equal(convert(image, "bgr"), image[..., ::-1])
    assert convert(image, "rgb") is image
    np.testing.assert_array_equal(convert(image, "gray"), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    grey = image[..., 0]
    assert convert(grey, Colour.GRAY) is grey
    for want in ("rgb", "bgr"):
        out = convert(grey, want)
        assert out.shape == (8, 8, 3)
        assert (out == grey[..., None]).all()
    # An equal-channel RGB image converts back to exactly its grey values.
    np.testing.assert_array_equal(convert(convert(grey, "rgb"), "gray"), grey)


def test_jpeg_quality_is_checked() -> None:
    for quality in (0, 101):
        with pytest.raises(ValueError, match="quality"):
            encode_jpeg(smooth(8, 8), quality)


def test_check_names_where() -> None:
    with pytest.raises(SchemaError, match="crop 3: dtype float64"):
        check(np.zeros((2, 2)), where="crop 3")


def test_crop_inside_is_a_view() -> None:
    image = np.arange(100 * 80, dtype=np.int64).reshape(100, 80)
    out = crop(image, Region(10, 20, 30, 40))
    np.testing.assert_array_equal(out, image[20:60, 10:40])
    assert np.shares_memory(out, image)


def test_crop_is_clipped_and_grown_by_margin() -> None:
    image = np.zeros((100, 80, 3), np.uint8)
    assert crop(image, Region(-10, -5, 30, 20)).shape == (15, 20, 3)
    assert crop(image, Region(70, 90, 30, 30)).shape == (10, 10, 3)
    assert crop(image, Region(20, 20, 10, 20), margin=0.5).shape == (40, 20, 3)
    assert crop(image, Region(0, 0, 10, 10), margin=0.25).shape == (13, 13, 3)


@pytest.mark.parametrize(
    ("box", "margin", "message"),
    [
        (Region(100, 0, 10, 10), 0.0, "outside"),
        (Region(0, -20, 10, 10), 0.0, "outside"),
        (Region(5, 5, 0, 10), 0.0, "no area"),
        (Region(5, 5, 10, -1), 0.0, "no area"),
        (Region(5, 5, 10, 10), -0.1, "margin"),
    ],
)
def test_crop_refuses_nothing_to_crop(box: Region, margin: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crop(np.zeros((50, 100), np.uint8), box, margin=margin)


def rotated_text(angle: float) -> tuple[np.ndarray, np.ndarray]:
    """A 200 x 300 grey image holding a 120 x 30 'text' strip, dark (80) on its left half
    and bright (200) on its right, rotated by ``angle`` degrees about (150, 100); and the
    strip's corners (top-left, top-right, bottom-right, bottom-left) in the image."""
    canvas = np.full((200, 300), 20, np.uint8)
    canvas[85:115, 90:150] = 80
    canvas[85:115, 150:210] = 200
    matrix = cv2.getRotationMatrix2D((150.0, 100.0), angle, 1.0)
    image = cv2.warpAffine(canvas, matrix, (300, 200), flags=cv2.INTER_NEAREST, borderValue=20)
    corners = np.array([[90, 85], [210, 85], [210, 115], [90, 115]], dtype=np.float64)
    quad = np.hstack([corners, np.ones((4, 1))]) @ matrix.T
    return image, quad.astype(np.float32)


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
def test_crop_quad_straightens_rotated_text(angle: float) -> None:
    image, quad = rotated_text(angle)
    strip = crop_quad(image, quad, height=48)
    assert strip.shape == (48, 192)  # 120 x 30 keeps its 4:1 aspect ratio
    inner = strip[6:-6].astype(np.float64)
    left, right = inner[:, 10:86].mean(), inner[:, 106:-10].mean()
    assert abs(left - 80) < 6
    assert abs(right - 200) < 6


def test_crop_quad_turns_vertical_text() -> None:
    image = np.full((200, 100, 3), 20, np.uint8)
    image[20:140, 40:70] = (200, 100, 50)  # 30 wide, 120 tall
    quad = np.array([[40, 20], [70, 20], [70, 140], [40, 140]], dtype=np.float32)
    strip = crop_quad(image, quad, height=32)
    assert strip.shape == (32, 128, 3)
    np.testing.assert_allclose(strip[4:-4, 4:-4].reshape(-1, 3).mean(axis=0), (200, 100, 50))


@pytest.mark.parametrize(
    "quad",
    [
        np.zeros((3, 2), np.float32),
        np.full((4, 2), np.nan, np.float32),
        np.array([[0, 0], [10, 0], [10, 0.5], [0, 0.5]], np.float32),
    ],
)
def test_crop_quad_refuses_bad_quads(quad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="crop_quad"):
        crop_quad(np.zeros((20, 20), np.uint8), quad)
