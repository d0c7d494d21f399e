"""The rate gate: which frames a camera sends, and when, counted on a simulated clock."""

from __future__ import annotations

from pipeline.camera.sources.pacing import Pacer

FPS = 25


def play(pacer: Pacer, times: list[float | None], now: float = 100.0) -> list[float | None]:
    """Admit each frame at ``now`` (no time passes while deciding)."""
    return [pacer.admit(t, now) for t in times]


def sent(decisions: list[float | None]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d is not None]


def stream(frames: int, start: float = 0.0) -> list[float | None]:
    return [start + i / FPS for i in range(frames)]


def test_a_rate_at_or_over_the_stream_rate_sends_every_frame() -> None:
    for rate in (25.0, 30.0, 1000.0):
        pacer = Pacer(rate, live=False, realtime=False)
        assert sent(play(pacer, stream(50))) == list(range(50))


def test_a_lower_rate_sends_the_first_frame_of_each_interval() -> None:
    pacer = Pacer(5.0, live=False, realtime=False)
    assert sent(play(pacer, stream(50))) == list(range(0, 50, 5))
    pacer = Pacer(10.0, live=False, realtime=False)
    assert len(sent(play(pacer, stream(50)))) == 20


def test_timestamps_that_do_not_start_at_zero() -> None:
    pacer = Pacer(5.0, live=True, realtime=False)
    assert sent(play(pacer, stream(50, start=1.4))) == list(range(0, 50, 5))


def test_a_live_burst_counts_the_moments_its_frames_show() -> None:
    # Frames that arrive at once after a stall are still 40 ms apart in the stream.
    pacer = Pacer(25.0, live=True, realtime=False)
    assert play(pacer, stream(10)) == [0.0] * 10


def test_realtime_waits_until_each_frame_is_due() -> None:
    pacer = Pacer(5.0, live=False, realtime=True)
    clock, sent_at = 50.0, []
    for t in stream(50):
        wait = pacer.admit(t, clock)
        if wait is not None:
            clock += wait  # the caller waits, then sends
            sent_at.append(round(clock - 50.0, 6))
    assert sent_at == [round(0.2 * i, 6) for i in range(10)]


def test_realtime_does_not_wait_for_a_frame_already_late() -> None:
    pacer = Pacer(25.0, live=False, realtime=True)
    assert pacer.admit(0.0, 10.0) == 0.0
    assert pacer.admit(0.04, 10.5) == 0.0  # decoded after its time


def test_a_live_source_never_waits() -> None:
    pacer = Pacer(25.0, live=True, realtime=True)
    assert play(pacer, stream(5)) == [0.0] * 5


def test_a_new_pass_continues_after_the_last() -> None:
    pacer = Pacer(5.0, live=False, realtime=False)
    first = sent(play(pacer, stream(50)))
    pacer.new_pass()
    second = sent(play(pacer, stream(50)))
    # 2 s of video at 5 a second, twice: the second pass starts one frame after the
    # first ended and keeps the same spacing.
    assert first == second == list(range(0, 50, 5))


def test_timestamps_going_back_start_a_new_pass() -> None:
    pacer = Pacer(25.0, live=True, realtime=False)
    assert sent(play(pacer, [*stream(5, start=9.0), *stream(5)])) == list(range(10))


def test_without_timestamps_a_recorded_source_sends_one_frame_per_interval() -> None:
    pacer = Pacer(5.0, live=False, realtime=False)
    assert sent(play(pacer, [None] * 6)) == list(range(6))


def test_without_timestamps_a_live_source_is_timed_by_the_clock() -> None:
    pacer = Pacer(5.0, live=True, realtime=False)
    decisions = [pacer.admit(None, 100.0 + i / FPS) for i in range(50)]
    assert len(sent(decisions)) == 10
