"""What a repeated frame id means: one frame, one final result, however often it is sent.

Pure bookkeeping, one per edge worker. A frame id is *in flight* from the moment its
frame is accepted until its final result is published, then *finished* for as long as
the last ``remember`` finished ids are kept. A frame that arrives with an id already
known is a **repeat**, and is never answered a second time:

* a repeat of a frame in flight joins it: a requester (``infer.<site>`` with a reply
  inbox) gets the same final result when it is published; ``results.<site>.<camera>``
  still carries it once;
* a repeat of a finished frame gets the stored final result again (requesters only);
* a repeat with nobody to answer (a camera on ``frames.<site>.<camera>``) is
  dead-lettered with the reason, so it is visible and counted.

docs/wire-format.md ("Frame ids and repeats") states the rule for clients.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["FrameIds", "Joiner", "Seen"]

R = TypeVar("R")  # a final result


class Seen(enum.Enum):
    """What a frame id is when a frame carrying it arrives."""

    NEW = "new"
    IN_FLIGHT = "in_flight"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class Joiner:
    """A requester waiting for the final result of a frame already in flight."""

    reply_to: str
    accept: str | None


class FrameIds(Generic[R]):
    """Frame ids in flight (with their joiners) and the last ``remember`` finished ones."""

    __slots__ = ("_finished", "_in_flight", "_remember")

    def __init__(self, remember: int) -> None:
        if remember < 0:
            raise ValueError(f"remember must be >= 0, got {remember}")
        self._remember = remember
        self._in_flight: dict[str, list[Joiner]] = {}
        self._finished: OrderedDict[str, R] = OrderedDict()  # oldest first

    def admit(self, frame_id: str) -> tuple[Seen, R | None]:
        """Classify ``frame_id``; a new one is in flight from now on.

        Returns the stored final result for a finished id, None otherwise.
        """
        if frame_id in self._in_flight:
            return Seen.IN_FLIGHT, None
        stored = self._finished.get(frame_id)
        if stored is not None:
            return Seen.FINISHED, stored
        self._in_flight[frame_id] = []
        return Seen.NEW, None

    def join(self, frame_id: str, joiner: Joiner) -> None:
        """Have ``joiner`` answered with the final result of ``frame_id`` (in flight)."""
        joiners = self._in_flight.get(frame_id)
        if joiners is None:
            raise KeyError(f"frame {frame_id!r} is not in flight")
        joiners.append(joiner)

    def finish(self, frame_id: str, result: R) -> list[Joiner]:
        """``frame_id`` has its final result: remember it, and return who joined it."""
        joiners = self._in_flight.pop(frame_id, [])
        if self._remember:
            self._finished[frame_id] = result
            self._finished.move_to_end(frame_id)
            while len(self._finished) > self._remember:
                self._finished.popitem(last=False)
        return joiners

    def forget(self, frame_id: str) -> list[Joiner]:
        """``frame_id`` ends without a result (dead-lettered): no longer in flight."""
        return self._in_flight.pop(frame_id, [])

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._in_flight or frame_id in self._finished
