"""How well a reader read a shelf video's text lines, against its ground truth.

Pure apart from reading the ground truth file (``load_truth``). The rules:

* **Which truth lines count** (``LineScope``): by default every line except those the
  generator marks ``occluded`` (an arm over 10 % or more of its box) or ``truncated``
  (cut by the frame's edge): their text is not all in the picture, so no reader can
  owe it. Blurred, glared and dark lines count: they are what escalation is for. A
  scope can also keep only some kinds (``name``, ``price``, ``unit_price``) or lines
  whose ink is at least ``min_height`` pixels high (at 1280x720 the far names are
  about 5 pixels high, unreadable by design).
* **Matching** (``match_lines``): a read line and a truth line may pair when the read
  box's centre lies inside the truth box (edges included) or their IoU is at least
  ``MATCH_IOU``. A detector pads its boxes, so a centre test fits small lines whose
  IoU is low. Pairs are taken one-to-one, greedily, highest IoU first (ties: read
  index, then truth index). Reads are matched against *every* truth line of the
  frame, counted or not: a read of an occluded line is neither matched nor extra.
* **Text** is compared with all whitespace removed on both sides (``normalise``):
  recognisers are least reliable about spaces, which carry nothing a shelf reader
  needs. Case and every other character count.
* **CER**: edits over the truth's characters, summed over lines before dividing (a
  long line weighs more). A line's edits are capped at its length, so one garbage
  reading costs at most what a missed line does. ``cer_matched`` is over the matched
  lines; ``cer_all`` over all counted lines, an unmatched one costing all its
  characters (CER 1).
* **Price exact-match**: among the counted truth lines of kind ``price``, the share
  whose matched reading equals the truth exactly (after ``normalise``); an unmatched
  price is a miss.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipeline.inference.agreement import character_error_rate, iou, match_boxes
from schemas.messages import Region, TextLine

__all__ = [
    "DEFAULT_SCOPE",
    "MATCH_IOU",
    "FrameScore",
    "LineScope",
    "Reading",
    "Score",
    "Tally",
    "TruthLine",
    "load_truth",
    "match_lines",
    "normalise",
    "score_frame",
    "score_frames",
    "tally_frame",
    "truth_lines",
]

MATCH_IOU = 0.5

Reading = TextLine | tuple[Region, str]
"""A read line: a chain's ``TextLine``, or a (box, text) pair."""


@dataclass(frozen=True)
class TruthLine:
    """One text line of the ground truth: where it is, what it says, its condition.

    ``box`` is ``(x0, y0, x1, y1)`` in frame pixels (floats, tight around the ink);
    ``label`` the card's track id.
    """

    frame: int
    label: int
    kind: str
    text: str
    box: tuple[float, float, float, float]
    occluded: bool = False
    blurred: bool = False
    glared: bool = False
    truncated: bool = False

    @property
    def height(self) -> float:
        """The ink's height in pixels (the box's)."""
        return self.box[3] - self.box[1]

    @property
    def region(self) -> Region:
        """The box as whole pixels (outwards), for ``iou``."""
        x0, y0 = math.floor(self.box[0]), math.floor(self.box[1])
        x1, y1 = math.ceil(self.box[2]), math.ceil(self.box[3])
        return Region(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class LineScope:
    """Which truth lines are scored (see the module's doc). ``kinds``: None for all."""

    skip_occluded: bool = True
    min_height: float = 0.0
    kinds: frozenset[str] | None = None

    def counts(self, line: TruthLine) -> bool:
        """Whether ``line`` is scored."""
        if self.skip_occluded and (line.occluded or line.truncated):
            return False
        if self.kinds is not None and line.kind not in self.kinds:
            return False
        return line.height >= self.min_height


DEFAULT_SCOPE = LineScope()
"""Every line but the occluded and truncated ones."""


@dataclass(frozen=True)
class Tally:
    """Counts of one frame or many; ``+`` adds two. ``skipped``: truth lines out of
    scope; ``extra``: reads that matched no truth line at all."""

    lines: int = 0
    matched: int = 0
    skipped: int = 0
    extra: int = 0
    chars: int = 0
    chars_matched: int = 0
    edits_matched: int = 0
    prices: int = 0
    prices_exact: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def edits_all(self) -> int:
        """Edits over all counted lines: an unmatched line costs all its characters."""
        return self.edits_matched + self.chars - self.chars_matched

    @property
    def cer_matched(self) -> float:
        """CER over the matched lines (NaN with none)."""
        return self.edits_matched / self.chars_matched if self.chars_matched else math.nan

    @property
    def cer_all(self) -> float:
        """CER over all counted lines, an unmatched one counting CER 1 (NaN with none)."""
        return self.edits_all / self.chars if self.chars else math.nan

    @property
    def match_rate(self) -> float:
        """The share of counted lines that were matched (NaN with none)."""
        return self.matched / self.lines if self.lines else math.nan

    @property
    def price_exact(self) -> float:
        """The share of counted price lines read exactly (NaN with none)."""
        return self.prices_exact / self.prices if self.prices else math.nan


@dataclass(frozen=True)
class FrameScore:
    """One frame's tally."""

    frame: int
    tally: Tally


@dataclass(frozen=True)
class Score:
    """Per-frame tallies, in the order given, and their sum."""

    frames: tuple[FrameScore, ...]
    total: Tally


def normalise(text: str) -> str:
    """``text`` with all whitespace removed: what is compared."""
    return "".join(text.split())


def truth_lines(record: Mapping[str, Any]) -> tuple[TruthLine, ...]:
    """The text lines of one ground-truth record (one JSON line), label by label."""
    frame = int(record["frame"])
    out = []
    for label in record["labels"]:
        for line in label["lines"]:
            x0, y0, x1, y1 = (float(v) for v in line["box"])
            flags = (
                bool(line.get(k, False)) for k in ("occluded", "blurred", "glared", "truncated")
            )
            kind, text = str(line["kind"]), str(line["text"])
            out.append(TruthLine(frame, int(label["id"]), kind, text, (x0, y0, x1, y1), *flags))
    return tuple(out)


def load_truth(path: Path | str) -> dict[int, tuple[TruthLine, ...]]:
    """A ground-truth JSON Lines file (``OUT.jsonl``): each frame's lines, by index."""
    with Path(path).open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {int(r["frame"]): truth_lines(r) for r in records}


def _reading(item: Reading) -> tuple[Region, str]:
    if isinstance(item, TextLine):
        return item.box, item.text
    return item


def _centre_inside(read: Region, truth: TruthLine) -> bool:
    cx, cy = read.x + read.w / 2, read.y + read.h / 2
    x0, y0, x1, y1 = truth.box
    return x0 <= cx <= x1 and y0 <= cy <= y1


def match_lines(reads: Sequence[Region], truth: Sequence[TruthLine]) -> list[tuple[int, int]]:
    """One-to-one pairs (read index, truth index) by the module's matching rule."""
    regions = [line.region for line in truth]
    return match_boxes(
        reads,
        regions,
        0.0,
        lambda i, j: iou(reads[i], regions[j]) >= MATCH_IOU or _centre_inside(reads[i], truth[j]),
    )


def tally_frame(
    truth: Sequence[TruthLine],
    texts: Sequence[str | None],
    extra: int = 0,
    scope: LineScope = DEFAULT_SCOPE,
) -> Tally:
    """The tally of a frame whose matching is already known: ``texts[j]`` is the text
    read for ``truth[j]`` (None: unmatched); ``extra`` reads matched no truth line.
    For callers that match once and score many readings of the same boxes."""
    if len(texts) != len(truth):
        raise ValueError(f"{len(texts)} texts for {len(truth)} truth lines")
    lines = skipped = matched = chars = chars_matched = edits = prices = exact = 0
    for line, text in zip(truth, texts, strict=True):
        if not scope.counts(line):
            skipped += 1
            continue
        reference = normalise(line.text)
        lines += 1
        chars += len(reference)
        is_price = line.kind == "price"
        prices += is_price
        if text is None:
            continue
        read = normalise(text)
        matched += 1
        chars_matched += len(reference)
        cer = min(1.0, character_error_rate(reference, read))
        edits += round(cer * len(reference))
        exact += is_price and read == reference
    return Tally(lines, matched, skipped, extra, chars, chars_matched, edits, prices, exact)


def score_frame(
    frame: int,
    truth: Sequence[TruthLine],
    readings: Sequence[Reading],
    scope: LineScope = DEFAULT_SCOPE,
) -> FrameScore:
    """Match one frame's ``readings`` to its ``truth`` lines and tally them."""
    pairs = [_reading(r) for r in readings]
    matches = match_lines([box for box, _ in pairs], truth)
    texts: list[str | None] = [None] * len(truth)
    for i, j in matches:
        texts[j] = pairs[i][1]
    return FrameScore(frame, tally_frame(truth, texts, len(pairs) - len(matches), scope))


def score_frames(
    truth: Mapping[int, Sequence[TruthLine]],
    readings: Iterable[tuple[int, Sequence[Reading]]],
    scope: LineScope = DEFAULT_SCOPE,
) -> Score:
    """Score each (frame index, readings) against ``truth`` (``load_truth``) and sum.
    KeyError for a frame the truth does not have."""
    scores = tuple(score_frame(n, truth[n], lines, scope) for n, lines in readings)
    return Score(scores, sum((s.tally for s in scores), Tally()))
