"""The expected cloud round trip, from the answers that came back."""

from __future__ import annotations

import math
from collections import deque

from schemas.errors import ConfigError

__all__ = ["RoundTripEstimator"]


class RoundTripEstimator:
    """Recent cloud round trips, summarised as their 95th percentile.

    The estimate feeds a deadline decision, where an optimistic guess costs a missed
    deadline (the frame is escalated, the cloud answers too late, and the result is a
    degraded timeout) while a pessimistic one only answers a frame on the edge. So it
    is the p95 of recent samples rather than the mean or the median, which the slow
    tail of a network would not move. Until ``min_samples`` samples have been seen it
    returns ``prior_s``.
    """

    __slots__ = ("_dirty", "_min_samples", "_p95", "_prior", "_samples")

    def __init__(self, prior_s: float = 0.05, *, min_samples: int = 5, window: int = 256) -> None:
        """Keep the last ``window`` samples; use ``prior_s`` until ``min_samples``."""
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"window must be an integer >= 1, got {window!r}")
        if (
            not isinstance(min_samples, int)
            or isinstance(min_samples, bool)
            or not 1 <= min_samples <= window
        ):
            raise ConfigError(
                f"min_samples must be an integer in [1, window={window}], got {min_samples!r}"
            )
        if (
            not isinstance(prior_s, int | float)
            or isinstance(prior_s, bool)
            or not math.isfinite(prior_s)
            or prior_s < 0
        ):
            raise ConfigError(f"prior_s must be a finite number >= 0, got {prior_s!r}")
        self._prior = float(prior_s)
        self._min_samples = min_samples
        self._samples: deque[float] = deque(maxlen=window)
        self._p95 = self._prior
        self._dirty = False

    def observe(self, seconds: float) -> None:
        """Record one cloud round trip, in seconds."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._samples.append(float(seconds))
        self._dirty = True

    def estimate(self) -> float:
        """The p95 of recent round trips (nearest rank, an observed value), or the prior."""
        if len(self._samples) < self._min_samples:
            return self._prior
        if self._dirty:
            # Sorted on read and cached: the frames of one batch are decided between two
            # answers and share one sort.
            ordered = sorted(self._samples)
            self._p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
            self._dirty = False
        return self._p95

    def __len__(self) -> int:
        return len(self._samples)
