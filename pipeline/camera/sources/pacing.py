"""Which decoded frames a camera sends to hold its rate, and when each is due.

A frame is sent when it is the first in a new ``1 / rate_hz`` interval of media time:
the stream's own timestamps, so a burst of frames that a live stream delivers late
still counts as the moments they show. Without timestamps, a live source's frames are
timed by the clock and a recorded one's at one frame per interval. Each pass over a
source (a reopened stream, a file played again with ``loop``) continues media time
from the end of the last pass, and so does a stream whose timestamps go backwards.

A recorded source played in real time waits until each sent frame's time has come;
a live one, and a recorded one played as fast as possible, never waits.

Pure: the caller reads the clock and waits.
"""

from __future__ import annotations

import math

__all__ = ["Pacer"]

# Timestamps are binary fractions: 5 / 25 * 5 may come out just under 1.
_EPSILON = 1e-6


class Pacer:
    """The rate gate of one camera."""

    def __init__(self, rate_hz: float, *, live: bool, realtime: bool) -> None:
        self._rate = rate_hz
        self._live = live
        self._realtime = realtime and not live
        self._last_tick: int | None = None
        self._origin: float | None = None  # the timestamp at media time 0 in this pass
        self._previous: float | None = None  # the last media time
        self._step = 1.0 / rate_hz  # the last interval between two frames
        self._last_now = 0.0
        self._anchor: tuple[float, float] | None = None  # (now, media) of the first frame

    def admit(self, time_s: float | None, now: float) -> float | None:
        """For a frame with timestamp ``time_s`` (seconds) decoded at ``now`` (monotonic
        seconds): None to skip it, else the seconds to wait before sending it."""
        media = self._media_time(time_s, now)
        tick = math.floor(media * self._rate + _EPSILON)
        if self._last_tick is not None and tick <= self._last_tick:
            return None
        self._last_tick = tick
        if not self._realtime:
            return 0.0
        if self._anchor is None:
            self._anchor = (now, media)
        start, start_media = self._anchor
        return max(0.0, start + (media - start_media) - now)

    def new_pass(self) -> None:
        """The source was opened again: its timestamps start over."""
        self._origin = None

    def _media_time(self, time_s: float | None, now: float) -> float:
        previous = self._previous
        following = 0.0 if previous is None else previous + self._step
        if time_s is None:
            if previous is None:
                media = 0.0
            else:
                media = previous + (now - self._last_now if self._live else 1.0 / self._rate)
        else:
            if self._origin is None or (previous is not None and time_s - self._origin < previous):
                self._origin = time_s - following
            media = time_s - self._origin
        if previous is not None and media > previous:
            self._step = media - previous
        self._previous, self._last_now = media, now
        return media
