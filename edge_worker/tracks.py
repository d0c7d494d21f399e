"""Text lines tracked across a camera's frames: the cloud asked about a label once.

A shelf camera sees the same price label in hundreds of frames. For a declared chain
that reads text, each answered frame passes through ``LineTracks.apply`` before its
decision (edge_worker/deciding.py): the camera's tracker (pipeline/tracking/tracker.py)
gives each line a track id, and for each line the edge is unsure of (its box is one of
the frame's asks) the track's escalation memory (pipeline/tracking/escalation.py) says

* ask: the box stays an ask, and which track it belongs to is remembered by frame id,
  so that the cloud's reading is recorded when it comes (``answered``) and forgotten
  when it does not (``unanswered``: timed out, not escalated, failed);
* reuse: the line becomes the cloud's earlier reading of the track (tier ``cloud``) on
  this frame's box, and is not asked about;
* wait: the cloud was asked about this reading already; the edge's reading stays and
  is not asked about again.

So a frame whose every unsure line is reused or waited on is not escalated at all.

Order: a tracker follows a camera's frames in order. A frame older than the newest one
its camera's tracker has seen (two batches answered out of order) only looks its lines
up among the tracks (``Tracker.lookup``), changing none. A camera whose sequence
number goes back while its capture time goes forward restarted: its tracks start
again. A line no track holds (new, or lost by the tracker) is asked about as without
tracks, and counted ``untracked``. Several edge workers of a site share a camera's frames (queue
group); each tracks the frames it gets.

Bounded: at most ``_MAX_CAMERAS`` cameras (the least recently seen forgotten) and
``_MAX_ASKED`` frames awaiting answers (the oldest forgotten). Runs on the event loop:
matching a frame's few dozen boxes takes microseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from edge_worker.inference import Answered
from edge_worker.metrics import EdgeMetrics
from pipeline.tracking.escalation import Action, EscalationConfig, EscalationMemory
from pipeline.tracking.tracker import Tracker, TrackerConfig
from schemas.messages import InferenceResult, Region, Source, TextLine

__all__ = ["LineTracks"]

_MAX_CAMERAS = 1024
_MAX_ASKED = 10_000
# Every line a text detector found is a detection: its box starts (or continues) a
# track at once, whatever the reader made of it. Labels stand still on a shaking
# camera: no motion model (a velocity would only learn the shake), and a loose overlap.
_TRACKER = TrackerConfig(min_hits=1, velocity_weight=0.0, match_iou=0.2)
# A small reader's reading of a hard line flips from frame to frame: only a change (or
# a drop in confidence) seen twice in a row is worth asking the cloud about again.
_ESCALATION = EscalationConfig(confirm=2)


@dataclass(slots=True)
class _Camera:
    """One camera's tracks and what the cloud said about them."""

    tracker: Tracker
    memory: EscalationMemory
    seq: int
    captured_at: float


@dataclass(frozen=True, slots=True)
class _Asked:
    """A line sent to the cloud: its camera, track and the edge's reading of it."""

    camera: str
    track_id: int
    line: TextLine


class LineTracks:
    """Tracks of the text lines of every camera one edge worker sees."""

    def __init__(self, site: str, metrics: EdgeMetrics, config: EscalationConfig | None = None):
        self._site = site
        self._metrics = metrics
        self._config = config if config is not None else _ESCALATION
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()
        self._asked: OrderedDict[str, tuple[_Asked, ...]] = OrderedDict()

    def apply(self, one: Answered) -> Answered:
        """``one`` with its unsure lines decided by their tracks (see the module doc)."""
        analysis = one.analysis
        if not analysis.lines or analysis.threshold is None:
            return one
        frame = one.request.frame
        camera, late = self._camera(frame.camera, frame.seq, frame.captured_at)
        unsure = set(analysis.asks)
        boxes = [line.box for line in analysis.lines]
        if late:
            ids = camera.tracker.lookup(boxes)
        else:
            ids = camera.tracker.update(boxes, [1.0] * len(boxes), frame.seq)
            camera.memory.forget(camera.tracker.ended)
        lines: list[TextLine] = []
        settled: set[Region] = set()  # unsure boxes no longer asked about
        asked: list[_Asked] = []
        for line, track_id in zip(analysis.lines, ids, strict=True):
            if line.box not in unsure or track_id is None:
                if line.box in unsure:
                    self._count("untracked")
                lines.append(line)
                continue
            decision = camera.memory.decide(track_id, line)
            reason = decision.reason.value if decision.reason is not None else ""
            self._count(decision.action.value, reason=reason)
            if decision.action is Action.ASK:
                asked.append(_Asked(frame.camera, track_id, line))
            else:
                settled.add(line.box)
            lines.append(decision.line)
        if asked:
            self._remember(frame.frame_id, tuple(asked))
        if not settled:
            return one
        high = analysis.threshold
        items = [(d.box, d.score) for d in analysis.detections]
        items += [(line.box, line.confidence) for line in lines]
        confidence = min((c for box, c in items if box in unsure or c >= high), default=1.0)
        return replace(
            one,
            analysis=replace(
                analysis,
                lines=tuple(lines),
                asks=tuple(box for box in analysis.asks if box not in settled),
                confidence=confidence,
            ),
        )

    def answered(self, frame_id: str, cloud: InferenceResult) -> None:
        """The cloud answered ``frame_id``: its readings of the lines asked about are
        what those tracks reuse; a line it did not read is asked about again."""
        asked = self._asked.pop(frame_id, ())
        read = {line.box: line for line in cloud.lines if line.source is Source.CLOUD}
        for a in asked:
            camera = self._cameras.get(a.camera)
            if camera is None:
                continue
            reading = read.get(a.line.box)
            if reading is None:
                camera.memory.unanswered(a.track_id)
            else:
                camera.memory.answered(a.track_id, a.line, reading)

    def unanswered(self, frame_id: str) -> None:
        """``frame_id`` was not escalated, or its answer will not come: its lines are
        asked about again next time, not waited on."""
        for a in self._asked.pop(frame_id, ()):
            camera = self._cameras.get(a.camera)
            if camera is not None:
                camera.memory.unanswered(a.track_id)

    def _camera(self, name: str, seq: int, captured_at: float) -> tuple[_Camera, bool]:
        """The camera's state, ready for frame ``seq``, and whether the frame is older
        than one already tracked (late)."""
        camera = self._cameras.get(name)
        if camera is not None and seq <= camera.seq and captured_at > camera.captured_at:
            camera = None  # the camera restarted: its sequence began again
        elif camera is not None and seq <= camera.seq:
            return camera, True
        if camera is None:
            camera = _Camera(Tracker(_TRACKER), EscalationMemory(self._config), seq, captured_at)
            self._cameras[name] = camera
            while len(self._cameras) > _MAX_CAMERAS:
                self._cameras.popitem(last=False)
        camera.seq, camera.captured_at = seq, captured_at
        self._cameras.move_to_end(name)
        return camera, False

    def _remember(self, frame_id: str, asked: tuple[_Asked, ...]) -> None:
        self._asked[frame_id] = asked
        while len(self._asked) > _MAX_ASKED:
            _, forgotten = self._asked.popitem(last=False)
            for a in forgotten:
                camera = self._cameras.get(a.camera)
                if camera is not None:
                    camera.memory.unanswered(a.track_id)

    def _count(self, action: str, *, reason: str = "") -> None:
        self._metrics.tracked_lines.labels(self._site, action, reason).inc()
