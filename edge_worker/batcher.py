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
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from edge_worker.estimates import ArrivalRate, LatencyModel
from schemas.checks import require_int, require_number
from schemas.errors import ConfigError

__all__ = [
    "DEFAULT_SATURATION",
    "AdaptiveBatcher",
    "Admission",
    "BatchDecision",
    "BatchPolicy",
    "StartCorrectedRate",
]

T = TypeVar("T")

_PRIORITIES = (1, 2, 3)
DEFAULT_SATURATION: Final = 0.8  # BatchPolicy.saturation
# A full batch must serve an item this many times cheaper than a batch of one for the
# batcher to wait for company (BatchPolicy.batching_pays).
_BATCHING_GAIN: Final = 1.25


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
    ``saturation`` is the share of time the model would be busy running only full
    batches at which the policy stops flushing partial ones (``saturated``): near 1,
    partial batches leave the model no slack, so that a slow batch or a burst builds
    a queue that the next frames wait out. At 1 the rule acts only when full batches
    cannot keep up; 0.8 leaves them a fifth of the model's time as slack. Neither a
    simulation (the benchmark model's batch-time line, with noise and stalls) nor
    the benchmark on a shared machine told 0.8 from 1 apart (docs/benchmarks.md).
    """

    max_batch_size: int
    latency_target_s: float
    latency_model: LatencyModel
    saturation: float = DEFAULT_SATURATION

    def __post_init__(self) -> None:
        require_int("max_batch_size", self.max_batch_size, 1)
        require_number("latency_target_s", self.latency_target_s, 0.0, open_=True)
        require_number("saturation", self.saturation, 0.0, open_=True)
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
        flush it; bigger batches do not pay (``batching_pays``) -> flush all now; the
        model is saturated (``saturated``) -> wait for a full batch, but
        no longer past the oldest item's latest start than one full batch's run time or
        the latency target, whichever is shorter;
        the oldest item's latest start reached -> flush all; fewer than one more arrival
        expected before that latest start -> flush all now (waiting would only add
        latency); the queue already holds at least what arrives while a batch of its
        size runs -> flush all now (a model that keeps up needs no bigger batch);
        otherwise wait until the latest start or until the queue is expected to be
        full, whichever is sooner.

        The saturation rule comes before the latency rules because under saturation
        they work against the frames they protect: the latest-start rule would flush
        whatever is queued once the oldest frame runs late, and a partial batch serves
        fewer frames per second than the arrivals need, so the queue behind it, and the
        next frames' lateness, grows. Full batches are the model's best throughput.
        """
        del oldest_arrival  # see docstring
        if queued <= 0:
            return BatchDecision(0, None)
        cap = self.max_batch_size
        if queued >= cap:
            return BatchDecision(cap, None)
        if not self.batching_pays():
            return BatchDecision(queued, None)
        rate = arrival_rate if arrival_rate > 0 else 0.0  # also maps NaN to 0
        latest_start = oldest_due - self.latency_model.estimate(queued)
        if self.saturated(rate):
            # The bound is what a frame waits anyway when a full batch runs ahead of it;
            # it also ends the wait when the rate estimate is stale (traffic stopped).
            # A slow model's full batch takes seconds (PP-OCR: ~30 s for 32 frames on a
            # core): there the latency target bounds the wait, and a noisy fit that
            # makes company look worth it cannot hold frames for half a minute.
            extra = min(self.latency_model.estimate(cap), self.latency_target_s)
            bound = latest_start + extra
            if now >= bound:
                return BatchDecision(queued, None)
            return BatchDecision(0, min(bound, self._full_at(now, queued, rate, bound)))
        if now >= latest_start:
            return BatchDecision(queued, None)
        if rate * (latest_start - now) < 1.0:
            return BatchDecision(queued, None)
        if queued >= rate * self.latency_model.estimate(queued):
            return BatchDecision(queued, None)
        return BatchDecision(0, min(latest_start, self._full_at(now, queued, rate, latest_start)))

    def batching_pays(self) -> bool:
        """Whether an item costs less in a full batch than alone, by ``_BATCHING_GAIN``
        or more, on the fitted line ``a + b * n``: only a fixed cost per batch (``a``)
        makes company worth waiting for. A model whose time grows with every item (a
        text reader, one line after another; PP-OCR's detector, slower per frame in a
        batch) gains nothing from a bigger batch, and a frame held for one only waits.
        """
        a, b = self.latency_model.coefficients
        alone, full = a + b, a / self.max_batch_size + b
        return full <= 0 or alone >= _BATCHING_GAIN * full

    def saturated(self, arrival_rate: float) -> bool:
        """True when full batches alone would keep the model ``saturation`` busy or more.

        That is, at least ``saturation * max_batch_size`` items arrive during the mean
        run time of a full batch (at 1: full batches cannot keep up). The mean, not the
        tail estimate: one slow batch (a margin of 3 sigma) must not switch a lightly
        loaded batcher to full batches.
        """
        full = self.latency_model.estimate(self.max_batch_size) - self.latency_model.margin
        return arrival_rate * full >= self.saturation * self.max_batch_size

    def _full_at(self, now: float, queued: int, rate: float, fallback: float) -> float:
        """When the queue should hold a full batch at ``rate``; ``fallback`` if "now"."""
        full_at = now + (self.max_batch_size - queued) / rate if rate > 0 else math.inf
        # Only an absurd (infinite) rate gives "now"; waking now would spin, and an
        # arrival wakes the batcher anyway.
        return fallback if full_at <= now else full_at


class StartCorrectedRate:
    """``ArrivalRate`` without its start-up lag: pure, time is passed in.

    An exponentially weighted count starts at 0, so for the first seconds it reads a
    share ``1 - 2**(-elapsed / half_life)`` of a steady rate (half of it after one
    half-life). The saturation rule reads the rate, and a batcher that starts under
    load (a restarted worker, every benchmark slice) would otherwise flush partial
    batches until the estimate caught up. Dividing by that share removes the lag, as
    Adam's bias correction does; the share is floored at ``min_share`` so that the
    first arrivals do not read as a burst (below it the estimate stays low, the safe
    side: flush sooner).
    """

    __slots__ = ("_first", "_half_life", "_min_share", "_rate")

    def __init__(self, half_life_s: float = 1.0, min_share: float = 0.25) -> None:
        """Create an estimator that has seen nothing (rate 0)."""
        self._rate = ArrivalRate(half_life_s)
        self._half_life = half_life_s
        self._min_share = require_number("min_share", min_share, 0.0, 1.0, open_=True)
        self._first: float | None = None

    def observe(self, now: float) -> None:
        """Record one arrival at monotonic time ``now``."""
        if self._first is None:
            self._first = now
        self._rate.observe(now)

    def rate(self, now: float) -> float:
        """Arrivals per second as of ``now``."""
        if self._first is None:
            return 0.0
        elapsed = max(0.0, now - self._first)
        share = 1.0 - math.exp(-elapsed * math.log(2.0) / self._half_life)
        return self._rate.rate(now) / max(share, self._min_share)


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
        self._rate = StartCorrectedRate()
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
        queue = self._queue
        if len(queue) < self._capacity:
            return self._admit(self._record(item, priority, now, due))
        # Full: under overload this runs for every arrival, on the event loop that the
        # model thread shares the GIL with, so the common case (nothing less important
        # queued: reject) is decided from the counts before anything is built.
        counts = self._per_priority
        worst = 3 if counts[3] else 2 if counts[2] else 1
        if worst > priority:
            victim_index = self._newest_of(worst)
            victim = queue[victim_index]
            del queue[victim_index]
            counts[worst] -= 1
            self._shed_count += 1
            self._admit(self._record(item, priority, now, due))
            return Admission(True, victim.item)
        if priority == 1 and len(queue) < 2 * self._capacity:
            return self._admit(self._record(item, priority, now, due))
        self._shed_count += 1
        return Admission(False, item)

    def _record(self, item: T, priority: int, now: float, due: float) -> _Queued[T]:
        return _Queued(item, priority, now, min(due, now + self._policy.latency_target_s))

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

    def _newest_of(self, wanted: int) -> int:
        # The counts say which priority to look for, so the scan from the newest end
        # stops at the first match: O(1) when the newest items are of that priority.
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
