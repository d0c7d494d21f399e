"""How far two answers for one frame agree, as a number in [0, 1]. Pure, no I/O.

Drift monitors and canary judges compare the edge's answer with the cloud's through
``agreement``, which picks the measure that fits the task: text lines (character error
rate of box-matched lines), classifier rows (share of equal labels) or detections (F1
of box- and label-matched detections).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from schemas.messages import Detection, InferenceResult, Region, TextLine

__all__ = [
    "SAME_BOX_IOU",
    "agreement",
    "agrees",
    "character_error_rate",
    "comparable",
    "detection_f1",
    "iou",
    "label_agreement",
    "match_boxes",
    "text_agreement",
]

# Two boxes overlapping at least this much are the same box: the one the edge asked
# the cloud about, as the cloud gave it back (possibly rounded or clipped).
SAME_BOX_IOU = 0.9

T = TypeVar("T", Detection, TextLine)


def label_agreement(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """The share of positions where ``a`` and ``b`` hold the same label: 1.0 for two
    empty tuples, 0.0 when their lengths differ (they do not answer the same regions)."""
    if len(a) != len(b):
        return 0.0
    if not a:
        return 1.0
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def iou(a: Region, b: Region) -> float:
    """Intersection over union of two rectangles, in [0, 1]. Two equal rectangles give
    1.0, even empty ones; an empty rectangle and a different one give 0.0."""
    if a == b:
        return 1.0
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, w) * max(0, h)
    union = max(0, a.w) * max(0, a.h) + max(0, b.w) * max(0, b.h) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    a: Sequence[Region],
    b: Sequence[Region],
    threshold: float,
    allowed: Callable[[int, int], bool] = lambda i, j: True,
) -> list[tuple[int, int]]:
    """Greedy one-to-one matching of boxes ``a`` to ``b``: among the pairs that are
    ``allowed`` and overlap by IoU >= ``threshold``, take the highest IoU first (ties in
    index order), skipping pairs whose boxes are already taken. Pairs (i, j) of indices."""
    pairs = sorted(
        (-overlap, i, j)
        for i, box_a in enumerate(a)
        for j, box_b in enumerate(b)
        if (overlap := iou(box_a, box_b)) >= threshold and allowed(i, j)
    )
    taken_a: set[int] = set()
    taken_b: set[int] = set()
    matched: list[tuple[int, int]] = []
    for _, i, j in pairs:
        if i not in taken_a and j not in taken_b:
            taken_a.add(i)
            taken_b.add(j)
            matched.append((i, j))
    return matched


def detection_f1(
    a: Sequence[Detection],
    b: Sequence[Detection],
    *,
    iou_threshold: float = 0.5,
    match_labels: bool = True,
) -> float:
    """F1 of two lists of detections, either one taken as the truth: 2 * matches /
    (len(a) + len(b)), 1.0 for two empty lists. A match pairs one detection of each
    list whose boxes overlap by IoU >= ``iou_threshold`` and, with ``match_labels``,
    whose ``label`` is the same; pairs are chosen greedily, highest IoU first."""
    if not a and not b:
        return 1.0
    matched = match_boxes(
        [d.box for d in a],
        [d.box for d in b],
        iou_threshold,
        lambda i, j: not match_labels or a[i].label == b[j].label,
    )
    return 2 * len(matched) / (len(a) + len(b))


def _levenshtein(a: str, b: str) -> int:
    """The fewest single-character insertions, deletions and substitutions that turn
    ``a`` into ``b``; one DP row as long as the shorter string."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance from ``reference`` to ``hypothesis`` over the length of
    ``reference``; may exceed 1. With an empty reference: 0.0 for an empty hypothesis,
    else 1.0."""
    if not reference:
        return 1.0 if hypothesis else 0.0
    return _levenshtein(reference, hypothesis) / len(reference)


def text_agreement(
    a: Sequence[TextLine], b: Sequence[TextLine], *, iou_threshold: float = 0.5
) -> float:
    """How alike two readings of a frame are, with ``b`` the reference: lines are
    matched one-to-one by box IoU >= ``iou_threshold`` (greedily, highest first); each
    matched pair scores 1 - min(1, CER of a's text against b's), each unmatched line of
    either list 0, and the result is the mean over all lines of both lists, a matched
    pair counting once. 1.0 for two empty lists."""
    if not a and not b:
        return 1.0
    matched = match_boxes([t.box for t in a], [t.box for t in b], iou_threshold, lambda i, j: True)
    score = sum(1.0 - min(1.0, character_error_rate(b[j].text, a[i].text)) for i, j in matched)
    return score / (len(a) + len(b) - len(matched))


def _asked(box: Region, cloud: Sequence[Region]) -> bool:
    """Whether ``box`` is one of the ``cloud`` boxes: equal, or IoU >= ``SAME_BOX_IOU``."""
    return any(iou(box, c) >= SAME_BOX_IOU for c in cloud)


def _looked_at(edge: Sequence[T], cloud: Sequence[T]) -> Sequence[T]:
    """The items of ``edge`` the cloud was asked about (see ``agreement``)."""
    if not cloud or len(cloud) >= len(edge):
        return edge
    boxes = [c.box for c in cloud]
    return [e for e in edge if _asked(e.box, boxes)]


def _looked_at_labels(edge: InferenceResult, cloud: InferenceResult) -> tuple[int, ...]:
    """The edge's labels for the regions the cloud was asked about (see ``agreement``);
    a label's region is the box of the edge's detection at its position."""
    aligned = len(edge.detections) == len(edge.labels)
    if not cloud.detections or len(cloud.labels) >= len(edge.labels) or not aligned:
        return edge.labels
    boxes = [c.box for c in cloud.detections]
    pairs = zip(edge.labels, edge.detections, strict=True)
    return tuple(label for label, d in pairs if _asked(d.box, boxes))


def comparable(edge: InferenceResult, cloud: InferenceResult) -> bool:
    """Whether the two answers can be compared at all: something on either side, and not
    a detector's boxes that the cloud labelled again with its own model (another label
    set, and only the boxes the edge asked about)."""
    if not (edge.labels or cloud.labels or edge.detections or cloud.detections):
        return bool(edge.lines or cloud.lines)
    relabelled = edge.detections and not edge.labels and not (edge.lines or cloud.lines)
    return not relabelled


def agreement(edge: InferenceResult, cloud: InferenceResult) -> float:
    """The one measure of how far ``edge``'s answer agrees with ``cloud``'s, in [0, 1].

    Text: ``text_agreement`` of the lines (the cloud's the reference) if either answer
    has lines. Else classifier rows: ``label_agreement`` if both have ``labels``. Else
    detections: ``detection_f1``.

    Only what the cloud looked at is compared. An escalated frame's cloud answer covers
    just the boxes the edge asked about, so when the cloud has fewer items (lines,
    labels or detections) than the edge, but at least one, the edge's items are first
    restricted to those whose box equals, or overlaps by IoU >= ``SAME_BOX_IOU``, a box
    of one of the cloud's items (for labels: the box of the edge's detection at the
    label's position, when the edge has one detection per label). A cloud answer with
    no items is compared with all of the edge's: it restricts nothing.
    """
    if edge.lines or cloud.lines:
        return text_agreement(_looked_at(edge.lines, cloud.lines), cloud.lines)
    if edge.labels and cloud.labels:
        return label_agreement(_looked_at_labels(edge, cloud), cloud.labels)
    return detection_f1(_looked_at(edge.detections, cloud.detections), cloud.detections)


def agrees(edge: InferenceResult, cloud: InferenceResult, *, at_least: float = 1.0) -> bool:
    """Whether ``agreement(edge, cloud)`` is at least ``at_least`` (by default: fully)."""
    return agreement(edge, cloud) >= at_least
