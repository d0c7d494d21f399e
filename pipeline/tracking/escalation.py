"""Escalate a tracked text line to the cloud once, and reuse the cloud's reading after.

Pure, no I/O. A shelf camera sees the same price label in hundreds of frames; the
tracker (``pipeline.tracking.tracker``) gives it one track id across them. For each
frame's edge reading of a tracked line, ``EscalationMemory.decide`` says what to do:

* ``ASK`` the cloud, for one of the ``AskReason`` reasons: the cloud never answered
  for the track (``new``); the edge's reading changed since the reading the cloud
  answered (``changed``); the edge's confidence dropped by more than
  ``EscalationConfig.drop`` below its confidence then (``confidence_drop``); or an
  earlier ask went unanswered for ``wait_limit`` decisions (``unanswered``).
* ``REUSE`` the cloud's earlier reading: its text and confidence, with source
  ``cloud``, on this frame's box.
* ``WAIT``: the cloud has already been asked about this very reading and has not
  answered yet; answer with the edge's reading meanwhile, and do not ask again.

"Changed" compares two edge readings: if either holds a price (``price_pattern``,
``$<digits>.<two digits>``) and the prices found differ, any difference counts;
otherwise the reading changed when the character error rate of the new text against
the old is above ``cer_threshold``.

A noisy reader's reading of a hard line flips from frame to frame. With ``confirm``
above 1, a change or a drop must be seen in that many decisions in a row (the same
new reading, for a change) before the cloud is asked again; until then the cloud's
reading is reused.

When the cloud's answer comes back, ``answered`` records it with the edge reading
that was asked about, the baseline the later readings are compared with. ``forget``
drops the tracks that died (``Tracker.ended``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from pipeline.inference.agreement import character_error_rate
from schemas.errors import ConfigError
from schemas.messages import Source, TextLine

__all__ = [
    "PRICE_PATTERN",
    "Action",
    "AskReason",
    "Decision",
    "EscalationConfig",
    "EscalationMemory",
]

PRICE_PATTERN = r"\$\d+\.\d\d"


class Action(StrEnum):
    """What to do with one frame's edge reading of a tracked line."""

    ASK = "ask"  # send it to the cloud
    REUSE = "reuse"  # answer with the cloud's earlier reading
    WAIT = "wait"  # the cloud was asked about this reading already; edge answer for now


class AskReason(StrEnum):
    """Why a reading is sent to the cloud."""

    NEW = "new"  # the cloud never answered for this track
    CHANGED = "changed"  # the edge's reading differs from the one the cloud answered
    CONFIDENCE_DROP = "confidence_drop"  # the edge is less sure than when the cloud answered
    UNANSWERED = "unanswered"  # the earlier ask waited ``wait_limit`` decisions unanswered


@dataclass(frozen=True, slots=True)
class EscalationConfig:
    """When a tracked reading goes to the cloud again; checked on construction
    (ConfigError, a ValueError, naming the field).

    ``cer_threshold`` >= 0: a character error rate above it is a changed reading.
    ``drop`` in [0, 1]: a fall in the edge's confidence by more than this asks again.
    ``price_pattern``: a regular expression; readings whose matches differ changed,
    whatever their CER. ``wait_limit`` >= 1: decisions to wait for an answer before
    asking again. ``confirm`` >= 1: decisions in a row a change or drop must last.
    """

    cer_threshold: float = 0.2
    drop: float = 0.15
    price_pattern: str = PRICE_PATTERN
    wait_limit: int = 30
    confirm: int = 1

    def __post_init__(self) -> None:
        for name, value in (("cer_threshold", self.cer_threshold), ("drop", self.drop)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(self.cer_threshold) and self.cer_threshold >= 0):
            raise ConfigError(f"cer_threshold must be a number >= 0, got {self.cer_threshold!r}")
        if not 0 <= self.drop <= 1:
            raise ConfigError(f"drop must be in [0, 1], got {self.drop!r}")
        if not isinstance(self.price_pattern, str):
            raise ConfigError(f"price_pattern must be a string, got {self.price_pattern!r}")
        try:
            re.compile(self.price_pattern)
        except re.error as e:
            raise ConfigError(f"price_pattern is not a regular expression: {e}") from None
        for name, count in (("wait_limit", self.wait_limit), ("confirm", self.confirm)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {count!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one reading: ``action``, the ``reason`` when it is ``ASK``
    (None otherwise), and ``line``, the answer to give for this frame now: the
    cloud's reading on the edge's box for ``REUSE``, the edge's line otherwise."""

    action: Action
    reason: AskReason | None
    line: TextLine


@dataclass(slots=True)
class _TrackState:
    baseline: TextLine | None = None  # the edge reading the cloud answered
    answer: TextLine | None = None  # the cloud's reading of it
    pending: TextLine | None = None  # the edge reading asked about, unanswered yet
    waited: int = 0  # decisions waited on ``pending``
    differing: TextLine | None = None  # the latest reading that differed from baseline
    streak: int = 0  # decisions in a row that differed so (the same way, for a change)


class EscalationMemory:
    """Per track: the cloud's last reading, and whether to ask the cloud again.

    Not thread-safe; one per camera (track ids are per tracker).
    """

    def __init__(self, config: EscalationConfig | None = None) -> None:
        self.config = config if config is not None else EscalationConfig()
        self._price = re.compile(self.config.price_pattern)
        self._tracks: dict[int, _TrackState] = {}
        self._asked = dict.fromkeys(AskReason, 0)
        self._reused = 0
        self._waited = 0

    @property
    def asked(self) -> int:
        """How many readings were sent to the cloud."""
        return sum(self._asked.values())

    @property
    def asked_by_reason(self) -> Mapping[AskReason, int]:
        """``asked``, split by reason (every reason listed, 0 when unused)."""
        return MappingProxyType(dict(self._asked))

    @property
    def reused(self) -> int:
        """How many readings were answered with the cloud's earlier reading."""
        return self._reused

    @property
    def waited(self) -> int:
        """How many readings waited for an answer already asked for."""
        return self._waited

    @property
    def tracks(self) -> frozenset[int]:
        """The track ids the memory holds."""
        return frozenset(self._tracks)

    def changed(self, before: str, after: str) -> bool:
        """Whether the edge's reading ``after`` differs from ``before`` (see the module
        docstring): prices found differ, or the CER is above ``cer_threshold``."""
        prices_before = self._price.findall(before)
        prices_after = self._price.findall(after)
        if (prices_before or prices_after) and prices_before != prices_after:
            return True
        return character_error_rate(before, after) > self.config.cer_threshold

    def _same(self, line: TextLine, reference: TextLine) -> AskReason | None:
        """None when ``line`` reads as ``reference`` did, at about its confidence;
        else the reason it does not."""
        if self.changed(reference.text, line.text):
            return AskReason.CHANGED
        if reference.confidence - line.confidence > self.config.drop:
            return AskReason.CONFIDENCE_DROP
        return None

    def decide(self, track_id: int, line: TextLine) -> Decision:
        """What to do with the edge's reading ``line`` of track ``track_id``: ask the
        cloud (which marks the reading as asked about), reuse the cloud's reading, or
        wait for an answer already asked for. Counted in ``asked``/``reused``/``waited``."""
        state = self._tracks.setdefault(track_id, _TrackState())
        if state.answer is not None and state.baseline is not None:
            reason = self._same(line, state.baseline)
            if reason is None or not self._confirmed(state, line, reason):
                if reason is None:
                    state.differing, state.streak = None, 0
                self._reused += 1
                reading = replace(state.answer, box=line.box, source=Source.CLOUD)
                return Decision(Action.REUSE, None, reading)
        else:
            reason = AskReason.NEW
        if state.pending is not None and self._same(line, state.pending) is None:
            if state.waited < self.config.wait_limit:
                state.waited += 1
                self._waited += 1
                return Decision(Action.WAIT, None, line)
            reason = AskReason.UNANSWERED
        state.pending = line
        state.waited = 0
        self._asked[reason] += 1
        return Decision(Action.ASK, reason, line)

    def _confirmed(self, state: _TrackState, line: TextLine, reason: AskReason) -> bool:
        """Whether ``line``'s difference from the baseline (``reason``) has lasted
        ``confirm`` decisions in a row: a change must read the same each time."""
        before = state.differing
        same_way = before is not None and (
            reason is not AskReason.CHANGED or not self.changed(before.text, line.text)
        )
        state.streak = state.streak + 1 if same_way else 1
        state.differing = line
        if state.streak < self.config.confirm:
            return False
        state.differing, state.streak = None, 0
        return True

    def answered(self, track_id: int, asked: TextLine, cloud: TextLine) -> bool:
        """Record ``cloud``, the cloud's reading of the edge's reading ``asked`` of
        track ``track_id``; ``asked`` becomes the baseline later readings are compared
        with. An answer to an older ask than the one pending is recorded too, and the
        newer ask stays pending. False, and nothing recorded, for a track the memory
        does not hold (never decided on, or forgotten)."""
        state = self._tracks.get(track_id)
        if state is None:
            return False
        state.baseline = asked
        state.answer = cloud
        if state.pending == asked:
            state.pending = None
            state.waited = 0
        return True

    def unanswered(self, track_id: int) -> None:
        """The ask pending for ``track_id`` will not be answered (timed out, failed):
        the next reading of the track is asked about again, not waited on."""
        state = self._tracks.get(track_id)
        if state is not None:
            state.pending = None
            state.waited = 0

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop what is held for ``track_ids`` (the tracks that died); unknown ids are
        ignored."""
        for track_id in track_ids:
            self._tracks.pop(track_id, None)
