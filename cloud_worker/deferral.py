"""Which escalations may wait for company, and when the wait is over: pure, no I/O.

A bigger batch costs less per escalation. An escalation that is not urgent (lowest
priority, a deadline far beyond the longest wait) is parked, unacked and kept in
progress by the worker, until ``defer_batch`` are parked, the oldest has waited
``defer_max_s``, or the worker drains. docs/cost-model.md ("Spending on purpose").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["DEFER_MARGIN_S", "Parking"]

J = TypeVar("J")

# A deferred escalation's deadline must leave this much beyond the longest wait.
DEFER_MARGIN_S = 5.0


class Parking(Generic[J]):
    """Parked jobs, oldest first. ``defer_batch`` 0 parks nothing."""

    __slots__ = ("_jobs", "defer_batch", "defer_max_s")

    def __init__(self, defer_batch: int, defer_max_s: float) -> None:
        self.defer_batch = defer_batch
        self.defer_max_s = defer_max_s
        self._jobs: list[tuple[float, J]] = []  # (parked at, monotonic; job)

    def deferrable(self, priority: int, time_left_s: float) -> bool:
        """Non-urgent: lowest priority, and a deadline far beyond the longest wait."""
        return (
            self.defer_batch > 0
            and priority == 3
            and time_left_s > self.defer_max_s + DEFER_MARGIN_S
        )

    def park(self, job: J, now: float) -> None:
        self._jobs.append((now, job))

    def take(self, now: float, *, draining: bool) -> list[J]:
        """The parked jobs, once a big enough batch, the longest wait or draining says so."""
        jobs = self._jobs
        due = (
            len(jobs) >= self.defer_batch
            or (jobs and now - jobs[0][0] >= self.defer_max_s)
            or draining
        )
        if not jobs or not due:
            return []
        self._jobs = []
        return [job for _, job in jobs]

    def __iter__(self) -> Iterator[J]:
        return iter([job for _, job in self._jobs])

    def __len__(self) -> int:
        return len(self._jobs)
