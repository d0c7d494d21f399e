"""What one tier makes of a frame: the ``Analysis``, and the ``Analyser`` that makes it.

An analyser runs off the event loop (in a worker's thread pool or process): decoded
pixels in, one ``Analysis`` per frame out. Two kinds exist:

* ``RegionClassifier``: a classifier of the regions a camera names (the digits
  fixture's models), one label per region;
* ``pipeline.inference.chain.ModelChain``: the models a tier declares (a detector, a
  text detector then a text reader, a classifier of whole frames or of crops), each
  run through its manifest entry.

What a tier asks the next one about is part of the answer (``asks``): the boxes whose
crops leave the site when the frame is escalated with privacy ``crop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.inference.calibration import frame_confidence
from pipeline.inference.digits import pixels_to_features
from pipeline.inference.images import convert
from pipeline.inference.model import OnnxModel
from schemas.messages import Detection, Region, Source, TextLine

__all__ = ["Analyser", "Analysis", "Look", "RegionClassifier", "no_scores"]


def no_scores() -> np.ndarray:
    """The classifier rows of an answer that has none: float32 (0, 0)."""
    return np.zeros((0, 0), dtype=np.float32)


@dataclass(frozen=True, slots=True, eq=False)
class Look:
    """One frame as an analyser is asked about it.

    ``image`` is decoded (H x W grey or H x W x 3 RGB, uint8); ``regions`` are the
    camera's (may be empty); ``threshold`` is the frame's own confidence threshold,
    None when it set none.
    """

    image: np.ndarray
    regions: tuple[Region, ...]
    threshold: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Analysis:
    """One tier's answer to one frame.

    ``labels``/``scores``: a region classifier's rows (one per region; empty
    otherwise). ``detections``/``lines``: what was found or read, in frame pixels.
    ``confidence``: the frame's, that of its least certain item (1.0 with none).
    ``asks``: the boxes the tier is unsure of, whose pixels the next tier is asked to
    look at (all regions for a region classifier). ``features``: the model input per
    region, for privacy ``embedding`` (region classifiers only). ``has_regions``:
    false only for a region classifier given a frame without regions (nothing to
    answer: reason ``no_regions``). ``threshold``: the one the analyser judged its
    items by (a declared model's), which the frame's decision then uses; None: the
    edge's own (``edge.default_threshold``).
    """

    confidence: float
    has_regions: bool = True
    threshold: float | None = None
    labels: tuple[int, ...] = ()
    scores: np.ndarray = field(default_factory=no_scores)
    detections: tuple[Detection, ...] = ()
    lines: tuple[TextLine, ...] = ()
    asks: tuple[Region, ...] = ()
    features: np.ndarray | None = None


class Analyser(Protocol):
    """Runs a tier's model(s) on a batch of frames; thread-safe, blocking."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def analyse(self, looks: Sequence[Look]) -> list[Analysis]:
        """One ``Analysis`` per look, in order."""
        ...


@dataclass(frozen=True, eq=False)
class RegionClassifier:
    """A classifier of camera-named regions (8x8 features of each region's grey pixels)."""

    model: OnnxModel
    source: Source
    signal: str

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def version(self) -> str:
        return self.model.version

    def analyse(self, looks: Sequence[Look]) -> list[Analysis]:
        crops = [convert(r.crop(look.image), "gray") for look in looks for r in look.regions]
        features = pixels_to_features(crops)
        probabilities = self.model.predict_proba(features)
        out, row = [], 0
        for look in looks:
            rows = slice(row, row + len(look.regions))
            row = rows.stop
            out.append(self.of_rows(look.regions, probabilities[rows], features[rows]))
        return out

    def of_rows(
        self, regions: tuple[Region, ...], scores: np.ndarray, features: np.ndarray | None
    ) -> Analysis:
        """The answer for ``regions`` from the model's rows ``scores`` (one per region)."""
        labels = tuple(int(i) for i in scores.argmax(axis=1)) if len(scores) else ()
        names = self.model.label_names
        return Analysis(
            confidence=frame_confidence(scores, self.signal),
            labels=labels,
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            detections=tuple(
                Detection(box, names[i], i, float(scores[n, i]), self.source)
                for n, (box, i) in enumerate(zip(regions, labels, strict=True))
            ),
            asks=regions,
            features=features,
            has_regions=bool(regions),
        )
