"""A tier's declared models run as one analyser: ``ModelChain``.

A chain is the manifest roles a tier names (``edge.models``, ``cloud.models``), run in
order on each frame. What a stage looks at follows from the task of the stage before:

* the first stage looks at the camera's regions when there are any, else at the whole
  frame (a detector or text detector always at the whole frame);
* after a ``detect`` stage, a ``classify`` stage labels each box it found;
* after a ``text_detect`` stage, a ``text_recognize`` stage reads each text box
  (its quadrilateral warped to a horizontal strip).

Each item found gets a confidence (the last model's declared signal). The model's
``confidence.uncertain_band`` [low, high] says which it is unsure of: an item with
low <= confidence < high (high: the frame's own threshold when it sets one). Their
boxes are what the next tier is asked to look at (``Analysis.asks``); an item below
low is reported but not worth asking about. The frame's confidence is the lowest of
its items at or above low (1.0 with none), judged by the same high: so a frame is
escalated exactly when the tier is unsure of one of its items. Pure apart from running
the models; blocking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from pipeline.inference.analysis import Analysis, Look
from pipeline.inference.images import crop, crop_quad
from pipeline.inference.outputs import Boxes, Classes, Text
from pipeline.inference.runtime import DeclaredModel
from schemas.errors import ModelError
from schemas.limits import MAX_DETECTIONS, MAX_LINES, MAX_REGIONS
from schemas.messages import Detection, Region, Source, TextLine

__all__ = ["ModelChain", "first_ranked"]

T = TypeVar("T")

# Which task may follow which (the first stage may be any).
_FOLLOWS = {"detect": ("classify",), "text_detect": ("text_recognize",)}


def _box(xyxy: np.ndarray, image: np.ndarray) -> Region | None:
    """A float box (x1, y1, x2, y2) as whole pixels inside ``image``; None for a box
    with nothing of the image in it."""
    height, width = image.shape[:2]
    x1, y1 = max(0, int(np.floor(xyxy[0]))), max(0, int(np.floor(xyxy[1])))
    x2, y2 = min(width, int(np.ceil(xyxy[2]))), min(height, int(np.ceil(xyxy[3])))
    if x2 <= x1 or y2 <= y1:
        return None
    return Region(x1, y1, x2 - x1, y2 - y1)


def first_ranked(items: Sequence[T], limit: int, rank: Callable[[T], float]) -> tuple[T, ...]:
    """The ``limit`` items that rank first (lowest ``rank``), in their own order."""
    if len(items) <= limit:
        return tuple(items)
    chosen = set(sorted(range(len(items)), key=lambda i: rank(items[i]))[:limit])
    return tuple(item for i, item in enumerate(items) if i in chosen)


def _whole(image: np.ndarray) -> Region:
    return Region(0, 0, image.shape[1], image.shape[0])


@dataclass(frozen=True, slots=True)
class _Item:
    """One thing found in one frame, before it becomes a detection or a line."""

    frame: int
    box: Region
    quad: np.ndarray | None = None
    label: int = 0
    score: float = 1.0


@dataclass(frozen=True, eq=False)
class ModelChain:
    """The declared models of one tier, in order (see the module's doc)."""

    stages: tuple[DeclaredModel, ...]
    source: Source

    def __post_init__(self) -> None:
        if not self.stages:
            raise ModelError("a model chain needs at least one model")
        for before, after in zip(self.stages, self.stages[1:], strict=False):
            if after.task not in _FOLLOWS.get(before.task, ()):
                raise ModelError(
                    f"model {after.name!r} ({after.task}) cannot follow {before.name!r} "
                    f"({before.task}); after {before.task} comes "
                    f"{list(_FOLLOWS.get(before.task, ())) or 'nothing'}"
                )

    @classmethod
    def load(cls, roles: str, manifest: Path | None, *, source: Source) -> ModelChain:
        """The chain of the comma-separated manifest ``roles``, each loaded and verified."""
        names = [r.strip() for r in roles.split(",") if r.strip()]
        return cls(tuple(DeclaredModel.load(role, manifest) for role in names), source)

    @property
    def name(self) -> str:
        return "+".join(stage.name for stage in self.stages)

    @property
    def version(self) -> str:
        return "+".join(stage.version for stage in self.stages)

    def analyse(self, looks: Sequence[Look]) -> list[Analysis]:
        first = self.stages[0]
        items = self._first(first, looks)
        for stage in self.stages[1:]:
            items = self._then(stage, looks, items)
        last = self.stages[-1]
        return [
            self._analysis(last, look, [i for i in items if i.frame == n])
            for n, look in enumerate(looks)
        ]

    def _first(self, stage: DeclaredModel, looks: Sequence[Look]) -> list[_Item | _Read]:
        if stage.task in ("detect", "text_detect"):
            answers = stage.run([look.image for look in looks])
            return [
                item
                for n, found in enumerate(answers)
                for item in self._found(stage, n, found, looks[n].image)
            ]
        targets = [
            _Item(n, box)
            for n, look in enumerate(looks)
            for box in (look.regions or (_whole(look.image),))
        ]
        return self._label(stage, looks, targets)

    def _then(
        self, stage: DeclaredModel, looks: Sequence[Look], items: list[_Item | _Read]
    ) -> list[_Item | _Read]:
        targets = [item for item in items if isinstance(item, _Item)]
        return self._label(stage, looks, targets)

    def _found(
        self, stage: DeclaredModel, n: int, found: object, image: np.ndarray
    ) -> list[_Item | _Read]:
        if not isinstance(found, Boxes):
            raise ModelError(f"model {stage.name!r}: a {stage.task} model must give boxes")
        quads, scores = found.polygons, stage.calibrated(found.scores)
        items: list[_Item | _Read] = []
        for k in range(len(found)):
            box = _box(found.xyxy[k], image)
            if box is not None:
                quad = None if quads is None else quads[k]
                items.append(_Item(n, box, quad, int(found.classes[k]), float(scores[k])))
        return items

    def _label(
        self, stage: DeclaredModel, looks: Sequence[Look], targets: list[_Item]
    ) -> list[_Item | _Read]:
        """Classify or read each target's pixels."""
        pixels = [
            crop_quad(looks[t.frame].image, t.quad)
            if t.quad is not None and stage.task == "text_recognize"
            else crop(looks[t.frame].image, t.box)
            for t in targets
        ]
        out: list[_Item | _Read] = []
        for target, answer in zip(targets, stage.run(pixels) if pixels else [], strict=True):
            if isinstance(answer, Classes):
                p = answer.probabilities
                label = int(np.argmax(p)) if p.size else 0
                score = stage.confidence_of(answer)
                out.append(_Item(target.frame, target.box, target.quad, label, score))
            elif isinstance(answer, Text):
                out.append(
                    _Read(target.frame, target.box, answer.text, stage.confidence_of(answer))
                )
            else:
                raise ModelError(f"model {stage.name!r}: a {stage.task} model cannot follow here")
        return out

    def _analysis(self, stage: DeclaredModel, look: Look, items: list[_Item | _Read]) -> Analysis:
        detections = tuple(
            Detection(i.box, stage.label_name(i.label), i.label, i.score, self.source)
            for i in items
            if isinstance(i, _Item)
        )
        lines = tuple(
            TextLine(r.box, r.text, r.confidence, self.source)
            for r in items
            if isinstance(r, _Read)
        )
        # What the wire carries at most: the most certain items, the least certain asks,
        # each in the order found.
        detections = first_ranked(detections, MAX_DETECTIONS, lambda d: -d.score)
        lines = first_ranked(lines, MAX_LINES, lambda x: -x.confidence)
        low, high = stage.declaration.confidence.uncertain_band
        if look.threshold is not None:
            high = look.threshold
        scored = [(d.box, d.score) for d in detections] + [(x.box, x.confidence) for x in lines]
        unsure = [(box, c) for box, c in scored if low <= c < high]
        return Analysis(
            confidence=min((c for _, c in scored if c >= low), default=1.0),
            detections=detections,
            lines=lines,
            asks=tuple(box for box, _ in first_ranked(unsure, MAX_REGIONS, lambda item: item[1])),
            threshold=high,
        )


@dataclass(frozen=True, slots=True)
class _Read:
    """One line of text read in one frame."""

    frame: int
    box: Region
    text: str
    confidence: float
