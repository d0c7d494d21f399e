"""The digits split and the pixel contract between the camera and the models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.inference.digits import (
    HELDOUT_FRACTION,
    PIXEL_GAIN,
    DigitsSplit,
    digit_to_pixels,
    load_split,
    pixels_to_features,
)
from schemas.errors import SchemaError


@pytest.mark.parametrize("scale", [1, 2, 4, 5])
def test_round_trip_is_exact(split: DigitsSplit, scale: int) -> None:
    digits = split.x_heldout[:50]
    crops = [digit_to_pixels(d, scale=scale) for d in digits]
    features = pixels_to_features(crops)
    assert features.dtype == np.float32
    assert features.shape == (50, 64)
    np.testing.assert_array_equal(features, digits)


def test_digit_to_pixels_draws_value_times_gain(split: DigitsSplit) -> None:
    digit = split.x_heldout[0]
    pixels = digit_to_pixels(digit, scale=3)
    assert pixels.dtype == np.uint8
    assert pixels.shape == (24, 24)
    assert int(pixels.max()) == int(digit.max()) * PIXEL_GAIN
    # Nearest-neighbour upscaling: each 3x3 block is one value.
    np.testing.assert_array_equal(pixels[::3, ::3], (digit.reshape(8, 8) * PIXEL_GAIN))


def test_digit_to_pixels_clips_out_of_range_values() -> None:
    values = np.full(64, 20.0)
    values[0] = -3.0
    pixels = digit_to_pixels(values, scale=1)
    assert pixels[0, 0] == 0
    assert pixels[0, 1] == 16 * PIXEL_GAIN


@pytest.mark.parametrize("shape", [(1, 1), (7, 7), (13, 21), (30, 33), (100, 9)])
def test_crop_of_any_size_gives_64_features_in_range(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, size=shape, dtype=np.uint8)
    features = pixels_to_features([crop])
    assert features.shape == (1, 64)
    assert features.dtype == np.float32
    assert features.min() >= 0.0
    assert features.max() <= 16.0


def test_non_multiple_of_8_crop_samples_nearest_neighbour(split: DigitsSplit) -> None:
    # A 4x digit with an extra row and column (36x36 -> 37x37) still reads back exactly:
    # the block centres land inside the original 4x4 blocks.
    digit = split.x_heldout[3]
    pixels = digit_to_pixels(digit, scale=4)
    grown = np.pad(pixels, ((0, 1), (0, 1)), mode="edge")
    np.testing.assert_array_equal(pixels_to_features([grown])[0], digit)


def test_uniform_crop_of_any_size_reads_its_level() -> None:
    crop = np.full((11, 5), 7 * PIXEL_GAIN, dtype=np.uint8)
    np.testing.assert_array_equal(pixels_to_features([crop]), np.full((1, 64), 7.0, np.float32))


def test_block_average_of_multiple_of_8_crop() -> None:
    crop = np.zeros((16, 16), dtype=np.uint8)
    crop[0, 0] = 4 * PIXEL_GAIN  # one of the four pixels in the top-left 2x2 block
    features = pixels_to_features([crop])
    assert features[0, 0] == pytest.approx(1.0)
    assert features[0, 1:].max() == 0.0


def test_bright_pixels_are_clipped_to_16() -> None:
    crop = np.full((8, 8), 255, dtype=np.uint8)
    assert pixels_to_features([crop]).max() == 16.0


def test_empty_list_gives_empty_features() -> None:
    features = pixels_to_features([])
    assert features.shape == (0, 64)
    assert features.dtype == np.float32


@pytest.mark.parametrize("shape", [(0, 8), (8, 0), (8,), (2, 8, 8)])
def test_bad_crop_shapes_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(SchemaError, match="crop 1"):
        pixels_to_features([np.zeros((8, 8), np.uint8), np.zeros(shape, np.uint8)])


def test_split_is_deterministic(split: DigitsSplit) -> None:
    again = load_split()
    for name in ("x_train", "y_train", "x_heldout", "y_heldout"):
        np.testing.assert_array_equal(getattr(split, name), getattr(again, name))


def test_split_is_a_disjoint_stratified_partition(split: DigitsSplit) -> None:
    from sklearn.datasets import load_digits

    everything = load_digits().data
    train = {row.tobytes() for row in split.x_train.astype(np.float64)}
    heldout = {row.tobytes() for row in split.x_heldout.astype(np.float64)}
    assert not train & heldout
    assert train | heldout == {row.tobytes() for row in everything.astype(np.float64)}
    # train_test_split rounds the held-out count up.
    assert len(split.y_heldout) == math.ceil(len(everything) * HELDOUT_FRACTION)
    # Stratified: every class keeps about the same share of held-out digits.
    shares = np.bincount(split.y_heldout) / np.bincount(
        np.concatenate([split.y_train, split.y_heldout])
    )
    assert shares.min() > HELDOUT_FRACTION - 0.02
    assert shares.max() < HELDOUT_FRACTION + 0.02


def test_split_dtypes_and_ranges(split: DigitsSplit) -> None:
    assert split.x_train.dtype == np.float32
    assert split.x_heldout.dtype == np.float32
    assert split.y_train.dtype == np.int64
    assert split.x_train.shape[1] == 64
    assert split.x_train.min() == 0.0
    assert split.x_train.max() == 16.0
    assert set(np.unique(split.y_heldout)) == set(range(10))
