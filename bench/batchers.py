"""The batching policies ``bench.batching`` compares, with the worker's defaults.

``adaptive`` is ``AdaptiveBatcher`` as ``EdgeWorker`` runs it; the baselines are
bounded FIFOs that reject a newcomer when full (as Triton's REJECT does) and differ
only in when they flush: ``FixedSize1`` every frame alone, ``FixedMax`` only full
batches (with a safety timeout), ``SizeOrTimeout`` a full batch or whatever is queued
once the oldest frame has waited. ``POLICIES`` names them in table order, and
``DEFAULT_POLICIES`` those a run measures unless told otherwise: the extra
``adaptive-no-saturation`` is the adaptive batcher with its saturation rule off (the
policy before issue 15), for an A/B of that rule within one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, Protocol, TypeVar

from edge_worker.batcher import DEFAULT_SATURATION, AdaptiveBatcher, Admission, BatchPolicy
from edge_worker.estimates import LatencyModel
from pipeline.config import EdgeSettings

__all__ = [
    "FIXED_MAX_SAFETY_S",
    "MAX_BATCH",
    "DEFAULT_POLICIES",
    "POLICIES",
    "QUEUE_CAPACITY",
    "Batcher",
    "FixedMax",
    "FixedSize1",
    "SizeOrTimeout",
]

T = TypeVar("T")

MAX_BATCH: Final = EdgeSettings.max_batch_size
QUEUE_CAPACITY: Final = EdgeSettings.queue_capacity
LATENCY_TARGET_S: Final = EdgeSettings.latency_target_ms / 1000
SIZE_OR_TIMEOUT_S: Final = 0.005
FIXED_MAX_SAFETY_S: Final = 1.0


class Batcher(Protocol[T]):
    """What the batch loop uses; ``AdaptiveBatcher`` and the baselines below have it."""

    def offer(self, item: T, *, priority: int, due: float) -> Admission[T]: ...

    async def next_batch(self) -> list[T]: ...

    def record_batch(self, size: int, seconds: float) -> None: ...

    def close(self) -> None: ...


class _QueueBatcher(Generic[T]):
    """A bounded FIFO that rejects a newcomer when full; subclasses say when to flush.

    ``_plan(now, queued, oldest_arrival)`` returns ``(size, wake_at)`` as
    ``BatchDecision`` does: flush ``size`` now, or wait for ``wake_at`` (None: for the
    next arrival) or the next arrival, whichever is first. After ``close()`` what is
    left comes out at once, ``max_batch_size`` at a time, then ``[]``.
    """

    def __init__(
        self, max_batch_size: int, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_batch_size < 1 or capacity < max_batch_size:
            raise ValueError("need 1 <= max_batch_size <= capacity")
        self.max_batch_size = max_batch_size
        self._capacity = capacity
        self._clock = clock
        self._queue: deque[tuple[float, T]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False

    def offer(self, item: T, *, priority: int, due: float) -> Admission[T]:
        del priority, due  # these baselines know neither
        if self._closed or len(self._queue) >= self._capacity:
            return Admission(False, item)
        self._queue.append((self._clock(), item))
        self._wakeup.set()
        return Admission(True, None)

    async def next_batch(self) -> list[T]:
        while True:
            if self._closed:
                return self._pop(min(len(self._queue), self.max_batch_size))
            now = self._clock()
            size, wake_at = (
                (0, None)
                if not self._queue
                else self._plan(now, len(self._queue), self._queue[0][0])
            )
            if size > 0:
                return self._pop(size)
            self._wakeup.clear()
            if wake_at is None:
                await self._wakeup.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, wake_at - now))

    def record_batch(self, size: int, seconds: float) -> None:
        del size, seconds  # nothing adapts

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def _plan(self, now: float, queued: int, oldest_arrival: float) -> tuple[int, float | None]:
        raise NotImplementedError

    def _pop(self, count: int) -> list[T]:
        return [self._queue.popleft()[1] for _ in range(count)]


class FixedSize1(_QueueBatcher[T]):
    """Every frame alone, as soon as the model is free (Triton with batching off)."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(1, capacity, clock)

    def _plan(self, now: float, queued: int, oldest_arrival: float) -> tuple[int, float | None]:
        return 1, None


class SizeOrTimeout(_QueueBatcher[T]):
    """A full batch, or whatever is queued once the oldest frame has waited ``timeout_s``."""

    def __init__(
        self,
        max_batch_size: int,
        capacity: int,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_batch_size, capacity, clock)
        self.timeout_s = timeout_s

    def _plan(self, now: float, queued: int, oldest_arrival: float) -> tuple[int, float | None]:
        if queued >= self.max_batch_size:
            return self.max_batch_size, None
        if now >= oldest_arrival + self.timeout_s:
            return queued, None
        return 0, oldest_arrival + self.timeout_s


class FixedMax(SizeOrTimeout[T]):
    """Only full batches; a partial one leaves when its oldest frame has waited the timeout.

    The rule of ``SizeOrTimeout``, with a timeout (``FIXED_MAX_SAFETY_S``) so long that it
    is only a safety net.
    """


def _adaptive(saturation: float = DEFAULT_SATURATION) -> Batcher[Any]:
    policy = BatchPolicy(MAX_BATCH, LATENCY_TARGET_S, LatencyModel(), saturation)
    return AdaptiveBatcher(policy, QUEUE_CAPACITY)


# No arrival rate times a full batch's run time reaches this many full batches: the
# saturation rule never fires, and the latency rules alone decide.
NEVER_SATURATED: Final = 1e12


# name -> (factory, description); the order is the order of the table and the plot.
POLICIES: dict[str, tuple[Callable[[], Batcher[Any]], str]] = {
    "adaptive": (
        _adaptive,
        f"AdaptiveBatcher, max {MAX_BATCH}, latency target {LATENCY_TARGET_S * 1000:g} ms, "
        f"saturation {DEFAULT_SATURATION:g}",
    ),
    "fixed-1": (lambda: FixedSize1(QUEUE_CAPACITY), "batch size 1"),
    "fixed-max": (
        lambda: FixedMax(MAX_BATCH, QUEUE_CAPACITY, FIXED_MAX_SAFETY_S),
        f"only batches of {MAX_BATCH} ({FIXED_MAX_SAFETY_S:g} s safety timeout)",
    ),
    "size-or-timeout": (
        lambda: SizeOrTimeout(MAX_BATCH, QUEUE_CAPACITY, SIZE_OR_TIMEOUT_S),
        f"{MAX_BATCH} frames or {SIZE_OR_TIMEOUT_S * 1000:g} ms after the oldest",
    ),
    "adaptive-no-saturation": (
        lambda: _adaptive(NEVER_SATURATED),
        "AdaptiveBatcher with the saturation rule off (latency rules only)",
    ),
}
DEFAULT_POLICIES: Final = ("adaptive", "fixed-1", "fixed-max", "size-or-timeout")
