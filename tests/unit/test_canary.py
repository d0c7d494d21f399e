"""CanaryJudge on made-up counters: its configuration, the agreement test, the guard rails.

Counters are fed the way heartbeats deliver them: cumulative, a batch at a time. Most
streams are deterministic (``floor(rate * n)`` agreements after ``n`` comparisons); one
test draws seeded binomials to check the stated roll-back bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from pipeline.release.judge import CanaryConfig, CanaryJudge, Decision, Verdict
from pipeline.release.tallies import ArmCounters
from schemas.errors import ConfigError, SchemaError
from tests.release_helpers import rollout_plan

# A baseline that agrees with the cloud on 95% of 5,000 compared frames, escalates 5%.
BASELINE = ArmCounters(
    frames=50_000, escalated=2_500, compared=5_000, agreed=4_750, latency_p95_ms=15.0,
    latency_intervals=100,
)  # fmt: skip


def arm(compared: int, agreement: float, **changes: Any) -> ArmCounters:
    """A canary arm with ``compared`` comparisons, 10x as many frames, 5% escalated."""
    values: dict[str, Any] = {
        "frames": compared * 10,
        "escalated": compared // 2,
        "compared": compared,
        "agreed": math.floor(agreement * compared),
    }
    values.update(changes)
    return ArmCounters(**values)


def stream(agreement: float, step: int = 10, limit: int = 20_000) -> Iterator[ArmCounters]:
    """The canary arm after each heartbeat of ``step`` compared frames."""
    for compared in range(step, limit + 1, step):
        yield arm(compared, agreement)


def first_decision(judge: CanaryJudge, agreement: float) -> Decision:
    for canary in stream(agreement):
        decision = judge.decide(canary, BASELINE)
        if decision.verdict is not Verdict.WAIT:
            return decision
    raise AssertionError("no decision")


# ---------------------------------------------------------------- config


def test_default_config_is_valid_and_frozen() -> None:
    cfg = CanaryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 0.2  # type: ignore[misc]
    judge = CanaryJudge(cfg)
    assert judge.roll_back_at == pytest.approx(math.log(100))
    assert judge.promote_at == pytest.approx(math.log(0.05))


@pytest.mark.parametrize(
    ("make", "changes", "fragment"),
    [
        (CanaryConfig, {"margin": 0.0}, "margin must be a number in (0, 1)"),
        (CanaryConfig, {"detect": 0.01}, "detect (0.01) must be greater than margin (0.02)"),
        (
            CanaryConfig,
            {"escalation_detect": 0.05},
            "escalation_detect (0.05) must be greater than",
        ),
        (CanaryConfig, {"failure_margin": math.nan}, "failure_margin must be a number in (0, 1)"),
        (CanaryConfig, {"alpha": 0.5}, "alpha must be a number in (0, 0.5)"),
        (CanaryConfig, {"beta": 0}, "beta must be a number in (0, 0.5)"),
        (CanaryConfig, {"guard_alpha": True}, "guard_alpha must be a number"),
        (CanaryConfig, {"baseline_z": -1.0}, "baseline_z must be a finite number >= 0"),
        (CanaryConfig, {"min_compared": 0}, "min_compared must be an integer >= 1"),
        (
            CanaryConfig,
            {"max_compared": 300},
            "max_compared (300) must be greater than min_compared (300)",
        ),
        (CanaryConfig, {"min_baseline_frames": 1.5}, "min_baseline_frames must be an integer"),
        (CanaryConfig, {"latency_ratio": 0.9}, "latency_ratio must be a finite number >= 1"),
        (
            CanaryConfig,
            {"latency_slack_ms": math.inf},
            "latency_slack_ms must be a finite number >= 0",
        ),
        (
            CanaryConfig,
            {"min_latency_intervals": 0},
            "min_latency_intervals must be an integer >= 1",
        ),
        (rollout_plan, {"canary_share": 1.0}, "canary_share must be a number in (0, 1)"),
        (rollout_plan, {"canary_share": 0}, "canary_share must be a number in (0, 1)"),
        (rollout_plan, {"tier": "fog"}, "tier must be one of edge, cloud, device"),
        (rollout_plan, {"site": "a.b"}, "site: 'a.b' is not a valid name"),
        (rollout_plan, {"version": "1.1 beta"}, "version must be 1-64 letters"),
        (rollout_plan, {"version": "1.0.0"}, "version 1.0.0 is already the site's version"),
    ],
)
def test_bad_config_and_plans_are_refused_with_the_key(
    make: Callable[..., object], changes: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make(**changes)
    assert fragment in str(info.value)


def test_judge_refuses_what_is_not_a_config() -> None:
    with pytest.raises(ConfigError, match="config must be a CanaryConfig"):
        CanaryJudge({"alpha": 0.1})  # type: ignore[arg-type]


def test_counters_refuse_impossible_values() -> None:
    with pytest.raises(SchemaError, match=r"agreed \(6\) exceeds compared \(5\)"):
        ArmCounters(compared=5, agreed=6)
    with pytest.raises(SchemaError, match="frames must be an integer >= 0"):
        ArmCounters(frames=-1)
    with pytest.raises(SchemaError, match=r"escalated \(3\) exceeds frames \(2\)"):
        ArmCounters(frames=2, escalated=3)


# ---------------------------------------------------------------- the agreement test


def test_bad_canary_is_rolled_back_within_a_few_dozen_compared_frames() -> None:
    decision = first_decision(CanaryJudge(), 0.10)
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.check == "agreement"
    assert decision.canary_compared <= 30
    assert decision.llr is not None and decision.llr >= math.log(100)
    assert "canary agrees with the cloud on 10.0%" in decision.reason
    assert "baseline on 95.0% of 5000" in decision.reason


def test_equal_canary_waits_for_the_minimum_then_is_promoted() -> None:
    judge = CanaryJudge()
    verdicts = []
    for canary in stream(0.95):
        decision = judge.decide(canary, BASELINE)
        verdicts.append((canary.compared, decision.verdict))
        if decision.verdict is not Verdict.WAIT:
            break
    compared, verdict = verdicts[-1]
    assert verdict is Verdict.PROMOTE
    assert compared >= judge.config.min_compared
    assert all(v is Verdict.WAIT for _, v in verdicts[:-1])


def test_promotion_needs_the_minimum_even_when_the_test_already_accepts() -> None:
    judge = CanaryJudge(CanaryConfig(min_compared=2_000, max_compared=30_000))
    early = judge.decide(arm(1_000, 0.96), BASELINE)
    assert early.verdict is Verdict.WAIT
    assert "promote at -3.00 after 2000 compared frames" in early.reason
    assert judge.decide(arm(2_000, 0.96), BASELINE).verdict is Verdict.PROMOTE


def test_canary_within_the_margin_is_not_rolled_back() -> None:
    # One point worse than the baseline, with a 2-point margin: never rolled back.
    decision = first_decision(CanaryJudge(), 0.94)
    assert decision.verdict is Verdict.PROMOTE


def test_canary_worse_by_the_detectable_loss_is_rolled_back_not_promoted() -> None:
    decision = first_decision(CanaryJudge(), 0.90)
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.check == "agreement"


def test_canary_in_the_indifference_zone_is_rolled_back_as_inconclusive_at_the_cap() -> None:
    cfg = CanaryConfig(min_compared=100, max_compared=400)
    judge = CanaryJudge(cfg)
    # 3.5 points worse: between margin and detect, the test stays undecided this long.
    decision = judge.decide(arm(400, 0.915), BASELINE)
    assert decision.verdict is Verdict.ROLL_BACK
    assert decision.check == "inconclusive"
    assert "inconclusive after 400 compared frames" in decision.reason


def test_roll_back_bound_holds_for_a_canary_exactly_at_the_margin() -> None:
    # Ville's inequality: P(roll back) <= alpha = 1% for a canary `margin` worse, with
    # the judge consulted after every heartbeat. 400 seeded runs until a decision.
    judge = CanaryJudge()
    rng = np.random.default_rng(7)
    baseline = ArmCounters(compared=100_000, agreed=95_000, frames=1_000_000)
    rolled_back = 0
    for _ in range(400):
        compared = agreed = 0
        while True:
            compared += 10
            agreed += int(rng.binomial(10, 0.93))
            canary = ArmCounters(frames=compared * 10, compared=compared, agreed=agreed)
            verdict = judge.decide(canary, baseline).verdict
            if verdict is not Verdict.WAIT:
                rolled_back += verdict is Verdict.ROLL_BACK
                break
    assert rolled_back / 400 <= 0.02


def test_the_baseline_must_have_enough_comparisons_first() -> None:
    judge = CanaryJudge()
    small = ArmCounters(frames=1_000, compared=50, agreed=48)
    decision = judge.decide(arm(500, 0.10), small)
    assert decision.verdict is Verdict.WAIT
    assert "baseline has 50 of 100 compared frames" in decision.reason
    late = judge.decide(arm(judge.config.max_compared, 0.95), small)
    assert (late.verdict, late.check) == (Verdict.ROLL_BACK, "inconclusive")


def test_no_canary_traffic_is_a_wait() -> None:
    decision = CanaryJudge().decide(ArmCounters(), BASELINE)
    assert (decision.verdict, decision.check) == (Verdict.WAIT, "waiting")
    assert "no canary traffic" in decision.reason


def test_a_less_reliable_baseline_makes_the_judge_slower_to_roll_back() -> None:
    # Same canary, same baseline rate: the small baseline's wider interval holds it back.
    canary = arm(150, 0.80)
    big = CanaryJudge().decide(canary, BASELINE)
    small = CanaryJudge().decide(canary, ArmCounters(frames=2_000, compared=200, agreed=190))
    assert big.verdict is Verdict.ROLL_BACK
    assert small.verdict is Verdict.WAIT
    assert small.llr is not None and big.llr is not None and small.llr < big.llr


# ---------------------------------------------------------------- guard rails


def test_canary_that_escalates_much_more_is_rolled_back_even_if_it_agrees() -> None:
    canary = arm(20, 1.0, frames=200, escalated=60)  # 30% vs 5%
    decision = CanaryJudge().decide(canary, BASELINE)
    assert (decision.verdict, decision.check) == (Verdict.ROLL_BACK, "escalation")
    assert "canary 60 of 200 (30.0%)" in decision.reason


def test_escalating_a_little_more_is_tolerated() -> None:
    canary = arm(500, 0.95, frames=5_000, escalated=350)  # 7% vs 5%, margin 5 points
    assert CanaryJudge().decide(canary, BASELINE).verdict is Verdict.PROMOTE


def test_failing_canary_is_rolled_back() -> None:
    canary = arm(20, 1.0, frames=200, errors=15, dead_letters=5)
    decision = CanaryJudge().decide(canary, BASELINE)
    assert (decision.verdict, decision.check) == (Verdict.ROLL_BACK, "failures")
    assert "canary 20 of 205" in decision.reason  # dead letters are trials too


def test_one_failure_is_not_enough() -> None:
    canary = arm(30, 1.0, frames=300, errors=1)
    assert CanaryJudge().decide(canary, BASELINE).verdict is Verdict.WAIT


def test_guards_wait_for_a_baseline_of_min_frames() -> None:
    baseline = ArmCounters(frames=400, escalated=20, compared=400, agreed=380)
    canary = arm(20, 1.0, frames=200, escalated=100)
    assert CanaryJudge().decide(canary, baseline).verdict is Verdict.WAIT


def test_slow_canary_is_rolled_back_once_both_arms_have_enough_intervals() -> None:
    judge = CanaryJudge()
    slow = arm(20, 1.0, latency_p95_ms=40.0, latency_intervals=9)
    assert judge.decide(slow, BASELINE).verdict is Verdict.WAIT
    slow = dataclasses.replace(slow, latency_intervals=10)
    decision = judge.decide(slow, BASELINE)
    assert (decision.verdict, decision.check) == (Verdict.ROLL_BACK, "latency")
    assert "40.0 ms over 10 intervals > 27.5 ms" in decision.reason
    # Within ratio and slack: 27 ms against 15 ms x 1.5 + 5 ms.
    fine = dataclasses.replace(slow, latency_p95_ms=27.0)
    assert judge.decide(fine, BASELINE).verdict is Verdict.WAIT
