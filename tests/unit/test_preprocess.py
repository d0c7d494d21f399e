"""Model-input preprocessing and its geometry (pipeline.inference.preprocess)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.inference.digits import DigitsSplit, digit_to_pixels
from pipeline.inference.geometry import Geometry
from pipeline.inference.images import convert
from pipeline.inference.preprocess import PREPROCESSORS, InputSpec, prepare, preprocess
from schemas.errors import ModelError, SchemaError

DET_MEAN = (0.485, 0.456, 0.406)
DET_STD = (0.229, 0.224, 0.225)
REC: dict[str, Any] = {
    "resize": "fit_height",
    "height": 48,
    "width": 320,
    "mean": (0.5,) * 3,
    "std": (0.5,) * 3,
}


def solid(height: int, width: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


def to_input(geometry: Geometry, xyxy: np.ndarray) -> np.ndarray:
    """Source boxes -> input boxes: input = source * scale + pad."""
    out = np.asarray(xyxy, np.float64).copy()
    out[:, 0::2] = out[:, 0::2] * geometry.scale_x + geometry.pad_x
    out[:, 1::2] = out[:, 1::2] * geometry.scale_y + geometry.pad_y
    return out


def test_letterbox_geometry_round_trips_exactly() -> None:
    tensor, (geometry,) = prepare(
        [solid(720, 1280, (255, 255, 255))], InputSpec(width=640, height=640)
    )
    assert tensor.shape == (1, 3, 640, 640) and tensor.dtype == np.float32
    assert geometry == Geometry(1280, 720, 0.5, 0.5, 0.0, 140.0)
    boxes = np.array([[100, 200, 300, 400], [0, 0, 1280, 720]], np.float32)
    inputs = to_input(geometry, boxes)
    np.testing.assert_array_equal(inputs, [[50, 240, 150, 340], [0, 140, 640, 500]])
    np.testing.assert_array_equal(geometry.to_source(inputs), boxes)
    # The image fills rows 140..499; the border is pad_value (114) scaled by 1/255.
    np.testing.assert_allclose(tensor[0, :, 140:500], 1.0)
    np.testing.assert_allclose(tensor[0, :, :140], 114 / 255)
    np.testing.assert_allclose(tensor[0, :, 500:], 114 / 255)


@pytest.mark.parametrize(("height", "width"), [(333, 1000), (1000, 333), (480, 640), (17, 23)])
def test_letterbox_places_the_image_where_geometry_says(height: int, width: int) -> None:
    spec = InputSpec(width=320, height=256, dtype="uint8", pad_value=0)
    tensor, (geometry,) = prepare([solid(height, width, (200, 200, 200))], spec)
    x0, y0, x1, y1 = to_input(geometry, np.array([[0, 0, width, height]]))[0]
    filled = np.argwhere(tensor[0, 0] > 0)
    assert (filled.min(axis=0) == (y0, x0)).all()
    assert (filled.max(axis=0) + 1 == (y1, x1)).all()
    assert x1 - x0 == 320 or y1 - y0 == 256  # one side fills the input
    assert geometry.scale_x == pytest.approx(geometry.scale_y, rel=0.02)


def test_stretch_geometry() -> None:
    spec = InputSpec(width=224, height=224, resize="stretch")
    tensor, (geometry,) = prepare([solid(100, 400, (0, 0, 0))], spec)
    assert tensor.shape == (1, 3, 224, 224)
    assert geometry == Geometry(400, 100, 224 / 400, 224 / 100, 0.0, 0.0)
    box = np.array([[40, 10, 200, 90]], np.float32)
    np.testing.assert_allclose(geometry.to_source(to_input(geometry, box)), box, atol=1e-4)


def test_normalisation_matches_a_hand_computation() -> None:
    rgb = (10, 128, 250)
    spec = InputSpec(mean=DET_MEAN, std=DET_STD)  # dynamic size, as PaddleOCR det
    tensor, (geometry,) = prepare([solid(64, 96, rgb)], spec)
    assert tensor.shape == (1, 3, 64, 96)
    assert geometry == Geometry.identity(96, 64)
    for c in range(3):
        want = (rgb[c] / 255 - DET_MEAN[c]) / DET_STD[c]
        np.testing.assert_allclose(tensor[0, c], want, rtol=1e-6, atol=1e-6)


def test_layouts_hold_the_same_values() -> None:
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    common: dict[str, Any] = {"width": 64, "height": 64, "mean": DET_MEAN, "std": DET_STD}
    nchw, _ = prepare([image, image[::-1]], InputSpec(layout="nchw", **common))
    nhwc, _ = prepare([image, image[::-1]], InputSpec(layout="nhwc", **common))
    assert nchw.shape == (2, 3, 64, 64) and nhwc.shape == (2, 64, 64, 3)
    assert nchw.flags.c_contiguous and nhwc.flags.c_contiguous
    np.testing.assert_array_equal(nchw, nhwc.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_red_lands_in_channel_two_of_a_bgr_model(layout: str) -> None:
    sizes: dict[str, Any] = {"width": 8, "height": 8, "layout": layout}
    tensor, _ = prepare([solid(8, 8, (255, 0, 0))], InputSpec(colour="bgr", **sizes))
    channels = tensor[0] if layout == "nchw" else tensor[0].transpose(2, 0, 1)
    np.testing.assert_array_equal(channels[2], 1.0)
    np.testing.assert_array_equal(channels[:2], 0.0)
    rgb, _ = prepare([solid(8, 8, (255, 0, 0))], InputSpec(**sizes))
    np.testing.assert_array_equal(rgb[0, 0] if layout == "nchw" else rgb[0, ..., 0], 1.0)


def test_gray_models_get_one_channel() -> None:
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    spec = InputSpec(width=32, height=32, colour="gray", mean=(0.0,), std=(1.0,), dtype="uint8")
    nchw, _ = prepare([image], spec)
    assert nchw.shape == (1, 1, 32, 32)
    np.testing.assert_array_equal(nchw[0, 0], convert(image, "gray"))
    grey = image[..., 0]
    nhwc, _ = prepare([grey], InputSpec(width=32, height=32, colour="gray", layout="nhwc"))
    assert nhwc.shape == (1, 32, 32, 1)
    np.testing.assert_allclose(nhwc[0, ..., 0], grey / 255, rtol=1e-6)


def test_grey_images_fill_every_channel_of_a_colour_model() -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    tensor, _ = prepare([grey], InputSpec(width=8, height=8, dtype="uint8"))
    assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(tensor[0, c], grey)


def test_float16() -> None:
    tensor, _ = prepare(
        [solid(8, 8, (51, 102, 255))], InputSpec(width=8, height=8, dtype="float16")
    )
    assert tensor.dtype == np.float16
    np.testing.assert_allclose(tensor[0, :, 0, 0], (0.2, 0.4, 1.0), rtol=1e-3)


def test_fit_height_batch_with_two_widths() -> None:
    wide = solid(32, 100, (255, 255, 255))
    narrow = solid(32, 50, (0, 0, 0))
    tensor, geometries = prepare([wide, narrow], InputSpec(**REC))
    assert tensor.shape == (2, 3, 48, 150)  # 100 * 48/32 = 150, the widest line
    assert geometries[0] == Geometry(100, 32, 1.5, 1.5)
    assert geometries[1] == Geometry(50, 32, 1.5, 1.5)
    np.testing.assert_array_equal(tensor[0], 1.0)  # (1 - 0.5) / 0.5
    np.testing.assert_array_equal(tensor[1, :, :, :75], -1.0)  # (0 - 0.5) / 0.5
    np.testing.assert_array_equal(tensor[1, :, :, 75:], 0.0)  # padded in normalised space
    nhwc, _ = prepare([wide, narrow], InputSpec(**REC, layout="nhwc"))
    np.testing.assert_array_equal(nhwc, tensor.transpose(0, 2, 3, 1))


def test_fit_height_caps_the_width() -> None:
    long_line = solid(32, 1000, (128, 128, 128))
    tensor, (geometry, _) = prepare([long_line, solid(32, 40, (0, 0, 0))], InputSpec(**REC))
    assert tensor.shape == (2, 3, 48, 320)
    assert geometry == Geometry(1000, 32, 320 / 1000, 1.5)
    spec = InputSpec(resize="fit_height", height=48, max_side=200)  # no width: max_side caps
    tensor, (geometry,) = prepare([long_line], spec)
    assert tensor.shape == (1, 3, 48, 200)
    # A line narrower than the height ratio rounds up (as PaddleOCR: ceil).
    _, (geometry,) = prepare([solid(30, 7, (0, 0, 0))], spec)
    assert geometry.scale_x == 12 / 7


def test_dynamic_size_as_paddleocr_det() -> None:
    spec = InputSpec(max_side=960, multiple=32, mean=DET_MEAN, std=DET_STD)
    tensor, (geometry,) = prepare([solid(720, 1280, (0, 0, 0))], spec)
    # 1280x720 * 0.75 = 960x540; 540 rounds to 17 * 32 = 544.
    assert tensor.shape == (1, 3, 544, 960)
    assert geometry == Geometry(1280, 720, 960 / 1280, 544 / 720)
    _, (small,) = prepare([solid(50, 100, (0, 0, 0))], spec)
    assert (small.scale_x * 100, small.scale_y * 50) == (96, 64)  # not scaled up, rounded


def test_dynamic_batch_pads_into_the_largest() -> None:
    spec = InputSpec(dtype="uint8", pad_value=7)
    big, small = solid(720, 1280, (255, 255, 255)), solid(64, 64, (255, 255, 255))
    tensor, geometries = prepare([big, small], spec)
    assert tensor.shape == (2, 3, 544, 960)
    assert geometries[1] == Geometry.identity(64, 64)
    assert (tensor[1, :, :64, :64] == 255).all()
    assert (tensor[1, :, 64:] == 7).all() and (tensor[1, :, :, 64:] == 7).all()
    np.testing.assert_array_equal(tensor[0], 255)


def test_batch_size_is_checked() -> None:
    spec = InputSpec(width=8, height=8, max_batch=2)
    with pytest.raises(ValueError, match=r"1\.\.2 images, got 3"):
        prepare([solid(8, 8, (0, 0, 0))] * 3, spec)
    with pytest.raises(ValueError, match="got 0"):
        prepare([], spec)
    with pytest.raises(SchemaError, match="image 1"):
        prepare([solid(8, 8, (0, 0, 0)), np.zeros((8, 8), np.float32)], spec)


def test_digits_preprocessor(split: DigitsSplit) -> None:
    digits = split.x_heldout[:5]
    crops = [digit_to_pixels(d, scale=4) for d in digits]
    crops[1] = convert(crops[1], "rgb")  # a colour crop of a grey digit
    spec = InputSpec(preprocess="digits8x8")
    features, geometries = preprocess(crops, spec)
    assert features.dtype == np.float32 and features.shape == (5, 64)
    np.testing.assert_array_equal(features, digits)
    assert geometries == [Geometry.identity(32, 32)] * 5
    assert PREPROCESSORS["image"] is prepare


def test_image_preprocessor_dispatch() -> None:
    spec = InputSpec(width=16, height=16)
    direct, _ = prepare([solid(8, 8, (1, 2, 3))], spec)
    via, _ = preprocess([solid(8, 8, (1, 2, 3))], spec)
    np.testing.assert_array_equal(direct, via)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"preprocess": "sobel"}, "preprocess"),
        ({"layout": "chw"}, "layout"),
        ({"colour": "yuv"}, "colour"),
        ({"dtype": "int8"}, "dtype"),
        ({"resize": "crop"}, "resize"),
        ({"width": 0, "height": 10}, "width"),
        ({"width": 10, "height": -1}, "height"),
        ({"width": 10.5, "height": 10}, "width"),
        ({"multiple": 0}, "multiple"),
        ({"max_side": 0}, "max_side"),
        ({"max_side": 16, "multiple": 32}, "max_side"),
        ({"max_batch": 0}, "max_batch"),
        ({"pad_value": 256}, "pad_value"),
        ({"scale": 0.0}, "scale"),
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": (1.0, 0.0, 1.0)}, "std"),
        ({"std": ()}, "std"),
        ({"mean": (float("nan"),)}, "mean"),
        ({"colour": "gray", "mean": (0.1, 0.2, 0.3)}, "mean"),
        ({"resize": "stretch"}, "width"),
        ({"resize": "fit_height"}, "height"),
        ({"width": 640}, "width"),
    ],
)
def test_bad_specs_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ModelError, match=f"input spec: {field} is"):
        InputSpec(**fields)


def test_unknown_preprocessor_lists_the_registered_ones() -> None:
    with pytest.raises(ModelError, match=r"\['digits8x8', 'image'\]"):
        InputSpec(preprocess="sobel")


def test_defaults_are_valid() -> None:
    spec = InputSpec()
    assert (spec.width, spec.height, spec.resize) == (None, None, "letterbox")
    InputSpec(colour="gray")  # three equal values serve one channel
