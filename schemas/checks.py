"""The one way numbers in configuration and messages are checked.

Pure. ``is_number`` says whether a value is a finite int or float (a bool is not a
number); each ``require_*`` returns the value checked, or raises ``ConfigError``
naming the setting, the range it must be in and the value it got. Settings files
(pipeline/config.py), manifests, rollout plans and the batching and drift parameters
all check with these.
"""

from __future__ import annotations

import math

from schemas.errors import ConfigError

__all__ = ["is_number", "require_int", "require_number"]


def is_number(value: object) -> bool:
    """A finite int or float (a bool is not a number)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def require_int(name: str, value: object, minimum: int) -> int:
    """An integer >= ``minimum`` (a bool is not an integer)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_number(
    name: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_: bool = False,
) -> float:
    """A finite number in [low, high], or in (low, high) with ``open_``."""
    number = float(value) if is_number(value) else math.nan  # type: ignore[arg-type]
    if low < number < high or (not open_ and number in (low, high)):
        return number
    if math.isinf(high):
        bound = f"> {_text(low)}" if open_ else f">= {_text(low)}"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    ends = f"{_text(low)}, {_text(high)}"
    interval = f"({ends})" if open_ else f"[{ends}]"
    raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")


def _text(bound: float) -> str:
    """A bound as people write it: 4096, 0.5, 17592186044416."""
    return str(int(bound)) if float(bound).is_integer() else repr(float(bound))
