"""The edge's one decision (edge_worker/decision.py), row by row, and RoundTripEstimator."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_worker.decision import (
    Decision,
    EscalationPolicy,
    FrameFacts,
    raised_threshold,
    shed_before_model,
    sheds,
)
from edge_worker.roundtrip import RoundTripEstimator
from schemas.errors import ConfigError, SchemaError
from schemas.messages import PrivacyClass, Reason

# A frame that reaches the last row of the table: uncertain, may leave, time to spare.
UNCERTAIN = FrameFacts(
    priority=2,
    confidence=0.5,
    threshold=0.9,
    privacy=PrivacyClass.CROP,
    time_left_s=0.2,
    has_regions=True,
)
RTT = 0.05


def local(reason: Reason) -> Decision:
    return Decision(escalate=False, reason=reason, send=PrivacyClass.LOCAL_ONLY)


@pytest.fixture
def policy() -> EscalationPolicy:
    return EscalationPolicy()


# --- one test per row ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "rtt", "reason"),
    [
        pytest.param({"has_regions": False}, RTT, Reason.NO_REGIONS, id="row1_no_regions"),
        pytest.param({"priority": 1}, RTT, Reason.PRIORITY_LOCAL, id="row2_priority_one"),
        pytest.param({"confidence": 0.95}, RTT, Reason.CONFIDENT, id="row3_confident"),
        pytest.param(
            {"confidence": 0.9, "threshold": 0.9},
            RTT,
            Reason.CONFIDENT,
            id="row3_confidence_equal_to_threshold_is_confident",
        ),
        pytest.param(
            {"confidence": 0.5, "threshold": 0.4},
            RTT,
            Reason.CONFIDENT,
            id="row3_uses_the_facts_threshold",
        ),
        pytest.param(
            {"privacy": PrivacyClass.LOCAL_ONLY},
            RTT,
            Reason.PRIVACY_LOCAL_ONLY,
            id="row4_privacy_local_only",
        ),
        pytest.param(
            {"time_left_s": 0.04}, RTT, Reason.DEADLINE_TOO_SHORT, id="row5_deadline_too_short"
        ),
        pytest.param(
            {"time_left_s": 0.05},
            0.05,
            Reason.DEADLINE_TOO_SHORT,
            id="row5_round_trip_equal_to_time_left_is_too_short",
        ),
        pytest.param(
            {"time_left_s": -0.01},
            0.0,
            Reason.DEADLINE_TOO_SHORT,
            id="row5_deadline_already_passed",
        ),
    ],
)
def test_rows_that_answer_locally(
    policy: EscalationPolicy, changes: dict[str, object], rtt: float, reason: Reason
) -> None:
    facts = replace(UNCERTAIN, **changes)  # type: ignore[arg-type]
    assert policy.decide(facts, rtt) == local(reason)


def test_row6_escalate_crop(policy: EscalationPolicy) -> None:
    assert policy.decide(UNCERTAIN, RTT) == Decision(
        escalate=True, reason=Reason.CLOUD_ANSWER, send=PrivacyClass.CROP
    )


def test_row6_escalate_full(policy: EscalationPolicy) -> None:
    facts = replace(UNCERTAIN, privacy=PrivacyClass.FULL)
    assert policy.decide(facts, RTT) == Decision(
        escalate=True, reason=Reason.CLOUD_ANSWER, send=PrivacyClass.FULL
    )


def test_nan_confidence_is_not_confident(policy: EscalationPolicy) -> None:
    facts = replace(UNCERTAIN, confidence=math.nan)
    assert policy.decide(facts, RTT).reason is Reason.CLOUD_ANSWER


def test_nan_round_trip_stays_local(policy: EscalationPolicy) -> None:
    assert policy.decide(UNCERTAIN, math.nan) == local(Reason.DEADLINE_TOO_SHORT)


def test_budget_used_up_answers_at_the_edge(policy: EscalationPolicy) -> None:
    facts = replace(UNCERTAIN, budget_left=False)
    assert policy.decide(facts, RTT) == local(Reason.BUDGET)
    # Before the link check: a frame the budget cannot pay for is not stored either.
    assert policy.decide(replace(facts, link_up=False), RTT) == local(Reason.BUDGET)
    assert EscalationPolicy(routing="cloud_only").decide(facts, RTT) == local(Reason.BUDGET)


# --- ordering between rows ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"has_regions": False, "priority": 1}, Reason.NO_REGIONS),
        ({"has_regions": False, "privacy": PrivacyClass.LOCAL_ONLY}, Reason.NO_REGIONS),
        ({"priority": 1, "privacy": PrivacyClass.LOCAL_ONLY}, Reason.PRIORITY_LOCAL),
        ({"priority": 1, "time_left_s": -1.0}, Reason.PRIORITY_LOCAL),
        ({"priority": 1, "confidence": 0.99}, Reason.PRIORITY_LOCAL),
        ({"confidence": 0.99, "privacy": PrivacyClass.LOCAL_ONLY}, Reason.CONFIDENT),
        ({"confidence": 0.99, "time_left_s": -1.0}, Reason.CONFIDENT),
        ({"privacy": PrivacyClass.LOCAL_ONLY, "time_left_s": -1.0}, Reason.PRIVACY_LOCAL_ONLY),
        ({"privacy": PrivacyClass.LOCAL_ONLY, "budget_left": False}, Reason.PRIVACY_LOCAL_ONLY),
        ({"confidence": 0.99, "budget_left": False}, Reason.CONFIDENT),
        ({"budget_left": False, "time_left_s": -1.0}, Reason.BUDGET),
    ],
)
def test_first_matching_row_wins(
    policy: EscalationPolicy, changes: dict[str, object], reason: Reason
) -> None:
    facts = replace(UNCERTAIN, **changes)  # type: ignore[arg-type]
    assert policy.decide(facts, RTT) == local(reason)


@given(
    priority=st.integers(1, 3),
    confidence=st.floats(0.0, 1.0),
    threshold=st.floats(0.0, 1.0),
    privacy=st.sampled_from(list(PrivacyClass)),
    time_left_s=st.floats(-1.0, 1.0),
    has_regions=st.booleans(),
    rtt=st.floats(0.0, 1.0),
)
def test_nothing_leaves_unless_allowed(
    priority: int,
    confidence: float,
    threshold: float,
    privacy: PrivacyClass,
    time_left_s: float,
    has_regions: bool,
    rtt: float,
) -> None:
    facts = FrameFacts(priority, confidence, threshold, privacy, time_left_s, has_regions)
    decision = EscalationPolicy().decide(facts, rtt)
    if decision.escalate:
        assert decision.reason is Reason.CLOUD_ANSWER
        assert decision.send is privacy
        assert privacy is not PrivacyClass.LOCAL_ONLY
        assert priority != 1
        assert has_regions
        assert confidence < threshold
        assert rtt < time_left_s
    else:
        assert decision.send is PrivacyClass.LOCAL_ONLY
        assert decision.reason is not Reason.CLOUD_ANSWER


# --- thresholds and validation ------------------------------------------------------


def test_threshold_for() -> None:
    policy = EscalationPolicy(default_threshold=0.8)
    assert policy.threshold_for(None) == 0.8
    assert policy.threshold_for(0.3) == 0.3
    assert policy.default_threshold == 0.8
    with pytest.raises(SchemaError, match=r"frame\.threshold"):
        policy.threshold_for(1.5)


@pytest.mark.parametrize("bad", [-0.1, 1.1, math.nan])
def test_default_threshold_validated(bad: float) -> None:
    with pytest.raises(ConfigError, match=r"default_threshold must be a number in \[0, 1\]"):
        EscalationPolicy(default_threshold=bad)


@pytest.mark.parametrize("edge", [0.0, 1.0])
def test_default_threshold_bounds_accepted(edge: float) -> None:
    assert EscalationPolicy(default_threshold=edge).threshold_for(None) == edge


def test_frame_facts_validated() -> None:
    with pytest.raises(ValueError, match="priority"):
        replace(UNCERTAIN, priority=4)
    with pytest.raises(ValueError, match="threshold"):
        replace(UNCERTAIN, threshold=1.2)


# --- RoundTripEstimator -------------------------------------------------------------


def test_round_trip_prior_until_min_samples() -> None:
    est = RoundTripEstimator()
    assert est.estimate() == 0.05
    for _ in range(4):
        est.observe(1.0)
    assert est.estimate() == 0.05
    est.observe(1.0)
    assert est.estimate() == 1.0


def test_round_trip_custom_prior_and_min_samples() -> None:
    est = RoundTripEstimator(prior_s=0.2, min_samples=2)
    est.observe(0.01)
    assert est.estimate() == 0.2
    est.observe(0.03)
    assert est.estimate() == 0.03


def test_round_trip_p95_nearest_rank() -> None:
    est = RoundTripEstimator()
    for ms in range(100, 0, -1):  # order must not matter
        est.observe(ms / 1000)
    assert est.estimate() == 0.095
    est.observe(10.0)  # 101 samples: rank ceil(95.95) = 96
    assert est.estimate() == 0.096


def test_round_trip_p95_of_five_is_the_max() -> None:
    est = RoundTripEstimator()
    for s in (0.1, 0.5, 0.2, 0.4, 0.3):
        est.observe(s)
    assert est.estimate() == 0.5


def test_round_trip_forgets_old_samples() -> None:
    est = RoundTripEstimator(window=256)
    for _ in range(100):
        est.observe(10.0)
    for _ in range(256):
        est.observe(0.01)
    assert len(est) == 256
    assert est.estimate() == 0.01


def test_round_trip_rejects_bad_samples() -> None:
    est = RoundTripEstimator()
    with pytest.raises(ValueError, match="seconds"):
        est.observe(-0.001)
    with pytest.raises(ValueError, match="seconds"):
        est.observe(math.inf)
    assert len(est) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prior_s": -1.0}, "prior_s must be a finite number >= 0"),
        ({"min_samples": 0}, r"min_samples must be an integer in \[1, window=256\], got 0"),
        ({"min_samples": 10, "window": 5}, r"min_samples must be an integer in \[1, window=5\]"),
        ({"window": 0}, "window must be an integer >= 1, got 0"),
    ],
)
def test_round_trip_config_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RoundTripEstimator(**kwargs)  # type: ignore[arg-type]


def test_edge_only_routing_never_escalates() -> None:
    policy = EscalationPolicy(routing="edge_only")
    uncertain = replace(
        UNCERTAIN, priority=3, confidence=0.1, privacy=PrivacyClass.FULL, time_left_s=10.0
    )
    decision = policy.decide(uncertain, 0.01)
    assert (decision.escalate, decision.reason) == (False, Reason.EDGE_ONLY)


def test_cloud_only_routing_escalates_all_that_may_leave() -> None:
    policy = EscalationPolicy(routing="cloud_only")
    sure_and_urgent = replace(
        UNCERTAIN, priority=1, confidence=1.0, threshold=0.5, time_left_s=0.001
    )
    decision = policy.decide(sure_and_urgent, 5.0)
    assert (decision.escalate, decision.reason, decision.send) == (
        True,
        Reason.CLOUD_ANSWER,
        PrivacyClass.CROP,
    )
    private = replace(sure_and_urgent, privacy=PrivacyClass.LOCAL_ONLY)
    assert policy.decide(private, 0.0).reason is Reason.PRIVACY_LOCAL_ONLY


def test_unknown_routing_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="routing must be one of hybrid, edge_only, cloud_only"):
        EscalationPolicy(routing="cloudy")


def test_raised_threshold() -> None:
    assert raised_threshold(0.9, 0.0) == 0.9
    assert raised_threshold(0.9, 1.0, 0.05) == pytest.approx(0.95)
    assert raised_threshold(0.9, 0.5, 0.05) == pytest.approx(0.925)
    assert raised_threshold(0.98, 1.0, 0.05) == 1.0
    assert raised_threshold(0.9, 7.0, 0.05) == pytest.approx(0.95)  # pressure is clamped


def test_shed_lowest_priority_first_never_priority_one() -> None:
    assert not sheds(3, 0.49)
    assert sheds(3, 0.5)
    assert not sheds(2, 0.99)
    assert sheds(2, 1.0)
    assert not sheds(1, 1.0)


# --- the site's state: pressure, shadow sampling, shedding ----------------------------


def test_row0_shed_before_the_model_only_what_may_not_leave() -> None:
    assert shed_before_model(3, PrivacyClass.LOCAL_ONLY, 0.5)
    assert not shed_before_model(3, PrivacyClass.CROP, 1.0)
    assert not shed_before_model(1, PrivacyClass.LOCAL_ONLY, 1.0)


def test_row3_pressure_raises_the_threshold_of_frames_that_may_leave() -> None:
    policy = EscalationPolicy(threshold_raise=0.05)
    facts = replace(UNCERTAIN, confidence=0.92, threshold=0.9)
    assert policy.decide(facts, RTT) == local(Reason.CONFIDENT)
    hot = replace(facts, pressure=1.0)  # threshold 0.95 now
    assert policy.decide(hot, RTT).reason is Reason.CLOUD_ANSWER
    # A frame that may not leave keeps its threshold: nowhere to send it.
    kept = replace(hot, privacy=PrivacyClass.LOCAL_ONLY)
    assert policy.decide(kept, RTT) == local(Reason.CONFIDENT)


def test_row3_shadow_sample_is_confident_and_sent_to_compare(policy: EscalationPolicy) -> None:
    facts = replace(UNCERTAIN, confidence=0.95, shadow_sampled=True)
    assert policy.decide(facts, RTT) == Decision(
        escalate=False, reason=Reason.CONFIDENT, send=PrivacyClass.CROP, shadow=True
    )
    # Not when it may not leave, the link is down or the budget does not pay.
    for changes in (
        {"privacy": PrivacyClass.LOCAL_ONLY},
        {"link_up": False},
        {"budget_left": False},
    ):
        assert policy.decide(replace(facts, **changes), RTT) == local(Reason.CONFIDENT)


def test_only_a_budget_decision_is_degraded(policy: EscalationPolicy) -> None:
    assert policy.decide(replace(UNCERTAIN, budget_left=False), RTT).degraded
    assert not policy.decide(UNCERTAIN, RTT).degraded
