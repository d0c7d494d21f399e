"""What the batch policy reads: online estimates of batch run time and arrival rate.

``LatencyModel`` fits how long a batch of ``n`` items takes, with a tail margin;
``ArrivalRate`` is an exponentially weighted count of arrivals per second. Both are
pure: time and measurements are passed in, so they are tested with plain floats.
"""

from __future__ import annotations

import math
from collections import deque

from schemas.checks import require_int, require_number

__all__ = ["ArrivalRate", "LatencyModel"]


class LatencyModel:
    """Online estimate of how long a batch of ``n`` items takes to run.

    Fits ``t(n) = a + b*n`` by least squares over the last ``window`` observed batches
    and adds ``tail_sigmas`` standard deviations of the residuals, so that a deadline
    computed from ``estimate`` holds for the slow tail too (Clipper's mean + 3 sigma).

    Until two distinct batch sizes have been seen a line cannot be fitted:

    * no samples: the prior ``prior_a + prior_b * n``;
    * samples of one size ``n0`` only: their mean scaled per item for ``n >= n0``
      (pessimistic, as it charges the fixed cost once per item), and the mean itself
      for smaller ``n`` (a smaller batch is not assumed faster than the one seen).
    """

    __slots__ = (
        "_a",
        "_b",
        "_floor",
        "_margin",
        "_prior_a",
        "_prior_b",
        "_samples",
        "_tail_sigmas",
    )

    def __init__(
        self,
        *,
        window: int = 50,
        tail_sigmas: float = 3.0,
        prior_a: float = 0.001,
        prior_b: float = 0.00005,
    ) -> None:
        """Create a model with no samples.

        ``prior_a`` (seconds) and ``prior_b`` (seconds per item) are used until samples
        arrive; ``window`` is how many recent batches the fit uses.
        """
        require_int("window", window, 1)
        self._tail_sigmas = require_number("tail_sigmas", tail_sigmas, 0.0)
        self._prior_a = require_number("prior_a", prior_a, 0.0)
        self._prior_b = require_number("prior_b", prior_b, 0.0)
        self._samples: deque[tuple[int, float]] = deque(maxlen=window)
        self._a = self._prior_a
        self._b = self._prior_b
        self._margin = 0.0
        # (n0, mean) while all samples share one size; see the class docstring.
        self._floor: tuple[int, float] | None = None

    def observe(self, n: int, seconds: float) -> None:
        """Record that a batch of ``n`` items took ``seconds`` to run."""
        # bool is an int subclass; True as a batch size is a typo, not a 1.
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._samples.append((n, float(seconds)))
        # Refit here, once per batch, so that estimate() (called on every arrival) is O(1).
        self._refit()

    def estimate(self, n: int) -> float:
        """Seconds a batch of ``n`` items should take, tail margin included; never < 0."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        base = self._a + self._b * n
        if self._floor is not None and n < self._floor[0]:
            base = self._floor[1]
        return max(0.0, base + self._margin)

    @property
    def coefficients(self) -> tuple[float, float]:
        """The line in use, ``(a, b)``: seconds and seconds per item, margin excluded."""
        return (self._a, self._b)

    @property
    def margin(self) -> float:
        """The tail margin added to the line: ``tail_sigmas`` * residual stddev."""
        return self._margin

    def _refit(self) -> None:
        samples = self._samples
        k = len(samples)
        sizes = {n for n, _ in samples}
        mean_n = sum(n for n, _ in samples) / k
        mean_t = sum(t for _, t in samples) / k
        if len(sizes) == 1:
            n0 = samples[0][0]
            self._a, self._b = 0.0, mean_t / n0
            self._floor = (n0, mean_t)
            ssr = sum((t - mean_t) ** 2 for _, t in samples)
            dof = k - 1
        else:
            sxx = sum((n - mean_n) ** 2 for n, _ in samples)
            sxy = sum((n - mean_n) * (t - mean_t) for n, t in samples)
            # A negative slope is noise (bigger batches are never faster); it would make
            # the deadline bound looser for exactly the batches that take longest.
            b = max(0.0, sxy / sxx)
            a = mean_t - b * mean_n
            self._a, self._b = a, b
            self._floor = None
            ssr = sum((t - (a + b * n)) ** 2 for n, t in samples)
            dof = k - 2
        sigma = math.sqrt(ssr / dof) if dof > 0 else 0.0
        self._margin = self._tail_sigmas * sigma


class ArrivalRate:
    """Exponentially weighted arrivals per second.

    Keeps a count of arrivals in which each arrival's weight halves every
    ``half_life_s``; at a steady rate ``r`` that count settles at ``r * half_life_s /
    ln 2``, so ``rate`` scales it back. With no arrivals the rate decays towards 0.
    Right after start it under-estimates, which only makes the policy flush sooner.
    """

    __slots__ = ("_count", "_half_life", "_last")

    def __init__(self, half_life_s: float = 1.0) -> None:
        """Create an estimator that has seen nothing (rate 0)."""
        self._half_life = require_number("half_life_s", half_life_s, 0.0, open_=True)
        self._count = 0.0
        self._last: float | None = None

    def observe(self, now: float) -> None:
        """Record one arrival at monotonic time ``now``."""
        self._count = self._decayed(now) + 1.0
        if self._last is None or now > self._last:
            self._last = now

    def rate(self, now: float) -> float:
        """Arrivals per second as of ``now``."""
        return self._decayed(now) * math.log(2.0) / self._half_life

    def _decayed(self, now: float) -> float:
        if self._last is None:
            return 0.0
        # A clock that steps back must not inflate the count.
        elapsed = max(0.0, now - self._last)
        return self._count * math.exp(-elapsed * math.log(2.0) / self._half_life)
