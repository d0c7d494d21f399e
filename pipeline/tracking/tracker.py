"""A light multi-object tracker for one camera: which box of a frame is which thing.

Pure, no I/O: ``Tracker.update`` takes one frame's boxes and their confidences and
gives back the track id of each box. One ``Tracker`` per camera.

How a frame is associated with the live tracks (ByteTrack, Zhang et al. 2022, without
its Kalman filter):

1. Each track predicts where its box is now, at constant velocity: its last matched
   box moved by its velocity (pixels per frame, for x, y, w and h) times the frames
   since that match. The velocity is measured between consecutive matches and
   smoothed by ``velocity_weight`` (an exponential moving average).
2. High-confidence boxes (``confidence >= high_threshold``) are matched to the
   confirmed tracks, seen or lost, by IoU of box and prediction >= ``match_iou``.
3. Low-confidence boxes (``low_threshold <= confidence < high_threshold``: blurred,
   occluded) are matched to the confirmed tracks still unmatched, by IoU >=
   ``low_match_iou``. They keep a track alive but never start one.
4. The high-confidence boxes left are matched to the tentative tracks (IoU >=
   ``match_iou``); those still left start new tentative tracks.

Every match is one-to-one and greedy: highest IoU first, ties in index order, so the
same input always gives the same ids. Boxes under ``low_threshold`` are ignored.

A track is tentative until it has been matched in ``min_hits`` consecutive updates
(counting the one that started it); a tentative track that misses an update is
dropped. On confirmation it gets its id: the next integer of a counter that starts
at 1 and only grows, so an id is never given to another track. A confirmed track
unmatched in an update ``max_age`` + 1 or more frames after its last match dies (it
may miss up to ``max_age`` frames and be found again); its id is then listed in
``Tracker.ended`` for that update and never returned again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.inference.agreement import iou, match_boxes
from schemas.errors import ConfigError
from schemas.messages import Region

__all__ = ["Tracker", "TrackerConfig"]

# A box as the tracker keeps it: x, y, w, h in (fractional) pixels.
_Box = tuple[float, float, float, float]


def _unit(name: str, value: float, *, open_low: bool = False) -> None:
    """ConfigError unless ``value`` is a real number in [0, 1] (or (0, 1])."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    low_ok = value > 0 if open_low else value >= 0
    if not (low_ok and value <= 1):
        interval = "(0, 1]" if open_low else "[0, 1]"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}")


def _count(name: str, value: int, minimum: int) -> None:
    """ConfigError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """How a ``Tracker`` associates boxes; checked on construction (ConfigError,
    a ValueError, naming the field).

    ``high_threshold``/``low_threshold``: the confidences that split boxes into high,
    low and ignored, 0 <= low <= high <= 1. ``match_iou``/``low_match_iou``: the least
    IoU of a box with a track's prediction for a match in the high and low stages, in
    (0, 1]. ``min_hits`` >= 1: consecutive matches that confirm a track (1: at once).
    ``max_age`` >= 0: frames a confirmed track may go unmatched and live.
    ``velocity_weight`` in [0, 1]: the weight of the newest velocity measurement
    against the track's running velocity, which starts at the first measurement (1:
    the last two matches only; 0: no motion model, a track predicts its last box).
    """

    high_threshold: float = 0.5
    low_threshold: float = 0.1
    match_iou: float = 0.3
    low_match_iou: float = 0.5
    min_hits: int = 3
    max_age: int = 30
    velocity_weight: float = 0.5

    def __post_init__(self) -> None:
        _unit("high_threshold", self.high_threshold)
        _unit("low_threshold", self.low_threshold)
        if self.low_threshold > self.high_threshold:
            raise ConfigError(
                f"low_threshold ({self.low_threshold}) must not exceed "
                f"high_threshold ({self.high_threshold})"
            )
        _unit("match_iou", self.match_iou, open_low=True)
        _unit("low_match_iou", self.low_match_iou, open_low=True)
        _count("min_hits", self.min_hits, 1)
        _count("max_age", self.max_age, 0)
        _unit("velocity_weight", self.velocity_weight)


class _Track:
    """One track's state. ``track_id`` is None while tentative."""

    __slots__ = ("box", "hits", "last_frame", "matched", "predicted", "track_id", "velocity")

    def __init__(self, box: _Box, frame_index: int) -> None:
        self.box = box
        self.velocity: _Box | None = None  # unknown until the second match
        self.last_frame = frame_index
        self.hits = 1
        self.track_id: int | None = None
        # Scratch of one update: the predicted box, and whether a box was matched.
        self.predicted = Region(0, 0, 0, 0)
        self.matched = False

    def predict(self, frame_index: int) -> Region:
        """The box expected at ``frame_index``, at constant velocity."""
        x, y, w, h = self.box
        if self.velocity is not None:
            steps = frame_index - self.last_frame
            vx, vy, vw, vh = self.velocity
            x, y, w, h = x + vx * steps, y + vy * steps, w + vw * steps, h + vh * steps
        return Region(round(x), round(y), max(0, round(w)), max(0, round(h)))

    def match(self, box: _Box, frame_index: int, weight: float) -> None:
        """Take ``box`` as this track's box at ``frame_index``."""
        steps = frame_index - self.last_frame
        measured = tuple((new - old) / steps for new, old in zip(box, self.box, strict=True))
        if weight == 0:
            pass  # no motion model: the prediction is the last box
        elif self.velocity is None:
            self.velocity = (measured[0], measured[1], measured[2], measured[3])
        else:
            v = tuple(
                weight * m + (1 - weight) * old
                for m, old in zip(measured, self.velocity, strict=True)
            )
            self.velocity = (v[0], v[1], v[2], v[3])
        self.box = box
        self.last_frame = frame_index
        self.hits += 1


def _greedy(
    tracks: Sequence[_Track],
    candidates: Sequence[int],
    boxes: Sequence[Region],
    threshold: float,
    assigned: dict[int, _Track],
) -> None:
    """Match the unmatched ``tracks`` one-to-one with the boxes at ``candidates`` not
    yet ``assigned``, by IoU of box and the track's prediction >= ``threshold``,
    highest first, ties in (track, box) order; record each match in ``assigned``
    (box index -> track) and on the track."""
    pairs = sorted(
        (-overlap, t, b)
        for t, track in enumerate(tracks)
        if not track.matched
        for b in candidates
        if b not in assigned and (overlap := iou(track.predicted, boxes[b])) >= threshold
    )
    for _, t, b in pairs:
        track = tracks[t]
        if not track.matched and b not in assigned:
            track.matched = True
            assigned[b] = track


class Tracker:
    """Track ids for the boxes of one camera's frames (see the module docstring).

    ``update`` is called once per frame, with strictly increasing frame indices (gaps
    are skipped frames). Not thread-safe: one caller per camera.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._confirmed: list[_Track] = []
        self._tentative: list[_Track] = []
        self._next_id = 1
        self._frame: int | None = None
        self._ended: tuple[int, ...] = ()

    @property
    def ended(self) -> tuple[int, ...]:
        """The ids of the tracks that died in the latest ``update``, in id order."""
        return self._ended

    @property
    def live_ids(self) -> tuple[int, ...]:
        """The ids of the confirmed tracks alive now (seen or lost), in id order."""
        return tuple(sorted(t.track_id for t in self._confirmed if t.track_id is not None))

    def update(
        self, boxes: Sequence[Region], confidences: Sequence[float], frame_index: int
    ) -> list[int | None]:
        """Associate one frame's ``boxes`` (with their ``confidences``, in [0, 1]) with
        the tracks, and return the track id of each box, in order: None for a box of a
        tentative track or an unmatched low-confidence or ignored box.

        ValueError if the lengths differ, a confidence is outside [0, 1] or
        ``frame_index`` is not greater than the previous one.
        """
        if len(boxes) != len(confidences):
            raise ValueError(f"{len(boxes)} boxes but {len(confidences)} confidences")
        for c in confidences:
            if not (isinstance(c, int | float) and math.isfinite(c) and 0 <= c <= 1):
                raise ValueError(f"confidences must be in [0, 1], got {c!r}")
        if isinstance(frame_index, bool) or not isinstance(frame_index, int):
            raise ValueError(f"frame_index must be an integer, got {frame_index!r}")
        if self._frame is not None and frame_index <= self._frame:
            raise ValueError(f"frame_index must increase: got {frame_index} after {self._frame}")
        self._frame = frame_index
        cfg = self.config

        # Tracks that missed more than max_age frames before this one die unmatched.
        self._confirmed, ended = self._expire(frame_index - 1)
        for track in self._confirmed + self._tentative:
            track.predicted = track.predict(frame_index)
            track.matched = False
        high = [i for i, c in enumerate(confidences) if c >= cfg.high_threshold]
        low = [i for i, c in enumerate(confidences) if cfg.low_threshold <= c < cfg.high_threshold]
        assigned: dict[int, _Track] = {}  # box index -> its track

        # Stage 1: high boxes to confirmed tracks. Stage 2: low boxes to the confirmed
        # tracks left. Stage 3: the high boxes left to tentative tracks.
        _greedy(self._confirmed, high, boxes, cfg.match_iou, assigned)
        _greedy(self._confirmed, low, boxes, cfg.low_match_iou, assigned)
        _greedy(self._tentative, high, boxes, cfg.match_iou, assigned)
        for b, track in assigned.items():
            track.match(_as_box(boxes[b]), frame_index, cfg.velocity_weight)

        # Tentative tracks: confirm, keep, or drop when they missed this update.
        still_tentative: list[_Track] = []
        for track in self._tentative:
            if not track.matched:
                continue
            if track.hits >= cfg.min_hits:
                self._confirm(track)
            else:
                still_tentative.append(track)
        # Stage 4: the high boxes no track took start tracks.
        for b in high:
            if b not in assigned:
                track = _Track(_as_box(boxes[b]), frame_index)
                assigned[b] = track
                if cfg.min_hits <= 1:
                    self._confirm(track)
                else:
                    still_tentative.append(track)
        self._tentative = still_tentative

        # Confirmed tracks unmatched for more than max_age frames, this one included, die.
        self._confirmed, ended_now = self._expire(frame_index)
        self._ended = tuple(sorted(ended + ended_now))

        return [assigned[b].track_id if b in assigned else None for b in range(len(boxes))]

    def lookup(self, boxes: Sequence[Region]) -> list[int | None]:
        """The id of the confirmed track each box matches now, by IoU with the track's
        latest box >= ``match_iou`` (one-to-one, highest first, ties in (track, box)
        order), None for a box that matches none; changes nothing. For a frame older
        than the latest ``update`` (answered out of order), which ``update`` refuses."""
        tracks = [_as_region(track.box) for track in self._confirmed]
        ids: list[int | None] = [None] * len(boxes)
        for t, b in match_boxes(tracks, boxes, self.config.match_iou):
            ids[b] = self._confirmed[t].track_id
        return ids

    def _expire(self, frame_index: int) -> tuple[list[_Track], list[int]]:
        """The confirmed tracks still alive at ``frame_index``, and the ids of those
        unmatched for more than ``max_age`` frames up to it."""
        alive: list[_Track] = []
        ended: list[int] = []
        for track in self._confirmed:
            if frame_index - track.last_frame > self.config.max_age:
                assert track.track_id is not None
                ended.append(track.track_id)
            else:
                alive.append(track)
        return alive, ended

    def _confirm(self, track: _Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1
        self._confirmed.append(track)


def _as_region(box: _Box) -> Region:
    x, y, w, h = box
    return Region(round(x), round(y), max(0, round(w)), max(0, round(h)))


def _as_box(region: Region) -> _Box:
    return (float(region.x), float(region.y), float(region.w), float(region.h))
