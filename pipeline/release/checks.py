"""Checks of the numbers a release is configured with: finite, in range, integers.

Pure. Each ``require_*`` raises ``ConfigError`` naming the setting and its value.
"""

from __future__ import annotations

import math

from schemas.errors import ConfigError

__all__ = ["is_number", "require_at_least", "require_int", "require_open", "require_pair"]


def is_number(value: object) -> bool:
    """A finite int or float (a bool is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_open(name: str, value: object, low: float, high: float) -> None:
    if not (is_number(value) and low < float(value) < high):  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a number in ({low:g}, {high:g}), got {value!r}")


def require_at_least(name: str, value: object, low: float) -> None:
    if not (is_number(value) and float(value) >= low):  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a finite number >= {low:g}, got {value!r}")


def require_pair(prefix: str, margin: float, detect: float) -> None:
    require_open(f"{prefix}margin", margin, 0, 1)
    require_open(f"{prefix}detect", detect, 0, 1)
    if detect <= margin:
        raise ConfigError(
            f"{prefix}detect ({detect!r}) must be greater than {prefix}margin ({margin!r})"
        )
