"""Drift injected into a camera's digits: its kinds, what its strength means, applying it.

From ``drift_after_s`` into a run on, every digit's pixels get Gaussian noise, a
brightness offset or a Gaussian blur before they are drawn (``CameraOptions.drift``),
so the crops the workers see carry the drift. The noise comes from a generator of the
drift's own, so that drift never shifts the frames' random numbers.
"""

from __future__ import annotations

import math

import numpy as np

from schemas.errors import ConfigError

__all__ = ["DRIFT_KINDS", "DriftInjector", "check_drift"]

DRIFT_KINDS = ("none", "noise", "brightness", "blur")
# What drift_strength means for each kind, and its allowed range [low, high] (never 0).
_DRIFT_STRENGTH: dict[str, tuple[str, float, float]] = {
    "noise": ("the standard deviation of Gaussian pixel noise, as a share of 255", 0.0, 1.0),
    "brightness": ("an offset added to every pixel, as a share of 255 (< 0 darkens)", -1.0, 1.0),
    "blur": ("the Gaussian blur sigma, in digit cells (one cell is digit_scale pixels)", 0.0, 4.0),
}


def check_drift(drift: str, strength: float, after_s: float) -> None:
    """ConfigError naming the setting unless the three make a drift (or none at all)."""
    kinds = ", ".join(DRIFT_KINDS)
    if not isinstance(drift, str) or drift not in DRIFT_KINDS:
        raise ConfigError(f"drift must be one of {kinds}, got {drift!r}")
    for name, value in (("drift_strength", strength), ("drift_after_s", after_s)):
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if drift == "none":
        # A strength or start time without a kind is a forgotten setting, not a no-op.
        if strength != 0 or after_s != 0:
            raise ConfigError(
                "drift_strength and drift_after_s must stay 0 when drift is 'none' "
                f"(got {strength!r} and {after_s!r}); "
                f"set drift to one of {kinds}"
            )
        return
    if after_s < 0:
        raise ConfigError(f"drift_after_s must be >= 0, got {after_s!r}")
    meaning, low, high = _DRIFT_STRENGTH[drift]
    # 0 is never allowed: it would be drift that does nothing.
    if not low <= strength <= high or strength == 0:
        rule = f"in [{low:g}, {high:g}] and not 0"
        raise ConfigError(
            f"drift_strength for drift {drift!r} is {meaning}; it must be {rule}, got {strength!r}"
        )


class DriftInjector:
    """Applies one kind of drift to a digit's pixels; ``rng`` is the drift's own."""

    def __init__(
        self, drift: str, strength: float, digit_scale: int, rng: np.random.Generator
    ) -> None:
        self.drift = drift
        self.strength = strength
        self.digit_scale = digit_scale
        self._rng = rng

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """The digit's uint8 pixels with the drift applied."""
        values = pixels.astype(np.float64)
        if self.drift == "noise":
            values += self._rng.normal(0.0, self.strength * 255.0, values.shape)
        elif self.drift == "brightness":
            values += self.strength * 255.0
        elif self.drift == "blur":
            values = _gaussian_blur(values, self.strength * self.digit_scale)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float image; edges are extended (nearest)."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view
    rows = windows(padded, kernel.size, axis=1) @ kernel  # (h + 2r, w)
    blurred: np.ndarray = windows(rows, kernel.size, axis=0) @ kernel  # (h, w)
    return blurred
