"""Adaptive, deadline-aware batching of frames in front of the edge model.

Unlike a fixed size-or-timeout batcher (TorchServe, Ray Serve, Triton's queue delay),
the policy here adds no wait when traffic is light, lets batches grow while the model
is busy, and bounds every wait by the oldest frame's deadline through an online model
of batch run time with a tail margin (design note: batching-anchors.md).

The pure parts (``BatchPolicy`` and the estimates it reads, edge_worker/estimates.py)
take time as an argument and can be tested with plain floats; ``AdaptiveBatcher`` is
the asyncio side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge_worker.estimates import ArrivalRate, LatencyModel
from schemas.checks import require_int, require_number
from schemas.errors import ConfigError

__all__ = ["AdaptiveBatcher", "Admission", "BatchDecision", "BatchPolicy"]

T = TypeVar("T")

_PRIORITIES = (1, 2, 3)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as a batch size is a config typo, not a 1.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """What the batcher should do now.

    ``size > 0``: flush that many items now. ``size == 0``: wait until ``wake_at``
    (monotonic seconds) or the next arrival, whichever comes first; ``wake_at`` None
    means wait for the next arrival only.
    """

    size: int
    wake_at: float | None


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When to flush a batch, and how big: pure, time is passed in.

    ``latency_target_s`` is the queueing plus model time allowed to a frame at the
    edge; ``latency_model`` is shared with whoever records batch run times.
    """

    max_batch_size: int
    latency_target_s: float
    latency_model: LatencyModel

    def __post_init__(self) -> None:
        require_int("max_batch_size", self.max_batch_size, 1)
        require_number("latency_target_s", self.latency_target_s, 0.0, open_=True)
        if not isinstance(self.latency_model, LatencyModel):
            raise ConfigError(
                f"latency_model must be a LatencyModel, got {type(self.latency_model).__name__}"
            )

    def decide(
        self,
        now: float,
        queued: int,
        oldest_arrival: float,
        oldest_due: float,
        arrival_rate: float,
    ) -> BatchDecision:
        """Decide whether to flush now and how many, or how long to wait.

        ``oldest_due`` is the monotonic time by which the oldest queued item must have
        left the model (the earlier of its arrival + latency target and its own
        deadline). ``oldest_arrival`` is part of the signature so that baseline
        policies (size-or-timeout) are interchangeable; this policy does not need it.
        ``arrival_rate`` is in items per second.

        Rules, first match wins: nothing queued -> wait for an arrival; a full batch ->
        flush it; the oldest item's latest start reached -> flush all; fewer than one
        more arrival expected before that latest start -> flush all now (waiting would
        only add latency); the queue already holds at least what arrives while a batch
        of its size runs -> flush all now (a model that keeps up needs no bigger batch);
        otherwise wait until the latest start or until the queue is expected to be
        full, whichever is sooner.
        """
        del oldest_arrival  # see docstring
        if queued <= 0:
            return BatchDecision(0, None)
        if queued >= self.max_batch_size:
            return BatchDecision(self.max_batch_size, None)
        latest_start = oldest_due - self.latency_model.estimate(queued)
        if now >= latest_start:
            return BatchDecision(queued, None)
        rate = arrival_rate if arrival_rate > 0 else 0.0  # also maps NaN to 0
        if rate * (latest_start - now) < 1.0:
            return BatchDecision(queued, None)
        if queued >= rate * self.latency_model.estimate(queued):
            return BatchDecision(queued, None)
        full_at = now + (self.max_batch_size - queued) / rate
        if full_at <= now:
            # Only an absurd (infinite) rate gets here; waking "now" would spin, and an
            # arrival wakes the batcher anyway.
            full_at = latest_start
        return BatchDecision(0, min(latest_start, full_at))


@dataclass(frozen=True, slots=True)
class Admission(Generic[T]):
    """The outcome of ``AdaptiveBatcher.offer``.

    ``shed`` is the item that will not be batched (an evicted queued item, or the
    offered one when it was rejected), so the caller can answer it as shed; None when
    nothing was shed.
    """

    admitted: bool
    shed: T | None


@dataclass(slots=True)
class _Queued(Generic[T]):
    item: T
    priority: int
    arrival: float
    due: float  # min(own due, arrival + latency target), fixed at offer


class AdaptiveBatcher(Generic[T]):
    """A bounded priority-aware queue that hands out batches as ``BatchPolicy`` says.

    Overflow rule, when ``capacity`` items are queued: the most recently queued item
    with the numerically highest priority (3 least important) is evicted if it is less
    important than the incoming item; otherwise the incoming item is rejected. Priority
    1 items are never evicted, and an incoming priority 1 item is admitted beyond
    ``capacity`` (when everything queued is priority 1) up to ``2 * capacity``.
    """

    def __init__(
        self,
        policy: BatchPolicy,
        capacity: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create an open, empty batcher.

        ``capacity`` must be at least ``policy.max_batch_size``, or full batches could
        never form. ``clock`` must be monotonic seconds, comparable with the ``due``
        passed to ``offer``.
        """
        if not isinstance(policy, BatchPolicy):
            raise ConfigError(f"policy must be a BatchPolicy, got {type(policy).__name__}")
        if not _is_int(capacity) or capacity < policy.max_batch_size:
            raise ConfigError(
                "capacity must be an integer >= max_batch_size "
                f"({policy.max_batch_size}), got {capacity!r}"
            )
        self._policy = policy
        self._capacity = capacity
        self._clock = clock
        self._queue: deque[_Queued[T]] = deque()
        # Queued items per priority: the victim search knows what it looks for.
        self._per_priority = dict.fromkeys(_PRIORITIES, 0)
        self._rate = ArrivalRate()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._shed_count = 0

    def offer(self, item: T, *, priority: int, due: float) -> Admission[T]:
        """Queue ``item`` without waiting, or shed it or another item (see class doc).

        ``due`` is the monotonic time by which the item must have left the model.
        After ``close()`` every offer is rejected.
        """
        if not _is_int(priority) or priority not in _PRIORITIES:
            raise ValueError(f"priority must be 1, 2 or 3, got {priority!r}")
        if self._closed:
            self._shed_count += 1
            return Admission(False, item)
        now = self._clock()
        # Offered load, shed or not: under overload the queue is full and the policy
        # flushes on size anyway, so the difference does not matter there.
        self._rate.observe(now)
        record = _Queued(item, priority, now, min(due, now + self._policy.latency_target_s))
        queue = self._queue
        if len(queue) < self._capacity:
            return self._admit(record)
        victim_index = self._least_important_newest()
        victim = queue[victim_index]
        if victim.priority > priority:
            del queue[victim_index]
            self._per_priority[victim.priority] -= 1
            self._shed_count += 1
            self._admit(record)
            return Admission(True, victim.item)
        if priority == 1 and len(queue) < 2 * self._capacity:
            return self._admit(record)
        self._shed_count += 1
        return Admission(False, item)

    async def next_batch(self) -> list[T]:
        """Wait as the policy says and return the next batch, oldest first.

        After ``close()``: returns what is left, at most ``max_batch_size`` at a time,
        without waiting, then ``[]`` on every call.
        """
        while True:
            if self._closed:
                return self._pop(min(len(self._queue), self._policy.max_batch_size))
            now = self._clock()
            decision = self._decide(now)
            if decision.size > 0:
                return self._pop(decision.size)
            # No await between deciding and clearing: an offer cannot slip in unseen.
            self._wakeup.clear()
            if decision.wake_at is None:
                await self._wakeup.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(0.0, decision.wake_at - now))

    def record_batch(self, size: int, seconds: float) -> None:
        """Feed the latency model: a batch of ``size`` items ran in ``seconds``."""
        self._policy.latency_model.observe(size, seconds)

    def close(self) -> None:
        """Stop admitting items and wake the consumer so it can drain. Idempotent."""
        self._closed = True
        self._wakeup.set()

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    @property
    def shed_count(self) -> int:
        """How many items were evicted or rejected since creation."""
        return self._shed_count

    def __len__(self) -> int:
        return len(self._queue)

    def _admit(self, record: _Queued[T]) -> Admission[T]:
        self._queue.append(record)
        self._per_priority[record.priority] += 1
        self._wakeup.set()
        return Admission(True, None)

    def _least_important_newest(self) -> int:
        # The counts say which priority to look for, so the scan from the newest end
        # stops at the first match: O(1) when the newest items are of that priority.
        wanted = max(p for p, n in self._per_priority.items() if n > 0)
        queue = self._queue
        for offset, record in enumerate(reversed(queue)):
            if record.priority == wanted:
                return len(queue) - 1 - offset
        raise AssertionError("per-priority counts out of step with the queue")

    def _decide(self, now: float) -> BatchDecision:
        queue = self._queue
        if not queue:
            return BatchDecision(0, None)
        oldest = queue[0]
        due = oldest.due
        if len(queue) < self._policy.max_batch_size:
            # The whole queue goes into the next batch, so a newer item with a tighter
            # deadline than the oldest's must bound the wait too.
            due = min(record.due for record in queue)
        return self._policy.decide(now, len(queue), oldest.arrival, due, self._rate.rate(now))

    def _pop(self, count: int) -> list[T]:
        queue, counts = self._queue, self._per_priority
        batch = []
        for _ in range(count):
            record = queue.popleft()
            counts[record.priority] -= 1
            batch.append(record.item)
        return batch
