"""Edge-only, cloud-only and hybrid reading of shelf labels, scored offline from one pass.

``read_frame`` runs PP-OCR's text detector (manifest role ``text-det``) once on a
decoded frame, then *both* recognisers (``text-rec-edge``, ``text-rec-cloud``) on
every line it found, each line's quadrilateral warped to a strip as ``ModelChain``
does. Each line becomes a ``LineRecord``: its box, the truth line it matches
(``scoring.match_lines``), and both readings with their confidences. From those
records any tier can be scored without running a model again:

* **edge-only**: the edge's reading of every line;
* **cloud-only**: the cloud's reading of every line;
* **hybrid** at a band [low, high): the edge's reading, except that the lines whose
  edge confidence lies in the band are replaced by the cloud's (the chain asks the
  cloud about exactly these; below ``low`` a line is not worth asking about).

The escalated share is over all lines the detector found (barcodes and packaging
text among them), since a site pays for every line it sends. ``compare_tiers`` gives
the three rows a report prints; ``budget`` picks a fixed share of lines by any
confidence signal, for comparing signals at equal cost. Blocking (runs models).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.camera.shelf.scoring import (
    DEFAULT_SCOPE,
    LineScope,
    Tally,
    TruthLine,
    match_lines,
    tally_frame,
)
from pipeline.inference.images import crop, crop_quad
from pipeline.inference.outputs import Boxes, Text
from pipeline.inference.runtime import DeclaredModel
from pipeline.tracking.escalation import PRICE_PATTERN
from schemas.errors import ModelError
from schemas.messages import Region

__all__ = [
    "SIGNALS",
    "Selector",
    "Signal",
    "FramePass",
    "LineRead",
    "LineRecord",
    "Readers",
    "TierRow",
    "budget",
    "compare_tiers",
    "decode_frames",
    "escalated_share",
    "in_band",
    "looks_like_price",
    "read_frame",
    "signal",
    "tier_tally",
]

Selector = Callable[["LineRecord"], bool]
Signal = Callable[["LineRecord"], float]


@dataclass(frozen=True, eq=False)
class Readers:
    """The three PP-OCR models: the text detector and both recognisers."""

    det: DeclaredModel
    edge: DeclaredModel
    cloud: DeclaredModel

    @classmethod
    def load(cls, manifest: Path | None = None) -> Readers:
        """Load ``text-det``, ``text-rec-edge`` and ``text-rec-cloud`` from ``manifest``
        (default: models/ppocr/manifest.json, whose files ``models.ppocr.build`` makes)."""
        if manifest is None:
            from models.ppocr.build import MANIFEST

            manifest = MANIFEST
        roles = ("text-det", "text-rec-edge", "text-rec-cloud")
        return cls(*(DeclaredModel.load(role, manifest) for role in roles))

    @property
    def band(self) -> tuple[float, float]:
        """The edge recogniser's declared ``uncertain_band`` [low, high)."""
        return self.edge.declaration.confidence.uncertain_band


@dataclass(frozen=True)
class LineRead:
    """One recogniser's reading of a line: the text, its confidence by the model's
    declared signal, and the lowest and mean character probability (0 for no text)."""

    text: str
    confidence: float
    min_char: float
    mean_char: float


@dataclass(frozen=True)
class LineRecord:
    """One detected line of one frame: ``index`` in the detector's order, its box, the
    index of the truth line it matches in ``FramePass.truth`` (None: none), and both
    readings."""

    frame: int
    index: int
    box: Region
    truth: int | None
    edge: LineRead
    cloud: LineRead

    @property
    def key(self) -> tuple[int, int]:
        """(frame, index): the line's identity across a run."""
        return self.frame, self.index


@dataclass(frozen=True)
class FramePass:
    """One frame's truth lines and detected lines, with each model's seconds on it."""

    frame: int
    truth: tuple[TruthLine, ...]
    lines: tuple[LineRecord, ...]
    seconds: Mapping[str, float]


@dataclass(frozen=True)
class TierRow:
    """One tier's score: ``escalated`` is the share of detected lines read by the
    cloud (0 for edge-only, 1 for cloud-only)."""

    tier: str
    escalated: float
    tally: Tally


def _read(model: DeclaredModel, answer: object) -> LineRead:
    if not isinstance(answer, Text):
        raise ModelError(f"model {model.name!r} must read text")
    chars = model.calibrated(answer.char_probabilities)
    low = float(chars.min()) if chars.size else 0.0
    mean = float(chars.mean()) if chars.size else 0.0
    return LineRead(answer.text, model.confidence_of(answer), low, mean)


def _region(xyxy: np.ndarray, width: int, height: int) -> Region | None:
    """The detector's float box as whole pixels inside the frame (as ModelChain)."""
    x0, y0 = max(0, math.floor(xyxy[0])), max(0, math.floor(xyxy[1]))
    x1, y1 = min(width, math.ceil(xyxy[2])), min(height, math.ceil(xyxy[3]))
    return Region(x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _strip(image: np.ndarray, box: Region, quad: np.ndarray | None) -> np.ndarray:
    """The pixels a recogniser reads: the quad warped to a strip, else the box."""
    if quad is not None:
        try:
            return crop_quad(image, quad)
        except ValueError:  # a degenerate quad: read its box instead
            pass
    return crop(image, box)


def read_frame(
    readers: Readers, frame: int, image: np.ndarray, truth: Sequence[TruthLine]
) -> FramePass:
    """Detect once, read every line with both recognisers, match the lines to
    ``truth`` (see the module's doc). ``image``: RGB, H x W x 3."""
    height, width = image.shape[:2]
    started = time.perf_counter()
    found = readers.det.run([image])[0]
    detected = time.perf_counter()
    if not isinstance(found, Boxes):
        raise ModelError(f"model {readers.det.name!r} must give boxes")
    boxes: list[Region] = []
    strips: list[np.ndarray] = []
    for k in range(len(found)):
        box = _region(found.xyxy[k], width, height)
        if box is not None:
            quad = None if found.polygons is None else found.polygons[k]
            boxes.append(box)
            strips.append(_strip(image, box, quad))
    edge = readers.edge.run(strips) if strips else []
    edge_done = time.perf_counter()
    cloud = readers.cloud.run(strips) if strips else []
    cloud_done = time.perf_counter()
    matched = {i: j for i, j in match_lines(boxes, truth)}
    lines = tuple(
        LineRecord(
            frame,
            i,
            box,
            matched.get(i),
            _read(readers.edge, edge[i]),
            _read(readers.cloud, cloud[i]),
        )
        for i, box in enumerate(boxes)
    )
    seconds = {
        "det": detected - started,
        "edge_rec": edge_done - detected,
        "cloud_rec": cloud_done - edge_done,
    }
    return FramePass(frame, tuple(truth), lines, seconds)


def decode_frames(
    video: Path | str, frames: Sequence[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB array) of each frame of ``video`` in order, or only of ``frames``."""
    wanted = None if frames is None else set(frames)
    with av.open(str(video)) as container:
        for index, picture in enumerate(container.decode(video=0)):
            if wanted is None or index in wanted:
                yield index, picture.to_ndarray(format="rgb24")
            if wanted is not None and index >= max(wanted, default=-1):
                return


def tier_tally(
    passes: Sequence[FramePass], escalate: Selector, scope: LineScope = DEFAULT_SCOPE
) -> Tally:
    """The tally of reading ``passes`` with the cloud's text where ``escalate`` says
    and the edge's elsewhere."""
    total = Tally()
    for one in passes:
        texts: list[str | None] = [None] * len(one.truth)
        for line in one.lines:
            if line.truth is not None:
                texts[line.truth] = (line.cloud if escalate(line) else line.edge).text
        extra = sum(line.truth is None for line in one.lines)
        total += tally_frame(one.truth, texts, extra, scope)
    return total


def escalated_share(passes: Sequence[FramePass], escalate: Selector) -> float:
    """The share of detected lines ``escalate`` sends to the cloud (NaN with none)."""
    lines = [line for one in passes for line in one.lines]
    return sum(map(escalate, lines)) / len(lines) if lines else math.nan


def in_band(low: float, high: float, rank: Signal | None = None) -> Selector:
    """Escalate a line when ``low <= rank(line) < high`` (by default ``rank`` is the
    edge's declared confidence, as the chain's)."""
    value = rank or (lambda line: line.edge.confidence)
    return lambda line: low <= value(line) < high


def compare_tiers(
    passes: Sequence[FramePass], band: tuple[float, float], scope: LineScope = DEFAULT_SCOPE
) -> tuple[TierRow, TierRow, TierRow]:
    """Edge-only, hybrid at ``band`` [low, high) and cloud-only, in that order."""
    rows = []
    for tier, escalate in (
        ("edge-only", in_band(math.inf, math.inf)),
        ("hybrid", in_band(*band)),
        ("cloud-only", in_band(-math.inf, math.inf)),
    ):
        rows.append(
            TierRow(tier, escalated_share(passes, escalate), tier_tally(passes, escalate, scope))
        )
    return rows[0], rows[1], rows[2]


# -- confidence signals for choosing what to escalate ------------------------------

_PRICE = re.compile(PRICE_PATTERN)
_DECIMAL = re.compile(r"\d[.,]\d")


def looks_like_price(text: str) -> bool:
    """Whether a reading looks like an attempt at a price: spaces removed, no ``/`` (a
    unit price) and a ``$`` or a digit, point or comma, digit."""
    text = "".join(text.split())
    return "/" not in text and ("$" in text or _DECIMAL.search(text) is not None)


def _price_aware(line: LineRecord, unsure: float) -> float:
    text = "".join(line.edge.text.split())
    if looks_like_price(text) and _PRICE.fullmatch(text) is None:
        return unsure
    return line.edge.min_char


SIGNALS: tuple[str, ...] = ("min_char", "mean_char", "min_char+price")
"""Ways to rank the edge's lines for escalation, lowest first (``signal``)."""


def signal(name: str, low: float = 0.0) -> Signal:
    """The edge confidence signal ``name`` (one of ``SIGNALS``): the lowest character
    probability (``min_char``), their mean (``mean_char``), or ``min_char+price``: the
    lowest, except that a reading that looks like a price (``looks_like_price``) but
    does not match ``PRICE_PATTERN`` counts as unsure: it scores ``low``, the bottom
    of the band, so it is escalated first whatever its characters say."""
    if name == "min_char":
        return lambda line: line.edge.min_char
    if name == "mean_char":
        return lambda line: line.edge.mean_char
    if name == "min_char+price":
        return lambda line: _price_aware(line, low)
    raise ValueError(f"unknown signal {name!r}; one of {SIGNALS}")


def budget(passes: Sequence[FramePass], rank: Signal, share: float, low: float = 0.0) -> Selector:
    """Escalate the ``round(share * lines)`` detected lines with the lowest ``rank``
    among those at or above ``low`` (fewer when fewer are); ties in line order."""
    lines = [line for one in passes for line in one.lines]
    eligible = sorted((rank(line), line.key) for line in lines if rank(line) >= low)
    chosen = {key for _, key in eligible[: max(0, round(share * len(lines)))]}
    return lambda line: line.key in chosen
