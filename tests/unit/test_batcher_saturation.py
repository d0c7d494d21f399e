"""BatchPolicy under saturation: full batches when the model is the bottleneck.

Pure: time is a float passed in, the model time is a fixed line (no samples), and
the arrival streams are seeded; every assertion is on exact batch sizes or wake times.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable

import pytest

from edge_worker.batcher import BatchDecision, BatchPolicy, StartCorrectedRate
from edge_worker.estimates import ArrivalRate, LatencyModel

CAP = 8
TARGET = 0.010


def line_model(a: float = 0.002, b: float = 0.001) -> LatencyModel:
    """estimate(n) is exactly a + b*n: a full batch of 8 takes 10 ms, 800 items/s."""
    return LatencyModel(prior_a=a, prior_b=b)


def policy(model: LatencyModel | None = None) -> BatchPolicy:
    return BatchPolicy(CAP, TARGET, model or line_model())


def poisson(rate: float, count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    t, times = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        times.append(t)
    return times


def simulate(
    batch_policy: BatchPolicy,
    arrivals: list[float],
    rate: float,
    service: Callable[[int], float],
) -> list[int]:
    """One synchronous model fed by ``batch_policy``; returns the batch sizes in order.

    The rate is the true one throughout (a converged estimate); each item is due
    ``TARGET`` after its arrival.
    """
    pending, queue = deque(arrivals), deque[float]()
    sizes: list[int] = []
    now = 0.0
    while pending or queue:
        while pending and pending[0] <= now:
            queue.append(pending.popleft())
        oldest = queue[0] if queue else now
        decision = batch_policy.decide(now, len(queue), oldest, oldest + TARGET, rate)
        if decision.size:
            for _ in range(decision.size):
                queue.popleft()
            sizes.append(decision.size)
            now += service(decision.size)  # arrivals pile up while the model runs
            continue
        next_arrival = pending[0] if pending else math.inf
        now = min(next_arrival, decision.wake_at if decision.wake_at is not None else math.inf)
    return sizes


def test_saturated_means_full_batches_would_keep_the_model_that_busy() -> None:
    p = policy()  # saturation 0.8: from 6.4 arrivals while a full batch runs (10 ms)
    assert not p.saturated(0.0)
    assert not p.saturated(math.nan)
    assert not p.saturated(639.0)
    assert p.saturated(640.0)
    assert p.saturated(math.inf)
    at_capacity = BatchPolicy(CAP, TARGET, line_model(), saturation=1.0)
    assert not at_capacity.saturated(799.0)  # full batches still keep up
    assert at_capacity.saturated(800.0)


def test_a_slow_outlier_does_not_make_a_light_load_look_saturated() -> None:
    model = LatencyModel(tail_sigmas=3.0)
    for n, seconds in [(1, 0.003), (2, 0.004), (4, 0.006), (8, 0.010)] * 5:
        model.observe(n, seconds)
    model.observe(8, 0.060)  # one batch caught behind another process
    p = policy(model)
    assert model.margin > 0.01
    # The outlier also pulls the fitted line up (a full batch now takes 17.5 ms on
    # average: from 366/s it counts as saturated), but far less than the margin (32
    # ms) pulls the tail.
    rate = 300.0
    assert rate * model.estimate(CAP) >= CAP  # the tail estimate alone would say saturated
    assert not p.saturated(rate)


def test_saturated_partial_queue_waits_for_a_full_batch_past_the_latest_start() -> None:
    p = policy()
    oldest_due = 0.010
    latest = oldest_due - line_model().estimate(6)  # 0.002: already passed at 0.005
    bound = latest + line_model().estimate(CAP)  # 0.012
    # Not saturated (500/s): the oldest frame is late, so whatever is queued leaves.
    assert p.decide(0.005, 6, -0.005, oldest_due, 500.0) == BatchDecision(6, None)
    # Saturated (an estimate of 1000/s): a batch of 6 would serve 750/s and the queue
    # would grow; wait for the 2 frames expected within 2 ms instead.
    waiting = p.decide(0.005, 6, -0.005, oldest_due, 1000.0)
    assert waiting.size == 0
    assert waiting.wake_at == pytest.approx(0.007)
    assert p.decide(0.007, CAP, -0.005, oldest_due, 1000.0) == BatchDecision(CAP, None)
    # A stale rate (the frames never came): the bound ends the wait.
    stale = p.decide(0.0115, 6, -0.005, oldest_due, 1000.0)
    assert stale.size == 0
    assert stale.wake_at == pytest.approx(bound)
    assert p.decide(bound, 6, -0.005, oldest_due, 1000.0) == BatchDecision(6, None)


def test_a_slow_models_saturation_wait_is_bounded_by_the_latency_target() -> None:
    # PP-OCR-like: 0.5 s a batch plus 0.5 s a frame, so company seems to pay (a frame
    # costs 1 s alone, 0.56 s in a full batch) and 3 frames/s saturate it. A full
    # batch takes 4.5 s: the wait for one must end a latency target past the oldest
    # frame's latest start, not a full batch's run time past it.
    slow = line_model(a=0.5, b=0.5)
    p = policy(slow)
    assert p.batching_pays() and p.saturated(3.0)
    oldest_due = 0.010
    latest = oldest_due - slow.estimate(2)
    waiting = p.decide(latest, 2, 0.0, oldest_due, 3.0)
    assert waiting.size == 0
    assert waiting.wake_at == pytest.approx(latest + TARGET)
    assert p.decide(latest + TARGET, 2, 0.0, oldest_due, 3.0) == BatchDecision(2, None)


def test_saturated_queue_beyond_a_batch_flushes_the_cap() -> None:
    assert policy().decide(0.5, 300, 0.0, 0.010, 1000.0) == BatchDecision(CAP, None)


def test_saturated_poisson_load_gets_only_full_batches() -> None:
    """900/s against a model that does 800/s in full batches: the runner is the bottleneck.

    The latency rules alone (before saturation was a rule) flushed partial batches of
    4, 6, 7 and 7 here, each of which served fewer frames per second than arrived.
    """
    sizes = simulate(policy(), poisson(900.0, 2000), 900.0, line_model().estimate)
    assert sizes == [CAP] * 250


def test_light_poisson_load_keeps_batches_small() -> None:
    """100/s against the same model: frames leave at once, mostly alone, never waiting."""
    sizes = simulate(policy(), poisson(100.0, 2000), 100.0, line_model().estimate)
    assert sum(sizes) == 2000
    assert max(sizes) == 3
    assert sizes.count(1) == 1833  # the rest are frames that arrived while the model ran


def test_near_saturation_batches_grow_toward_the_cap() -> None:
    """700/s: full batches would keep the model 88% busy, partial ones nearly 100%."""
    arrivals, service = poisson(700.0, 2000), line_model().estimate
    sizes = simulate(policy(), arrivals, 700.0, service)
    assert sum(sizes) == 2000
    assert (len(sizes), min(sizes), sizes.count(CAP)) == (267, 4, 187)
    # At saturation 1 only the latency rules act here: more and smaller batches.
    at_capacity = BatchPolicy(CAP, TARGET, line_model(), saturation=1.0)
    smaller = simulate(at_capacity, arrivals, 700.0, service)
    assert (len(smaller), min(smaller), smaller.count(CAP)) == (374, 1, 100)


def test_start_corrected_rate_reads_a_steady_rate_from_the_start() -> None:
    """1000/s from t=0: the plain estimate reads half after 1 s; corrected, the rate."""
    plain, corrected = ArrivalRate(1.0), StartCorrectedRate(1.0)
    assert corrected.rate(0.0) == 0.0
    for i in range(1000):
        plain.observe(i / 1000)
        corrected.observe(i / 1000)
    assert plain.rate(1.0) == pytest.approx(500.0, rel=0.01)
    assert corrected.rate(1.0) == pytest.approx(1000.0, rel=0.01)


def test_start_corrected_rate_never_reads_the_first_arrivals_as_a_burst() -> None:
    rate = StartCorrectedRate(1.0, min_share=0.25)
    rate.observe(0.0)
    rate.observe(0.0)
    # Two arrivals at once: at most 4 times the plain estimate (2 ln 2 / s), not infinite.
    assert rate.rate(0.0) == pytest.approx(4 * 2 * math.log(2.0))
