"""CanaryJudge, ArmTally and the rollout state machine, on made-up counters.

Counters are fed the way heartbeats deliver them: cumulative, a batch at a time. Most
streams are deterministic (``floor(rate * n)`` agreements after ``n`` comparisons); one
test draws seeded binomials to check the stated roll-back bound.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pipeline.release.judge import CanaryConfig, CanaryJudge, Decision, Verdict
from pipeline.release.plan import RolloutPhase, RolloutPlan, RolloutState, pick_canaries
from pipeline.release.tallies import ArmCounters, ArmTally
from schemas.errors import ConfigError, SchemaError

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
    ("changes", "fragment"),
    [
        ({"margin": 0.0}, "margin must be a number in (0, 1)"),
        ({"detect": 0.01}, "detect (0.01) must be greater than margin (0.02)"),
        ({"escalation_detect": 0.05}, "escalation_detect (0.05) must be greater than"),
        ({"failure_margin": math.nan}, "failure_margin must be a number in (0, 1)"),
        ({"alpha": 0.5}, "alpha must be a number in (0, 0.5)"),
        ({"beta": 0}, "beta must be a number in (0, 0.5)"),
        ({"guard_alpha": True}, "guard_alpha must be a number"),
        ({"baseline_z": -1.0}, "baseline_z must be a finite number >= 0"),
        ({"min_compared": 0}, "min_compared must be an integer >= 1"),
        ({"max_compared": 300}, "max_compared (300) must be greater than min_compared (300)"),
        ({"min_baseline_frames": 1.5}, "min_baseline_frames must be an integer"),
        ({"latency_ratio": 0.9}, "latency_ratio must be a finite number >= 1"),
        ({"latency_slack_ms": math.inf}, "latency_slack_ms must be a finite number >= 0"),
        ({"min_latency_intervals": 0}, "min_latency_intervals must be an integer >= 1"),
    ],
)
def test_bad_config_is_refused_with_the_key(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        CanaryConfig(**changes)
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


# ---------------------------------------------------------------- the tally


def hb(
    worker: str,
    version: str,
    since: float,
    at: float,
    frames: int,
    agreed: int | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A contract heartbeat with ``frames`` frames, a tenth of them compared."""
    compared = frames // 10
    beat: dict[str, Any] = {
        "schema": 1,
        "site": "site1",
        "worker": worker,
        "tier": "edge",
        "model": "digits-mlp32",
        "model_version": version,
        "at": at,
        "started_at": 0.0,
        "model_since": since,
        "frames": frames,
        "local": frames - frames // 20,
        "escalated": frames // 20,
        "shed": 0,
        "dead_letters": 0,
        "errors": 0,
        "compared": compared,
        "agreed": compared if agreed is None else agreed,
        "latency_p95_ms": 12.0,
        "queue_depth": 0,
        "pending": 0,
        "link_up": True,
        "temperature_c": 40.0,
        "temperature_source": "simulated",
        "health": "healthy",
        "backlog": 0,
    }
    beat.update(changes)
    return beat


def test_tally_splits_arms_by_version_and_keeps_pre_switch_counters_as_baseline() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=100.0)
    tally.observe(hb("e1", "1.0.0", 0.0, 99.0, 1_000))
    tally.observe(hb("e2", "1.0.0", 0.0, 99.0, 2_000))
    # e1 switches at 101: its new session counts from zero.
    tally.observe(hb("e1", "1.1.0", 101.0, 103.0, 100, agreed=5))
    tally.observe(hb("e2", "1.0.0", 0.0, 103.0, 2_200))
    assert tally.canary() == ArmCounters(
        frames=100, escalated=5, compared=10, agreed=5, latency_p95_ms=12.0, latency_intervals=1
    )
    base = tally.baseline()
    assert (base.frames, base.compared) == (1_000 + 2_200, 100 + 220)
    assert tally.running("1.1.0") == {"e1"}


def test_tally_ignores_duplicates_older_heartbeats_and_other_tiers() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=0.0)
    tally.observe(hb("e1", "1.1.0", 1.0, 10.0, 500))
    tally.observe(hb("e1", "1.1.0", 1.0, 10.0, 500))
    tally.observe(hb("e1", "1.1.0", 1.0, 8.0, 300))
    assert not tally.observe(hb("c1", "1.1.0", 1.0, 11.0, 900, tier="cloud"))
    canary = tally.canary()
    assert canary.frames == 500
    assert canary.latency_intervals == 1


def test_tally_counts_a_session_older_than_the_step_from_its_first_heartbeat() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=100.0)
    tally.observe(hb("e1", "1.1.0", 50.0, 101.0, 5_000))  # loaded before the step
    tally.observe(hb("e1", "1.1.0", 50.0, 103.0, 5_300))
    assert tally.canary().frames == 300


def test_new_step_starts_the_canary_evidence_afresh_and_keeps_restarts() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=10.0)
    tally.observe(hb("e1", "1.1.0", 11.0, 20.0, 800))
    tally.new_step(21.0)
    assert tally.canary().frames == 0
    assert tally.canary().latency_intervals == 0
    tally.observe(hb("e1", "1.1.0", 11.0, 22.0, 1_000))
    # e1 restarts mid-step: the new session adds to what the old one earned.
    tally.observe(hb("e1", "1.1.0", 23.0, 24.0, 50))
    assert tally.canary().frames == 200 + 50


def test_tally_refuses_a_heartbeat_without_a_needed_field() -> None:
    beat = hb("e1", "1.1.0", 0.0, 1.0, 10)
    del beat["compared"]
    with pytest.raises(SchemaError, match=r"heartbeat\.compared"):
        ArmTally("edge", "1.1.0", 0.0).observe(beat)
    with pytest.raises(SchemaError, match=r"heartbeat\.worker"):
        ArmTally("edge", "1.1.0", 0.0).observe(hb("a.b", "1.1.0", 0.0, 1.0, 10))


def test_live_workers_are_those_heard_from_recently() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=0.0)
    tally.observe(hb("e2", "1.0.0", 0.0, 95.0, 10))
    tally.observe(hb("e1", "1.0.0", 0.0, 50.0, 10))
    tally.observe(hb("e3", "1.0.0", 0.0, 99.0, 10))
    assert tally.live_workers(now=100.0, ttl_s=10.0) == ["e2", "e3"]


# ---------------------------------------------------------------- plans and states


def test_canaries_are_the_first_sorted_workers_at_least_one() -> None:
    workers = [f"edge-{i:02d}" for i in range(10, 0, -1)]
    assert pick_canaries(0.1, workers) == ("edge-01",)
    assert pick_canaries(0.3, workers) == ("edge-01", "edge-02", "edge-03")
    assert pick_canaries(0.01, ["b", "a"]) == ("a",)
    assert pick_canaries(0.5, ["a", "b", "c"]) == ("a", "b")


def test_canaries_only_grow_and_remember_workers_that_left() -> None:
    # "c" was a canary and is gone now; it keeps its override until the rollout ends.
    assert pick_canaries(0.5, ["a", "b", "d"], current=("c",)) == ("c", "a")
    assert pick_canaries(0.1, ["a", "b"], current=("b",)) == ("b",)


def plan(**changes: Any) -> RolloutPlan:
    values: dict[str, Any] = {
        "tier": "edge",
        "site": "site1",
        "version": "1.1.0",
        "canary_share": 0.1,
        "previous_version": "1.0.0",
        "started_at": 1.0,
    }
    values.update(changes)
    return RolloutPlan.with_canary(**values)


def test_plan_steps_start_at_the_canary_share() -> None:
    assert plan().steps == (0.1, 0.5, 1.0)
    assert plan(canary_share=0.6).steps == (0.6, 1.0)
    assert plan(later_steps=(0.25, 0.5)).steps == (0.1, 0.25, 0.5, 1.0)
    assert plan().key == "edge.site1"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"canary_share": 1.0}, "canary_share must be a number in (0, 1)"),
        ({"canary_share": 0}, "canary_share must be a number in (0, 1)"),
        ({"tier": "fog"}, "tier must be one of edge, cloud, device"),
        ({"site": "a.b"}, "site: 'a.b' is not a valid name"),
        ({"version": "1.1 beta"}, "version must be 1-64 letters"),
        ({"version": "1.0.0"}, "version 1.0.0 is already the site's version"),
    ],
)
def test_bad_plans_are_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan(**changes)
    assert fragment in str(info.value)


def test_plan_steps_must_increase_to_one() -> None:
    with pytest.raises(ConfigError, match="steps must be increasing"):
        RolloutPlan("edge", "site1", "2", (0.5, 0.2, 1.0), None, 0.0)
    with pytest.raises(ConfigError, match="steps must be increasing"):
        RolloutPlan("edge", "site1", "2", (0.5, 0.9), None, 0.0)


PROMOTE = Decision(Verdict.PROMOTE, "agreement", "good")
ROLL_BACK = Decision(Verdict.ROLL_BACK, "agreement", "bad")
WAIT = Decision(Verdict.WAIT, "waiting", "not yet")
WORKERS = [f"e{i}" for i in range(10)]


def test_state_advances_on_promote_and_completes_at_full_share() -> None:
    state = RolloutState.begin(plan(), WORKERS, now=5.0)
    assert (state.step, state.share, state.canary_workers) == (0, 0.1, ("e0",))
    assert state.apply(WAIT, WORKERS, now=6.0) is state
    state = state.apply(PROMOTE, WORKERS, now=7.0)
    assert (state.step, state.share, state.step_started_at) == (1, 0.5, 7.0)
    assert state.canary_workers == ("e0", "e1", "e2", "e3", "e4")
    assert state.running
    state = state.apply(PROMOTE, WORKERS, now=8.0)
    assert state.phase is RolloutPhase.COMPLETED
    assert [h.kind for h in state.history] == ["started", "promoted", "completed"]
    assert state.apply(ROLL_BACK, WORKERS, now=9.0) is state  # over is over


def test_state_ends_on_roll_back_with_the_reason() -> None:
    state = RolloutState.begin(plan(), WORKERS, now=5.0).apply(ROLL_BACK, WORKERS, now=6.0)
    assert state.phase is RolloutPhase.ROLLED_BACK
    assert state.reason == "bad"
    assert state.history[-1].kind == "rolled_back"
    assert state.canary_workers == ("e0",)  # whose overrides must go


def test_state_needs_workers() -> None:
    with pytest.raises(ConfigError, match="no live edge workers at site site1"):
        RolloutState.begin(plan(), [], now=0.0)


def test_state_round_trips_through_json() -> None:
    seed = (hb("e0", "1.0.0", 0.0, 1.0, 100),)
    state = RolloutState.begin(plan(baseline_seed=seed), WORKERS, now=5.0)
    state = state.apply(PROMOTE, WORKERS, now=7.0).with_reason("waiting: ...")
    assert RolloutState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'{"schema": 2}', b'{"schema": 1, "plan": {"tier": "edge"}}'],
)
def test_state_from_garbage_is_a_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError):
        RolloutState.from_json(data)


def test_counters_that_go_down_or_move_unevenly_still_make_a_valid_arm() -> None:
    tally = ArmTally("edge", "1.1.0", step_started_at=100.0)
    tally.observe(hb("e1", "1.1.0", 50.0, 101.0, 1_000))  # offset: 1,000 frames, 50 escalated
    # Escalations counted before their frames: more escalated than frames since.
    tally.observe(hb("e1", "1.1.0", 50.0, 102.0, 1_001, escalated=53))
    assert (tally.canary().frames, tally.canary().escalated) == (1, 1)
    # Counters reset without a new model_since: the session counts from zero.
    tally.observe(hb("e1", "1.1.0", 50.0, 103.0, 40))
    assert tally.canary().frames == 40
