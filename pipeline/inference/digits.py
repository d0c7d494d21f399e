"""The digits data set and the pixel contract between the camera and the models.

A digit from scikit-learn's ``load_digits`` is 64 values (8x8) in 0..16. The camera
draws value ``v`` as the uint8 pixel ``v * PIXEL_GAIN``, upscaled by nearest neighbour;
the workers turn any crop back into 64 values in 0..16, which is what the ONNX
models take as input. :func:`pixels_to_features` is the exact inverse of
:func:`digit_to_pixels`, so a clean frame gives the model exactly the held-out digit.

Everything here is plain numpy except :func:`load_split`, which imports scikit-learn
when called (the camera simulator and the training script need it; the workers do not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.errors import SchemaError

__all__ = [
    "DIGIT_SIDE",
    "HELDOUT_FRACTION",
    "MAX_VALUE",
    "N_FEATURES",
    "PIXEL_GAIN",
    "SPLIT_SEED",
    "DigitsSplit",
    "digit_to_pixels",
    "load_split",
    "pixels_to_features",
]

SPLIT_SEED = 0
HELDOUT_FRACTION = 0.3

DIGIT_SIDE = 8
N_FEATURES = DIGIT_SIDE * DIGIT_SIDE
MAX_VALUE = 16
# 16 * 15 = 240 fits in uint8 and every value maps to a distinct, exactly invertible pixel.
PIXEL_GAIN = 15


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed train / held-out split of ``load_digits``.

    ``x_*`` are float32 [n, 64] with values 0..16; ``y_*`` are int64 labels 0..9.
    Only held-out digits are ever shown by the camera simulator, so accuracies
    measured on camera frames are honest.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_heldout: np.ndarray
    y_heldout: np.ndarray


def load_split() -> DigitsSplit:
    """Load scikit-learn's bundled digits and split them, the same way every time.

    Stratified ``train_test_split`` with ``random_state=SPLIT_SEED`` and
    ``test_size=HELDOUT_FRACTION``. Needs scikit-learn (imported here, not at module
    level, so the workers can import this module without it). Nothing is downloaded.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target, dtype=np.int64)
    x_train, x_heldout, y_train, y_heldout = train_test_split(
        x, y, test_size=HELDOUT_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return DigitsSplit(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_heldout=np.ascontiguousarray(x_heldout),
        y_heldout=np.ascontiguousarray(y_heldout),
    )


def digit_to_pixels(x64: np.ndarray, scale: int = 4) -> np.ndarray:
    """Draw one digit's 64 values as a uint8 image of ``8*scale`` x ``8*scale`` pixels.

    Values are rounded and clipped to 0..16 first, so a perturbed digit still draws.
    """
    values = np.asarray(x64, dtype=np.float64)
    if values.size != N_FEATURES:
        raise ValueError(f"a digit has {N_FEATURES} values, got shape {values.shape}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    levels = np.clip(np.rint(values), 0, MAX_VALUE).reshape(DIGIT_SIDE, DIGIT_SIDE)
    pixels = (levels * PIXEL_GAIN).astype(np.uint8)
    return np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)


def pixels_to_features(crops: Sequence[np.ndarray]) -> np.ndarray:
    """Turn 2-D uint8 crops of any size into float32 [len(crops), 64] model features.

    A crop whose sides are multiples of 8 is block-averaged to 8x8; any other size is
    sampled at 8x8 block centres by nearest neighbour. Pixels are then divided by
    ``PIXEL_GAIN`` and clipped to 0..16 (pixels above 240, e.g. from a brightness
    drift, would otherwise leave the range the models were trained on).

    Raises :class:`~schemas.errors.SchemaError` for a crop that is not 2-D or is empty.
    """
    features = np.empty((len(crops), N_FEATURES), dtype=np.float32)
    for i, crop in enumerate(crops):
        features[i] = _crop_to_8x8(i, crop).reshape(-1)
    np.divide(features, PIXEL_GAIN, out=features)
    np.clip(features, 0, MAX_VALUE, out=features)
    return features


def _crop_to_8x8(index: int, crop: np.ndarray) -> np.ndarray:
    """One crop reduced to 8x8 float64 pixel values (before dividing by the gain)."""
    pixels = np.asarray(crop)
    if pixels.ndim != 2 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise SchemaError(f"crop {index}: shape {list(pixels.shape)} is not a non-empty 2-D image")
    height, width = pixels.shape
    if height % DIGIT_SIDE == 0 and width % DIGIT_SIDE == 0:
        blocks = pixels.reshape(DIGIT_SIDE, height // DIGIT_SIDE, DIGIT_SIDE, width // DIGIT_SIDE)
        return np.asarray(blocks.mean(axis=(1, 3), dtype=np.float64))
    rows = _centre_indices(height)
    cols = _centre_indices(width)
    return np.asarray(pixels[np.ix_(rows, cols)], dtype=np.float64)


def _centre_indices(length: int) -> np.ndarray:
    """Indices of the pixels nearest to the centres of 8 equal blocks along one side."""
    centres = np.linspace(0.5, DIGIT_SIDE - 0.5, DIGIT_SIDE) * (length / DIGIT_SIDE)
    return np.minimum(np.floor(centres).astype(np.intp), length - 1)
