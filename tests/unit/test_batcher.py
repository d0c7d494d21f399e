"""The batcher: latency model, arrival rate, pure policy (fake time), asyncio queue."""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable

import numpy as np
import pytest

from edge_worker.batcher import AdaptiveBatcher, Admission, BatchDecision, BatchPolicy
from edge_worker.estimates import ArrivalRate, LatencyModel
from schemas.errors import ConfigError

GENEROUS = 2.0  # seconds: "came out at all", never a latency measurement


def fixed_model(a: float = 0.002, b: float = 0.001) -> LatencyModel:
    """A model with no samples: estimate(n) is exactly a + b*n."""
    return LatencyModel(prior_a=a, prior_b=b)


def make_policy(
    max_batch_size: int = 8, target: float = 0.05, model: LatencyModel | None = None
) -> BatchPolicy:
    return BatchPolicy(max_batch_size, target, model or fixed_model())


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- LatencyModel -------------------------------------------------------------------


def test_latency_prior_before_any_sample() -> None:
    model = LatencyModel()
    assert model.estimate(4) == pytest.approx(0.001 + 4 * 0.00005)
    assert model.margin == 0.0


def test_latency_one_size_scales_per_item_and_never_below_the_mean() -> None:
    model = LatencyModel()
    for _ in range(3):
        model.observe(4, 0.008)
    assert model.estimate(8) == pytest.approx(0.016)
    assert model.estimate(4) == pytest.approx(0.008)
    assert model.estimate(1) == pytest.approx(0.008)  # not 0.002: fixed costs dominate


def test_latency_one_size_margin_is_sample_stddev() -> None:
    model = LatencyModel(tail_sigmas=3.0)
    for seconds in (0.009, 0.010, 0.011):
        model.observe(1, seconds)
    assert model.margin == pytest.approx(3 * 0.001)
    assert model.estimate(1) == pytest.approx(0.010 + 0.003)


def observe_line(model: LatencyModel, a: float, b: float, sizes: int) -> None:
    """50 batches of sizes 1..sizes in turn, each taking exactly a + b*n seconds."""
    for i in range(50):
        n = 1 + i % sizes
        model.observe(n, a + b * n)


def test_latency_fit_recovers_exact_line() -> None:
    model = LatencyModel()
    observe_line(model, 0.003, 0.0007, sizes=16)
    a, b = model.coefficients
    assert a == pytest.approx(0.003, abs=1e-12)
    assert b == pytest.approx(0.0007, abs=1e-12)
    assert model.margin == pytest.approx(0.0, abs=1e-9)
    assert model.estimate(32) == pytest.approx(0.003 + 0.0007 * 32)


def _noisy_model(sigma: float, seed: int = 0) -> LatencyModel:
    rng = np.random.default_rng(seed)
    model = LatencyModel(window=50, tail_sigmas=3.0)
    for i in range(50):
        n = 1 + i % 16
        model.observe(n, 0.010 + 0.001 * n + float(rng.normal(0.0, sigma)))
    return model


def test_latency_fit_recovers_line_under_noise_and_margin_tracks_noise() -> None:
    quiet = _noisy_model(0.0002)
    a, b = quiet.coefficients
    assert a == pytest.approx(0.010, abs=0.0003)
    assert b == pytest.approx(0.001, abs=0.00003)
    assert quiet.margin == pytest.approx(3 * 0.0002, rel=0.35)

    noisy = _noisy_model(0.002)
    assert noisy.margin == pytest.approx(3 * 0.002, rel=0.35)
    assert noisy.margin > 5 * quiet.margin
    assert noisy.estimate(8) > quiet.estimate(8)


def test_latency_window_forgets_old_batches() -> None:
    model = LatencyModel(window=50)
    observe_line(model, 0.100, 0.010, sizes=8)  # a slow phase, then the model gets faster
    observe_line(model, 0.002, 0.001, sizes=8)
    a, b = model.coefficients
    assert a == pytest.approx(0.002, abs=1e-12)
    assert b == pytest.approx(0.001, abs=1e-12)


def test_latency_negative_slope_clamped_to_flat() -> None:
    model = LatencyModel()
    model.observe(1, 0.010)
    model.observe(10, 0.005)
    assert model.coefficients == pytest.approx((0.0075, 0.0))
    assert model.estimate(100) == pytest.approx(0.0075)


def test_latency_estimate_never_negative() -> None:
    model = LatencyModel()
    model.observe(10, 0.001)
    model.observe(20, 0.021)  # a = -0.019, b = 0.002
    assert model.coefficients[0] == pytest.approx(-0.019)
    assert model.estimate(1) == 0.0
    assert model.estimate(0) == 0.0
    assert model.estimate(20) == pytest.approx(0.021)


@pytest.mark.parametrize(("n", "seconds"), [(0, 0.01), (1, -0.01), (1, math.nan), (1, math.inf)])
def test_latency_rejects_bad_observations(n: int, seconds: float) -> None:
    model = LatencyModel()
    with pytest.raises(ValueError):
        model.observe(n, seconds)
    assert model.estimate(1) == pytest.approx(0.001 + 0.00005)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be an integer >= 1, got 0"),
        ({"tail_sigmas": -1.0}, "tail_sigmas must be a finite number >= 0, got -1.0"),
        ({"prior_a": math.nan}, "prior_a must be a finite number >= 0"),
        ({"prior_b": -0.1}, "prior_b must be a finite number >= 0"),
    ],
)
def test_latency_config_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LatencyModel(**kwargs)  # type: ignore[arg-type]


# --- ArrivalRate --------------------------------------------------------------------


def test_arrival_rate_starts_at_zero() -> None:
    assert ArrivalRate().rate(123.0) == 0.0


def test_arrival_rate_converges_and_decays() -> None:
    rate = ArrivalRate(half_life_s=1.0)
    for i in range(1000):  # 100/s for 10 s: ten half-lives
        rate.observe(i / 100)
    assert rate.rate(9.99) == pytest.approx(100.0, rel=0.05)
    assert rate.rate(10.99) == pytest.approx(50.0, rel=0.05)
    assert rate.rate(19.99) == pytest.approx(100.0 / 1024, rel=0.05)


def test_arrival_rate_half_life_validated() -> None:
    with pytest.raises(ConfigError, match="half_life_s must be a finite number > 0, got 0"):
        ArrivalRate(half_life_s=0)


# --- BatchPolicy (pure, fake time) --------------------------------------------------


def test_policy_config_validated() -> None:
    with pytest.raises(ConfigError, match="max_batch_size must be an integer >= 1, got 0"):
        BatchPolicy(0, 0.05, fixed_model())
    with pytest.raises(ConfigError, match="max_batch_size must be an integer >= 1, got True"):
        BatchPolicy(True, 0.05, fixed_model())
    with pytest.raises(ConfigError, match="latency_target_s must be a finite number > 0"):
        BatchPolicy(8, 0.0, fixed_model())
    with pytest.raises(ConfigError, match="saturation must be a finite number > 0"):
        BatchPolicy(8, 0.05, fixed_model(), saturation=0.0)


def test_policy_nothing_queued_waits_for_arrival() -> None:
    assert make_policy().decide(0.0, 0, 0.0, 0.05, 1000.0) == BatchDecision(0, None)


@pytest.mark.parametrize("queued", [8, 9, 50])
def test_policy_full_batch_flushes_max(queued: int) -> None:
    assert make_policy().decide(0.0, queued, 0.0, 0.05, 1000.0) == BatchDecision(8, None)


def test_policy_flushes_exactly_at_latest_start_not_before() -> None:
    model = fixed_model(a=0.002, b=0.001)
    policy = make_policy(model=model)
    latest = 0.05 - model.estimate(2)  # 0.046
    # 600/s (below saturation: full batches would keep the model 75% busy): 1.2
    # arrivals are expected in the last 2 ms, so waiting still pays off; the queue
    # would fill only 10 ms later, after the latest start.
    rate = 600.0
    assert not policy.saturated(rate)
    assert policy.decide(latest - 0.002, 2, 0.0, 0.05, rate) == BatchDecision(0, latest)
    assert policy.decide(latest, 2, 0.0, 0.05, rate) == BatchDecision(2, None)
    assert policy.decide(latest + 0.01, 2, 0.0, 0.05, rate) == BatchDecision(2, None)


def test_policy_infinite_rate_flushes_by_the_saturation_bound_without_spinning() -> None:
    model = fixed_model(a=0.002, b=0.001)
    policy = make_policy(model=model)
    # An infinite rate saturates any model: wait for a full batch, at most one full
    # batch's run time past the latest start.
    bound = 0.05 - model.estimate(2) + model.estimate(8)
    assert policy.decide(bound, 2, 0.0, 0.05, math.inf) == BatchDecision(2, None)
    # Before it, an infinite rate must not ask to be woken "now" (a spin).
    assert policy.decide(0.0, 2, 0.0, 0.05, math.inf) == BatchDecision(0, bound)


def test_policy_flushes_once_no_arrival_is_expected_before_latest_start() -> None:
    # A slow model (12 ms for 2): at 300/s a batch of 2 does not keep up (3.6 arrive
    # while it runs; full batches would, 68% busy), so it waits...
    model = fixed_model(a=0.010, b=0.001)
    policy = make_policy(model=model)
    latest = 0.05 - model.estimate(2)
    assert not policy.saturated(300.0)
    # ...but the next arrival is due in 3.3 ms: with 3 ms left, go now instead.
    assert policy.decide(latest - 0.004, 2, 0.0, 0.05, 300.0).size == 0
    assert policy.decide(latest - 0.003, 2, 0.0, 0.05, 300.0) == BatchDecision(2, None)


def test_policy_wakes_when_queue_is_expected_full() -> None:
    decision = make_policy().decide(0.0, 2, 0.0, 0.05, 1000.0)
    assert decision.size == 0
    assert decision.wake_at == pytest.approx(6 / 1000)  # 6 more items at 1000/s


def test_policy_light_load_flushes_at_once() -> None:
    policy = make_policy()
    # latest start 0.047 s away; 10/s expects 0.47 further arrivals: waiting buys nothing.
    assert policy.decide(0.0, 1, 0.0, 0.05, 10.0) == BatchDecision(1, None)
    assert policy.decide(0.0, 3, 0.0, 0.05, 10.0) == BatchDecision(3, None)
    assert policy.decide(0.0, 1, 0.0, 0.05, 0.0) == BatchDecision(1, None)
    assert policy.decide(0.0, 1, 0.0, 0.05, math.nan) == BatchDecision(1, None)
    # 100/s: 0.3 arrivals while a batch of 1 runs (3 ms): the model keeps up, go now.
    assert policy.decide(0.0, 1, 0.0, 0.05, 100.0) == BatchDecision(1, None)
    # The same frame under heavier traffic (3 arrivals per batch run) waits for company.
    assert policy.decide(0.0, 1, 0.0, 0.05, 1000.0).size == 0


def test_policy_lone_frame_never_stranded() -> None:
    """Expected arrivals that never come: repeated wakes end in a flush by the bound."""
    model = fixed_model()
    policy = make_policy(model=model)
    # The rate stays high throughout, so high that the model looks saturated: the
    # bound is one full batch's run time past the latest start.
    assert policy.saturated(1e4)
    latest = 0.05 - model.estimate(1) + model.estimate(8)
    now = 0.0
    for _ in range(10_000):
        decision = policy.decide(now, 1, 0.0, 0.05, 1e4)
        if decision.size:
            break
        assert decision.wake_at is not None
        assert now < decision.wake_at <= latest
        now = decision.wake_at
    else:
        pytest.fail("the lone frame was never flushed")
    assert decision == BatchDecision(1, None)
    assert now == pytest.approx(latest)


def test_policy_bigger_queue_flushes_bigger_batch() -> None:
    policy = make_policy()
    sizes = [policy.decide(1.0, q, 0.0, 0.05, 1000.0).size for q in range(1, 12)]
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]


def test_policy_slower_model_flushes_earlier() -> None:
    fast, slow = LatencyModel(tail_sigmas=0), LatencyModel(tail_sigmas=0)
    for n in (1, 2, 4, 8):
        fast.observe(n, 0.001 + 0.0005 * n)
        slow.observe(n, 0.010 + 0.0005 * n)
    # Big batches allowed and 1200/s: more arrive during a batch run than are queued,
    # the queue fills long after either latest start, and full batches would keep
    # either model less than 80% busy (not saturated).
    fast_policy = make_policy(max_batch_size=128, model=fast)
    slow_policy = make_policy(max_batch_size=128, model=slow)
    fast_latest = 0.05 - fast.estimate(2)  # 0.048
    slow_latest = 0.05 - slow.estimate(2)  # 0.039
    assert fast_latest == pytest.approx(0.048)
    assert slow_latest == pytest.approx(0.039)
    rate = 1200.0
    assert not fast_policy.saturated(rate)
    assert not slow_policy.saturated(rate)
    assert fast_policy.decide(0.0, 2, 0.0, 0.05, rate) == BatchDecision(0, fast_latest)
    assert slow_policy.decide(0.0, 2, 0.0, 0.05, rate) == BatchDecision(0, slow_latest)
    between = (slow_latest + fast_latest) / 2
    assert slow_policy.decide(between, 2, 0.0, 0.05, rate) == BatchDecision(2, None)
    assert fast_policy.decide(between, 2, 0.0, 0.05, rate) == BatchDecision(0, fast_latest)


def _simulate(policy: BatchPolicy, interval: float, service: Callable[[int], float]) -> list[int]:
    """Arrivals every ``interval`` s for 2 s; one synchronous model; batch sizes flushed."""
    arrivals = deque(i * interval for i in range(int(2.0 / interval)))
    rate = 1.0 / interval
    queue: deque[float] = deque()
    sizes: list[int] = []
    now = 0.0
    while arrivals or queue:
        while arrivals and arrivals[0] <= now:
            queue.append(arrivals.popleft())
        oldest = queue[0] if queue else now
        decision = policy.decide(now, len(queue), oldest, oldest + 0.05, rate)
        if decision.size:
            for _ in range(decision.size):
                queue.popleft()
            sizes.append(decision.size)
            now += service(decision.size)  # the model is busy; arrivals pile up
            continue
        next_arrival = arrivals[0] if arrivals else math.inf
        wake = decision.wake_at if decision.wake_at is not None else math.inf
        now = min(next_arrival, wake)
    return sizes


def test_policy_batches_grow_while_model_is_busy() -> None:
    policy = make_policy()
    quick = _simulate(policy, 0.1, lambda n: 0.001)
    busy = _simulate(policy, 0.1, lambda n: 0.25 + 0.001 * n)
    assert set(quick) == {1}  # sparse traffic, idle model: every frame alone, at once
    assert sum(busy) == sum(quick) == 20
    assert max(busy) >= 3
    assert len(busy) < len(quick) / 2


# --- AdaptiveBatcher: admission (no event loop needed for offer) -------------------


def make_batcher(
    capacity: int = 4,
    max_batch_size: int = 4,
    clock: FakeClock | None = None,
    policy: BatchPolicy | None = None,
) -> AdaptiveBatcher[str]:
    policy = policy or make_policy(max_batch_size=max_batch_size)
    return AdaptiveBatcher(policy, capacity, clock=clock or FakeClock())


def busy_policy() -> BatchPolicy:
    """A slow model (100 ms a batch) and a 0.5 s target: at ~70/s items wait for company.

    Full batches would keep this model 94% busy at 70/s; ``saturation`` 1 keeps these
    tests on the latency rules (test_batcher_saturation.py has the saturated ones).
    """
    model = fixed_model(a=0.1, b=0.001)
    return BatchPolicy(max_batch_size=8, latency_target_s=0.5, latency_model=model, saturation=1.0)


async def drain(batcher: AdaptiveBatcher[str]) -> list[str]:
    batcher.close()
    items: list[str] = []
    while batch := await batcher.next_batch():
        items.extend(batch)
    return items


def test_batcher_capacity_validated() -> None:
    with pytest.raises(ConfigError, match=r"capacity must be an integer >= max_batch_size \(8\)"):
        AdaptiveBatcher(make_policy(max_batch_size=8), 4)


def test_offer_rejects_unknown_priority() -> None:
    batcher = make_batcher()
    with pytest.raises(ValueError, match="priority must be 1, 2 or 3, got 0"):
        batcher.offer("x", priority=0, due=1.0)
    assert len(batcher) == 0


async def test_overflow_evicts_newest_least_important() -> None:
    batcher = make_batcher(capacity=4)
    for name, prio in [("a", 2), ("b", 3), ("c", 3), ("d", 2)]:
        assert batcher.offer(name, priority=prio, due=1.0) == Admission(True, None)
    assert batcher.offer("e", priority=1, due=1.0) == Admission(True, "c")
    assert batcher.offer("f", priority=2, due=1.0) == Admission(True, "b")
    assert batcher.shed_count == 2
    assert len(batcher) == 4
    assert await drain(batcher) == ["a", "d", "e", "f"]


@pytest.mark.parametrize(
    ("queued", "offered", "evicted"),
    [
        ([("a", 1), ("b", 2), ("c", 2), ("d", 1)], ("e", 1), "c"),
        ([("old3", 3), ("x", 2), ("y", 2), ("z", 2)], ("new2", 2), "old3"),
        ([("p1a", 1), ("p1b", 1), ("p2", 2), ("p1c", 1)], ("p1d", 1), "p2"),
    ],
    ids=[
        "newest_among_equally_unimportant",
        "old_item_if_it_is_the_least_important",
        "priority_one_evicts_rather_than_growing",
    ],
)
async def test_overflow_evicts(
    queued: list[tuple[str, int]], offered: tuple[str, int], evicted: str
) -> None:
    batcher = make_batcher(capacity=4)
    for name, prio in queued:
        batcher.offer(name, priority=prio, due=1.0)
    name, prio = offered
    assert batcher.offer(name, priority=prio, due=1.0) == Admission(True, evicted)
    assert len(batcher) == 4
    # The evicted item leaves; the others keep their order, the new one comes last.
    assert await drain(batcher) == [n for n, _ in queued if n != evicted] + [name]


async def test_overflow_rejects_incoming_when_not_more_important() -> None:
    batcher = make_batcher(capacity=4)
    for name in "abcd":
        batcher.offer(name, priority=2, due=1.0)
    assert batcher.offer("same", priority=2, due=1.0) == Admission(False, "same")
    assert batcher.offer("less", priority=3, due=1.0) == Admission(False, "less")
    assert batcher.shed_count == 2
    assert await drain(batcher) == ["a", "b", "c", "d"]


async def test_priority_one_admitted_over_capacity_up_to_twice() -> None:
    batcher = make_batcher(capacity=4)
    names = [f"p{i}" for i in range(8)]
    for name in names:
        assert batcher.offer(name, priority=1, due=1.0) == Admission(True, None)
    assert len(batcher) == 8
    assert batcher.shed_count == 0
    assert batcher.offer("p8", priority=1, due=1.0) == Admission(False, "p8")
    assert batcher.offer("q", priority=2, due=1.0) == Admission(False, "q")
    assert batcher.offer("r", priority=3, due=1.0) == Admission(False, "r")
    assert batcher.shed_count == 3
    assert len(batcher) == 8
    assert await drain(batcher) == names


# --- AdaptiveBatcher: batches -------------------------------------------------------


async def test_full_batch_returned_at_once_in_fifo_order() -> None:
    batcher = make_batcher(capacity=16, max_batch_size=4)
    for i, prio in enumerate([3, 1, 2, 3, 1, 2]):
        batcher.offer(f"i{i}", priority=prio, due=1.0)
    first = await asyncio.wait_for(batcher.next_batch(), GENEROUS)
    assert first == ["i0", "i1", "i2", "i3"]
    second = await asyncio.wait_for(batcher.next_batch(), GENEROUS)
    assert second == ["i4", "i5"]
    assert len(batcher) == 0


async def test_lone_item_comes_out_with_real_clock() -> None:
    batcher: AdaptiveBatcher[str] = AdaptiveBatcher(make_policy(target=0.05), capacity=64)
    for i in range(48):  # a burst makes the rate estimate high, so the lone item waits
        batcher.offer(f"burst{i}", priority=2, due=1e18)
    for _ in range(6):
        assert len(await asyncio.wait_for(batcher.next_batch(), GENEROUS)) == 8
    batcher.offer("lone", priority=2, due=1e18)
    assert await asyncio.wait_for(batcher.next_batch(), GENEROUS) == ["lone"]


async def _high_rate_batcher(clock: FakeClock) -> AdaptiveBatcher[str]:
    """A batcher whose rate estimate is ~70/s and whose queue is empty."""
    batcher = make_batcher(capacity=100, clock=clock, policy=busy_policy())
    saved = clock.now
    # A burst of 100 one half-life (1 s) ago: half its weight is left, and the
    # estimate, corrected for having started then, reads 100 * ln 2 = 69/s.
    clock.now = saved - 1.0
    for i in range(100):
        batcher.offer(f"burst{i}", priority=2, due=1e18)
    while len(batcher) >= 8:
        await batcher.next_batch()
    clock.now = saved
    await drain_rest(batcher, clock)
    return batcher


async def drain_rest(batcher: AdaptiveBatcher[str], clock: FakeClock) -> None:
    # Leftovers below a full batch would wait for their bound; push the clock past it.
    saved = clock.now
    clock.now = saved + 1.0
    while len(batcher):
        await batcher.next_batch()
    clock.now = saved


async def test_lone_item_waits_for_its_bound_then_flushes() -> None:
    clock = FakeClock(0.0)
    batcher = await _high_rate_batcher(clock)
    batcher.offer("lone", priority=2, due=1e18)  # bound: arrival + 0.5 target
    task = asyncio.create_task(batcher.next_batch())
    await asyncio.sleep(0.1)  # frozen clock: the bound is never reached, whatever the wall time
    assert not task.done()
    latest = 0.5 - busy_policy().latency_model.estimate(1)
    clock.now = latest
    assert await asyncio.wait_for(task, GENEROUS) == ["lone"]


async def test_tighter_due_of_a_newer_item_bounds_the_wait() -> None:
    clock = FakeClock(0.0)
    batcher = await _high_rate_batcher(clock)
    batcher.offer("relaxed", priority=2, due=1e18)
    batcher.offer("urgent", priority=2, due=0.2)
    clock.now = 0.2 - busy_policy().latency_model.estimate(2)  # far before relaxed's bound
    assert await asyncio.wait_for(batcher.next_batch(), GENEROUS) == ["relaxed", "urgent"]


async def test_offer_wakes_waiting_consumer_when_batch_fills() -> None:
    clock = FakeClock(0.0)
    batcher = await _high_rate_batcher(clock)
    task = asyncio.create_task(batcher.next_batch())
    await asyncio.sleep(0.01)  # the consumer now waits on an empty queue
    batcher.offer("first", priority=2, due=1e18)
    await asyncio.sleep(0.05)
    assert not task.done()  # frozen clock: only a full batch can release it
    for i in range(7):
        batcher.offer(f"more{i}", priority=2, due=1e18)
    batch = await asyncio.wait_for(task, GENEROUS)
    assert batch == ["first"] + [f"more{i}" for i in range(7)]


async def test_close_drains_in_max_batches_then_returns_empty() -> None:
    batcher = make_batcher(capacity=16, max_batch_size=4)
    for i in range(10):
        batcher.offer(f"i{i}", priority=2, due=1e18)
    batcher.close()
    batcher.close()  # harmless
    assert batcher.closed
    assert await batcher.next_batch() == ["i0", "i1", "i2", "i3"]
    assert await batcher.next_batch() == ["i4", "i5", "i6", "i7"]
    assert await batcher.next_batch() == ["i8", "i9"]
    assert await batcher.next_batch() == []
    assert await batcher.next_batch() == []
    assert batcher.offer("late", priority=1, due=1e18) == Admission(False, "late")
    assert batcher.shed_count == 1


async def test_close_wakes_a_waiting_consumer() -> None:
    batcher = make_batcher()
    task = asyncio.create_task(batcher.next_batch())
    await asyncio.sleep(0.01)
    assert not task.done()
    batcher.close()
    assert await asyncio.wait_for(task, GENEROUS) == []


async def test_record_batch_feeds_latency_model() -> None:
    model = LatencyModel()
    batcher: AdaptiveBatcher[str] = AdaptiveBatcher(make_policy(model=model), capacity=8)
    batcher.record_batch(2, 0.010)
    batcher.record_batch(4, 0.014)
    assert model.coefficients == pytest.approx((0.006, 0.002))


async def test_shedding_matches_the_rule_under_random_offers_and_pops() -> None:
    """The per-priority counts never lead the victim search astray (reference model)."""
    rng = random.Random(7)
    clock = FakeClock(0.0)
    batcher = make_batcher(capacity=8, max_batch_size=4, clock=clock)
    model: list[tuple[str, int]] = []  # what should be queued, oldest first
    for i in range(2_000):
        if rng.random() < 0.2 and model:
            clock.now += 1.0  # past every bound: the batch leaves now
            batch = await asyncio.wait_for(batcher.next_batch(), GENEROUS)
            assert batch == [item for item, _ in model[: len(batch)]]
            del model[: len(batch)]
            continue
        priority = rng.choice((1, 2, 3))
        item = f"i{i}"
        admission = batcher.offer(item, priority=priority, due=1e18)
        if len(model) < 8:
            expected_shed = None
        else:
            worst = max(p for _, p in model)
            newest = max(k for k, (_, p) in enumerate(model) if p == worst)
            if worst > priority:
                expected_shed = model.pop(newest)[0]
            elif priority == 1 and len(model) < 16:
                expected_shed = None
            else:
                expected_shed = item
        assert admission.shed == expected_shed
        if expected_shed != item:
            model.append((item, priority))
        assert len(batcher) == len(model)
