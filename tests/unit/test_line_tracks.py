"""edge_worker/tracks.py: a tracked label is asked about once, its cloud reading reused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edge_worker.inference import Answered
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.tracks import LineTracks
from pipeline.inference.analysis import Analysis
from schemas.messages import InferenceResult, Region, Source, TextLine
from tests.unit.wire_samples import make_frame, make_result

PRICE = Region(100, 50, 60, 20)  # a line the edge is unsure of
NAME = Region(100, 20, 120, 16)  # a line it reads well
HIGH = 0.9


def answered(
    seq: int, *, price: str = "$3.49", confidence: float = 0.6, camera: str = "cam-1"
) -> Answered:
    lines = (
        TextLine(NAME, "COLA 12PK", 0.97, Source.EDGE),
        TextLine(PRICE, price, confidence, Source.EDGE),
    )
    unsure = tuple(line.box for line in lines if 0.25 <= line.confidence < HIGH)
    analysis = Analysis(
        confidence=min(line.confidence for line in lines),
        threshold=HIGH,
        lines=lines,
        asks=unsure,
    )
    frame = make_frame(
        frame_id=f"site1/{camera}:{seq:06d}",
        camera=camera,
        seq=seq,
        captured_at=1_700_000_000.0 + seq,
        regions=(),
    )
    return Answered(Request(frame, None), np.zeros((4, 4), np.uint8), analysis)


def cloud_answer(one: Answered, text: str = "$3.49") -> InferenceResult:
    line = TextLine(PRICE, text, 0.99, Source.CLOUD)
    return make_result(frame_id=one.request.frame.frame_id, lines=(line,), labels=())


def counted(metrics: EdgeMetrics, action: str, reason: str = "") -> float:
    return metrics.value(
        "hybridfleet_edge_tracked_lines_total", site="site1", action=action, reason=reason
    )


def test_a_label_is_asked_once_then_the_cloud_reading_is_reused() -> None:
    metrics = EdgeMetrics()
    tracks = LineTracks("site1", metrics)
    first = tracks.apply(answered(1))
    assert first.analysis.asks == (PRICE,)
    # Asked, not answered yet: the next frames wait instead of asking again.
    waiting = tracks.apply(answered(2))
    assert waiting.analysis.asks == ()
    assert waiting.analysis.lines[1].source is Source.EDGE
    tracks.answered(first.request.frame.frame_id, cloud_answer(first, "$3.48"))
    for seq in range(3, 40):
        later = tracks.apply(answered(seq))
        assert later.analysis.asks == ()
        price = later.analysis.lines[1]
        assert (price.text, price.source, price.box) == ("$3.48", Source.CLOUD, PRICE)
        # The frame is as sure as its least sure line, the cloud's reading now.
        assert later.analysis.confidence == 0.97
    assert counted(metrics, "ask", "new") == 1
    assert counted(metrics, "wait") == 1
    assert counted(metrics, "reuse") == 37


def test_a_changed_price_is_asked_about_again() -> None:
    tracks = LineTracks("site1", EdgeMetrics())
    first = tracks.apply(answered(1))
    tracks.answered(first.request.frame.frame_id, cloud_answer(first))
    assert tracks.apply(answered(2)).analysis.asks == ()
    # Read once, it may be the small reader's noise: the cloud's reading holds.
    assert tracks.apply(answered(3, price="$4.19")).analysis.asks == ()
    changed = tracks.apply(answered(4, price="$4.19"))
    assert changed.analysis.asks == (PRICE,)
    assert changed.analysis.lines[1].text == "$4.19"


def test_an_unanswered_ask_is_asked_again_not_waited_on() -> None:
    tracks = LineTracks("site1", EdgeMetrics())
    first = tracks.apply(answered(1))
    tracks.unanswered(first.request.frame.frame_id)
    assert tracks.apply(answered(2)).analysis.asks == (PRICE,)


def test_a_frame_behind_its_camera_is_looked_up_among_its_tracks() -> None:
    tracks = LineTracks("site1", EdgeMetrics())
    first = tracks.apply(answered(5))
    tracks.answered(first.request.frame.frame_id, cloud_answer(first))
    late = answered(4)
    # Captured before frame 5 (answered out of order): its price is the tracked label's.
    late = replace(late, request=Request(replace(late.request.frame, captured_at=1.7e9), None))
    assert tracks.apply(late).analysis.asks == ()
    assert tracks.apply(late).analysis.lines[1].source is Source.CLOUD


def test_a_line_no_track_holds_is_asked_about() -> None:
    metrics = EdgeMetrics()
    tracks = LineTracks("site1", metrics)
    tracks.apply(answered(5))
    late = answered(4)
    moved = replace(late.analysis.lines[1], box=Region(400, 300, 60, 20))
    analysis = replace(late.analysis, lines=(late.analysis.lines[0], moved), asks=(moved.box,))
    late = replace(
        late,
        analysis=analysis,
        request=Request(replace(late.request.frame, captured_at=1.7e9), None),
    )
    assert tracks.apply(late).analysis.asks == (moved.box,)
    assert counted(metrics, "untracked") == 1


def test_a_restarted_camera_starts_its_tracks_again() -> None:
    metrics = EdgeMetrics()
    tracks = LineTracks("site1", metrics)
    first = tracks.apply(answered(50))
    tracks.answered(first.request.frame.frame_id, cloud_answer(first))
    restarted = answered(0)
    frame = replace(restarted.request.frame, captured_at=1_700_000_100.0)
    assert tracks.apply(replace(restarted, request=Request(frame, None))).analysis.asks == (PRICE,)
    assert counted(metrics, "ask", "new") == 2


def test_cameras_are_tracked_apart() -> None:
    tracks = LineTracks("site1", EdgeMetrics())
    first = tracks.apply(answered(1, camera="cam-1"))
    tracks.answered(first.request.frame.frame_id, cloud_answer(first))
    assert tracks.apply(answered(2, camera="cam-2")).analysis.asks == (PRICE,)


def test_frames_without_text_pass_unchanged() -> None:
    tracks = LineTracks("site1", EdgeMetrics())
    one = answered(1)
    classified = replace(one, analysis=Analysis(confidence=0.5, asks=(PRICE,)))
    assert tracks.apply(classified) is classified
