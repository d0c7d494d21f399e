"""Checks of the numbers a release is configured with, on top of ``schemas.checks``."""

from __future__ import annotations

from schemas.checks import is_number, require_int, require_number
from schemas.errors import ConfigError

__all__ = ["is_number", "require_at_least", "require_int", "require_open", "require_pair"]


def require_open(name: str, value: object, low: float, high: float) -> None:
    require_number(name, value, low, high, open_=True)


def require_at_least(name: str, value: object, low: float) -> None:
    require_number(name, value, low)


def require_pair(prefix: str, margin: float, detect: float) -> None:
    require_open(f"{prefix}margin", margin, 0, 1)
    require_open(f"{prefix}detect", detect, 0, 1)
    if detect <= margin:
        raise ConfigError(
            f"{prefix}detect ({detect!r}) must be greater than {prefix}margin ({margin!r})"
        )
