"""ArmTally and the rollout state machine: heartbeats in, each arm's counters out; plans
and states on made-up decisions.

Heartbeats are fed the way workers send them: cumulative counters, a batch at a time.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.release.judge import Decision, Verdict
from pipeline.release.plan import RolloutPhase, RolloutPlan, RolloutState, pick_canaries
from pipeline.release.tallies import ArmCounters, ArmTally
from schemas.errors import ConfigError, SchemaError
from tests.release_helpers import heartbeat, rollout_plan

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
    agreed = compared if agreed is None else agreed
    return heartbeat(
        worker,
        version,
        since=since,
        at=at,
        frames=frames,
        compared=compared,
        agreed=agreed,
        **changes,
    )


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


def test_plan_steps_start_at_the_canary_share() -> None:
    assert rollout_plan().steps == (0.1, 0.5, 1.0)
    assert rollout_plan(canary_share=0.6).steps == (0.6, 1.0)
    assert rollout_plan(later_steps=(0.25, 0.5)).steps == (0.1, 0.25, 0.5, 1.0)
    assert rollout_plan().key == "edge.site1"


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
    state = RolloutState.begin(rollout_plan(), WORKERS, now=5.0)
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
    state = RolloutState.begin(rollout_plan(), WORKERS, now=5.0).apply(ROLL_BACK, WORKERS, now=6.0)
    assert state.phase is RolloutPhase.ROLLED_BACK
    assert state.reason == "bad"
    assert state.history[-1].kind == "rolled_back"
    assert state.canary_workers == ("e0",)  # whose overrides must go


def test_state_needs_workers() -> None:
    with pytest.raises(ConfigError, match="no live edge workers at site site1"):
        RolloutState.begin(rollout_plan(), [], now=0.0)


def test_state_round_trips_through_json() -> None:
    seed = (hb("e0", "1.0.0", 0.0, 1.0, 100),)
    state = RolloutState.begin(rollout_plan(baseline_seed=seed), WORKERS, now=5.0)
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
