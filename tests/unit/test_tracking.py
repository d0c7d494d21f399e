"""The tracker (ids across frames) and the escalation memory (ask the cloud once per
track). Pure logic: no I/O, no clocks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.tracking.escalation import (
    Action,
    AskReason,
    EscalationConfig,
    EscalationMemory,
)
from pipeline.tracking.tracker import Tracker, TrackerConfig
from schemas.errors import ConfigError
from schemas.messages import Region, Source, TextLine

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


def box(x: int, y: int, w: int = 40, h: int = 20) -> Region:
    return Region(x, y, w, h)


def run(tracker: Tracker, frames: list[list[Region]], conf: float = 0.9) -> list[list[int | None]]:
    """Update ``tracker`` with ``frames`` (frame indices 0, 1, ...), all boxes at ``conf``."""
    return [tracker.update(boxes, [conf] * len(boxes), i) for i, boxes in enumerate(frames)]


# --- Tracker configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"high_threshold": 1.5}, "high_threshold"),
        ({"low_threshold": -0.1}, "low_threshold"),
        ({"low_threshold": float("nan")}, "low_threshold"),
        ({"low_threshold": 0.6, "high_threshold": 0.5}, "low_threshold"),
        ({"match_iou": 0.0}, "match_iou"),
        ({"low_match_iou": 2}, "low_match_iou"),
        ({"min_hits": 0}, "min_hits"),
        ({"min_hits": 2.0}, "min_hits"),
        ({"min_hits": True}, "min_hits"),
        ({"max_age": -1}, "max_age"),
        ({"velocity_weight": 1.1}, "velocity_weight"),
        ({"high_threshold": "0.5"}, "high_threshold"),
    ],
)
def test_tracker_config_rejects_out_of_range(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrackerConfig(**kwargs)


def test_tracker_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_age"):
        TrackerConfig(max_age=-3)


def test_update_rejects_bad_input() -> None:
    tracker = Tracker()
    with pytest.raises(ValueError, match="confidences"):
        tracker.update([box(0, 0)], [], 0)
    with pytest.raises(ValueError, match="confidences"):
        tracker.update([box(0, 0)], [1.5], 0)
    tracker.update([box(0, 0)], [0.9], 5)
    with pytest.raises(ValueError, match="frame_index"):
        tracker.update([box(0, 0)], [0.9], 5)


# --- Tracker behaviour ---------------------------------------------------------------


def test_track_is_tentative_until_min_hits() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    ids = run(tracker, [[box(10, 10)]] * 4)
    assert ids == [[None], [None], [1], [1]]


def test_min_hits_one_confirms_at_once() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    assert run(tracker, [[box(0, 0), box(100, 0)]] * 2) == [[1, 2], [1, 2]]


def test_tentative_track_that_misses_a_frame_is_dropped() -> None:
    tracker = Tracker(TrackerConfig(min_hits=3))
    ids = run(tracker, [[box(10, 10)], [box(10, 10)], [], [box(10, 10)], [box(10, 10)]])
    # Two hits, a miss (dropped), then a fresh tentative track: still not confirmed.
    assert ids == [[None], [None], [], [None], [None]]
    assert tracker.live_ids == ()


def test_moving_boxes_keep_their_ids() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    frames = [[box(10 + 12 * t, 10 + 3 * t), box(300 - 5 * t, 200 + 7 * t)] for t in range(30)]
    ids = run(tracker, frames)
    assert all(frame == [1, 2] for frame in ids)


def test_crossing_boxes_keep_their_ids() -> None:
    # Two labels sliding past each other on the same row; they overlap exactly at
    # t = 10. Only the velocity tells them apart there.
    tracker = Tracker(TrackerConfig(min_hits=1))
    frames = [[box(10 * t, 50), box(200 - 10 * t, 50)] for t in range(21)]
    ids = run(tracker, frames)
    assert ids[0] == [1, 2]
    assert all(frame == [1, 2] for frame in ids), ids


def test_crossing_boxes_given_in_swapped_order_keep_their_ids() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    frames = [[box(10 * t, 50 + t), box(200 - 10 * t, 56 - t)] for t in range(21)]
    # The order of the boxes in each frame flips on odd frames: ids follow the boxes.
    ordered = [f if t % 2 == 0 else f[::-1] for t, f in enumerate(frames)]
    ids = run(tracker, ordered)
    for t, frame in enumerate(ids):
        assert frame == ([1, 2] if t % 2 == 0 else [2, 1]), (t, ids)


@pytest.mark.parametrize(("velocity_weight", "swapped"), [(0.0, True), (0.5, False), (1.0, False)])
def test_velocity_keeps_crossing_boxes_apart(velocity_weight: float, swapped: bool) -> None:
    # Crossing between frames 10 and 11. With the motion model off, each box is
    # nearer the other's last position just after the crossing, and the ids swap;
    # the constant-velocity prediction prevents that.
    tracker = Tracker(TrackerConfig(min_hits=1, velocity_weight=velocity_weight))
    frames = [[box(10 * t, 50), box(205 - 10 * t, 50)] for t in range(21)]
    ids = run(tracker, frames)
    assert ids[0] == [1, 2]
    assert (ids[-1] == [2, 1]) is swapped


def test_lost_box_within_max_age_keeps_its_id() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=5))
    label = box(50, 50)
    frames = [[label]] * 3 + [[]] * 5 + [[label]]  # missed in frames 3-7, found in 8
    ids = run(tracker, frames)
    assert ids[-1] == [1]
    assert tracker.ended == ()


def test_lost_box_past_max_age_gets_a_new_id() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=5))
    label = box(50, 50)
    run(tracker, [[label]] * 3 + [[]] * 5)  # seen in frames 0-2, missed in 3-7
    assert list(tracker.live_ids) == [1]
    assert tracker.update([], [], 8) == []  # a 6th missed frame: dead
    assert tracker.ended == (1,)
    assert tracker.live_ids == ()
    assert tracker.update([label], [0.9], 9) == [2]
    assert not tracker.ended


def test_moving_box_lost_for_a_while_is_found_where_it_went() -> None:
    # Occluded for 4 frames while moving 10 px/frame: the prediction follows it.
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=10, velocity_weight=1.0))
    for t in range(5):
        assert tracker.update([box(10 * t, 0)], [0.9], t) == [1]
    assert tracker.update([box(10 * 9, 0)], [0.9], 9) == [1]


def test_skipped_frame_indices_are_frames() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, max_age=3))
    assert tracker.update([box(0, 0)], [0.9], 0) == [1]
    assert tracker.update([box(0, 0)], [0.9], 4) == [1]  # missed frames 1-3: still alive
    assert tracker.update([box(0, 0)], [0.9], 9) == [2]  # missed frames 5-8: too many
    assert tracker.ended == (1,)


def test_low_confidence_box_keeps_a_track_alive_via_second_stage() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, high_threshold=0.6, low_threshold=0.1))
    assert tracker.update([box(20, 20)], [0.9], 0) == [1]
    # Occluded: the detector is unsure, but it is still the same box.
    assert tracker.update([box(22, 20)], [0.3], 1) == [1]
    assert tracker.update([box(24, 20)], [0.9], 2) == [1]


def test_low_confidence_box_needs_the_stricter_iou() -> None:
    cfg = TrackerConfig(min_hits=1, match_iou=0.2, low_match_iou=0.7, velocity_weight=0.0)
    tracker = Tracker(cfg)
    assert tracker.update([box(0, 0)], [0.9], 0) == [1]
    # IoU of (0,0,40,20) and (12,0,40,20) = 28/52 ~ 0.54: enough for a high box, not a low one.
    assert tracker.update([box(12, 0)], [0.3], 1) == [None]
    assert tracker.update([box(12, 0)], [0.9], 2) == [1]


def test_low_confidence_box_never_starts_a_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    ids = run(tracker, [[box(0, 0)]] * 3, conf=0.3)
    assert ids == [[None]] * 3
    assert tracker.live_ids == ()


def test_boxes_under_low_threshold_are_ignored() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1, low_threshold=0.2))
    assert tracker.update([box(0, 0)], [0.9], 0) == [1]
    assert tracker.update([box(0, 0)], [0.05], 1) == [None]


def test_high_box_wins_over_low_box_for_a_track() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    assert tracker.update([box(0, 0)], [0.9], 0) == [1]
    # A low-confidence duplicate on the same spot: the high one takes the track.
    assert tracker.update([box(0, 0), box(1, 0)], [0.3, 0.9], 1) == [None, 1]


def test_second_stage_fills_only_unmatched_tracks() -> None:
    tracker = Tracker(TrackerConfig(min_hits=1))
    assert tracker.update([box(0, 0), box(200, 0)], [0.9, 0.9], 0) == [1, 2]
    assert tracker.update([box(0, 0), box(200, 0)], [0.9, 0.2], 1) == [1, 2]


def test_same_input_gives_same_ids() -> None:
    frames = [[box(7 * t, 0), box(100, 3 * t), box(300 - 4 * t, 40)] for t in range(15)]
    assert run(Tracker(), frames) == run(Tracker(), frames)


# --- Tracker properties -------------------------------------------------------------

frame_boxes = st.lists(
    st.tuples(
        st.builds(
            Region,
            st.integers(0, 200),
            st.integers(0, 200),
            st.integers(1, 60),
            st.integers(1, 60),
        ),
        st.floats(0.0, 1.0),
    ),
    max_size=8,
)


@PROPERTY
@given(
    st.lists(st.tuples(st.integers(1, 3), frame_boxes), max_size=25),
    st.integers(1, 3),
    st.integers(0, 4),
)
def test_ids_are_unique_per_frame_and_never_reused(
    steps: list[tuple[int, list[tuple[Region, float]]]], min_hits: int, max_age: int
) -> None:
    tracker = Tracker(TrackerConfig(min_hits=min_hits, max_age=max_age))
    seen: set[int] = set()
    dead: set[int] = set()
    frame = 0
    for step, items in steps:
        frame += step
        ids = tracker.update([b for b, _ in items], [c for _, c in items], frame)
        assert len(ids) == len(items)
        present = [i for i in ids if i is not None]
        assert len(present) == len(set(present)), "an id given to two boxes of one frame"
        assert not dead & set(present), "an id of a dead track came back"
        new = set(present) - seen
        if new:
            # Fresh ids come from a growing counter: above every id given before.
            assert min(new) > max(seen, default=0)
        seen |= set(present)
        assert set(tracker.ended) <= seen
        assert not dead & set(tracker.ended), "a track died twice"
        dead |= set(tracker.ended)
        assert not dead & set(tracker.live_ids)


# --- Escalation memory ----------------------------------------------------------------


def edge(text: str, confidence: float = 0.9, x: int = 0) -> TextLine:
    return TextLine(box(x, 0), text, confidence, Source.EDGE)


def cloud(text: str, confidence: float = 0.99) -> TextLine:
    return TextLine(box(1, 1), text, confidence, Source.CLOUD)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cer_threshold": -0.1}, "cer_threshold"),
        ({"cer_threshold": float("inf")}, "cer_threshold"),
        ({"drop": 1.5}, "drop"),
        ({"drop": None}, "drop"),
        ({"price_pattern": "($"}, "price_pattern"),
        ({"wait_limit": 0}, "wait_limit"),
        ({"confirm": 0}, "confirm"),
    ],
)
def test_escalation_config_rejects_out_of_range(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        EscalationConfig(**kwargs)


def test_asks_once_for_a_stable_track_and_reuses_after() -> None:
    memory = EscalationMemory()
    first = memory.decide(7, edge("$3.99"))
    assert (first.action, first.reason) == (Action.ASK, AskReason.NEW)
    assert first.line == edge("$3.99")
    # Frames while the cloud is thinking: waited, not asked again.
    for _ in range(5):
        decision = memory.decide(7, edge("$3.99"))
        assert (decision.action, decision.reason) == (Action.WAIT, None)
        assert decision.line.source is Source.EDGE
    assert memory.answered(7, first.line, cloud("$3.49"))
    for x in range(100):
        decision = memory.decide(7, edge("$3.99", 0.88, x=x))
        assert decision.action is Action.REUSE
        # The cloud's text and confidence, on this frame's box.
        assert decision.line == TextLine(box(x, 0), "$3.49", 0.99, Source.CLOUD)
    assert memory.asked == 1
    assert memory.asked_by_reason[AskReason.NEW] == 1
    assert memory.reused == 100
    assert memory.waited == 5


def test_asks_again_when_the_price_changes() -> None:
    memory = EscalationMemory(EscalationConfig(cer_threshold=0.5))
    asked = memory.decide(1, edge("Milk $3.99")).line
    memory.answered(1, asked, cloud("Milk $3.99"))
    # One character in ten: CER 0.1, under the threshold, but the price differs.
    decision = memory.decide(1, edge("Milk $3.89"))
    assert (decision.action, decision.reason) == (Action.ASK, AskReason.CHANGED)
    assert decision.line.text == "Milk $3.89"
    assert memory.asked_by_reason[AskReason.CHANGED] == 1


def test_a_change_must_last_confirm_decisions_before_asking() -> None:
    memory = EscalationMemory(EscalationConfig(confirm=2))
    asked = memory.decide(1, edge("$3.99")).line
    memory.answered(1, asked, cloud("$3.99"))
    # A noisy reader flipping between readings: never the same change twice in a row,
    # so the cloud's reading is held.
    for text in ("$3.89", "$3.99", "$8.99", "$3.89", "$3.99"):
        decision = memory.decide(1, edge(text))
        assert (decision.action, decision.line.text) == (Action.REUSE, "$3.99")
    # A real new price reads the same twice: asked about on the second.
    assert memory.decide(1, edge("$4.19")).action is Action.REUSE
    decision = memory.decide(1, edge("$4.19"))
    assert (decision.action, decision.reason) == (Action.ASK, AskReason.CHANGED)
    assert memory.asked == 2


def test_a_confidence_drop_must_last_confirm_decisions() -> None:
    memory = EscalationMemory(EscalationConfig(confirm=3, drop=0.1))
    asked = memory.decide(1, edge("$3.99", 0.8)).line
    memory.answered(1, asked, cloud("$3.99"))
    actions = [memory.decide(1, edge("$3.99", c)).action for c in (0.5, 0.5, 0.8, 0.5, 0.5, 0.5)]
    assert actions == [Action.REUSE] * 5 + [Action.ASK]


def test_small_change_outside_the_price_is_reused() -> None:
    memory = EscalationMemory(EscalationConfig(cer_threshold=0.2))
    asked = memory.decide(1, edge("Whole milk $3.99")).line
    memory.answered(1, asked, cloud("Whole milk $3.99"))
    assert memory.decide(1, edge("Whole milk $3.99")).action is Action.REUSE
    assert memory.decide(1, edge("Whale milk $3.99")).action is Action.REUSE  # CER 1/16
    decision = memory.decide(1, edge("Oat drink $3.99"))  # CER well above 0.2
    assert (decision.action, decision.reason) == (Action.ASK, AskReason.CHANGED)


def test_price_appearing_or_vanishing_is_a_change() -> None:
    memory = EscalationMemory(EscalationConfig(cer_threshold=1.0))
    asked = memory.decide(1, edge("3.99")).line
    memory.answered(1, asked, cloud("$3.99"))
    assert memory.decide(1, edge("$3.99")).reason is AskReason.CHANGED


def test_asks_again_when_confidence_drops() -> None:
    memory = EscalationMemory(EscalationConfig(drop=0.1))
    asked = memory.decide(3, edge("$1.25", 0.9)).line
    memory.answered(3, asked, cloud("$1.25"))
    assert memory.decide(3, edge("$1.25", 0.85)).action is Action.REUSE  # dropped 0.05
    assert memory.decide(3, edge("$1.25", 0.99)).action is Action.REUSE  # rose
    decision = memory.decide(3, edge("$1.25", 0.7))  # dropped 0.2
    assert (decision.action, decision.reason) == (Action.ASK, AskReason.CONFIDENCE_DROP)
    # The answer to that ask becomes the new baseline: 0.7 is no longer a drop.
    memory.answered(3, decision.line, cloud("$1.25"))
    assert memory.decide(3, edge("$1.25", 0.7)).action is Action.REUSE
    assert memory.asked_by_reason == {
        AskReason.NEW: 1,
        AskReason.CHANGED: 0,
        AskReason.CONFIDENCE_DROP: 1,
        AskReason.UNANSWERED: 0,
    }


def test_change_while_waiting_asks_again() -> None:
    memory = EscalationMemory()
    first = memory.decide(1, edge("$2.00")).line
    assert memory.decide(1, edge("$2.00")).action is Action.WAIT
    second = memory.decide(1, edge("$2.50"))
    assert (second.action, second.reason) == (Action.ASK, AskReason.NEW)
    # The late answer to the first ask is kept; the second ask stays pending.
    memory.answered(1, first, cloud("$2.00"))
    assert memory.decide(1, edge("$2.50")).action is Action.WAIT
    memory.answered(1, second.line, cloud("$2.50"))
    reuse = memory.decide(1, edge("$2.50"))
    assert reuse.action is Action.REUSE
    assert reuse.line.text == "$2.50"


def test_unanswered_ask_is_asked_again() -> None:
    memory = EscalationMemory(EscalationConfig(wait_limit=2))
    memory.decide(1, edge("$5.00"))
    assert memory.decide(1, edge("$5.00")).action is Action.WAIT
    assert memory.decide(1, edge("$5.00")).action is Action.WAIT
    decision = memory.decide(1, edge("$5.00"))
    assert (decision.action, decision.reason) == (Action.ASK, AskReason.UNANSWERED)
    # Told the ask failed: the next reading is asked about at once.
    memory.unanswered(1)
    assert memory.decide(1, edge("$5.00")).reason is AskReason.NEW


@PROPERTY
@given(
    st.lists(st.sampled_from(["$1.99", "$1.99", "$1.99", "$2.49", "Milk $1.99"]), max_size=30),
    st.lists(st.floats(0.0, 1.0), min_size=30, max_size=30),
)
def test_memory_asks_only_on_new_changed_or_dropped(texts: list[str], confs: list[float]) -> None:
    # The cloud answers at once. Every ask has a reason that holds against the
    # reading it last answered; everything else is reused.
    memory = EscalationMemory(EscalationConfig(drop=0.2))
    answered: TextLine | None = None
    for text, conf in zip(texts, confs, strict=False):
        line = edge(text, conf)
        decision = memory.decide(5, line)
        if answered is None:
            assert decision.reason is AskReason.NEW
        elif memory.changed(answered.text, text):
            assert decision.reason is AskReason.CHANGED
        elif answered.confidence - conf > 0.2:
            assert decision.reason is AskReason.CONFIDENCE_DROP
        else:
            assert decision.action is Action.REUSE
            assert decision.line.text == answered.text
            continue
        memory.answered(5, line, cloud(text))
        answered = line
    assert memory.asked + memory.reused == len(texts)
    assert memory.waited == 0


def test_tracks_are_independent_and_forgotten() -> None:
    memory = EscalationMemory()
    a = memory.decide(1, edge("$1.00")).line
    b = memory.decide(2, edge("$1.00")).line
    assert memory.decide(2, edge("$1.00")).action is Action.WAIT
    memory.answered(1, a, cloud("$1.00"))
    memory.answered(2, b, cloud("$1.00"))
    assert memory.tracks == {1, 2}
    memory.forget([1, 99])
    assert memory.tracks == {2}
    assert not memory.answered(1, a, cloud("$1.00"))  # late answer for a dead track
    assert memory.tracks == {2}
    assert memory.decide(2, edge("$1.00")).action is Action.REUSE


def test_tracker_and_memory_together() -> None:
    # A label seen in 50 frames, then a second one: each is asked about once.
    tracker = Tracker(TrackerConfig(min_hits=2, max_age=3))
    memory = EscalationMemory()
    asks = 0
    for t in range(60):
        lines = [edge("$4.99", x=100)] + ([edge("$0.99", x=300)] if t >= 50 else [])
        ids = tracker.update([line.box for line in lines], [0.9] * len(lines), t)
        memory.forget(tracker.ended)
        for track_id, line in zip(ids, lines, strict=True):
            if track_id is None:
                continue
            decision = memory.decide(track_id, line)
            if decision.action is Action.ASK:
                asks += 1
                memory.answered(track_id, line, cloud(line.text))
    assert asks == 2
    assert memory.reused == (60 - 1 - 1) + (10 - 1 - 1)
