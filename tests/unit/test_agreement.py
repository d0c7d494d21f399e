"""Agreement measures: hand-computed cases for each, then a few properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.inference.agreement import (
    agreement,
    agrees,
    character_error_rate,
    comparable,
    detection_f1,
    iou,
    label_agreement,
    text_agreement,
)
from schemas.messages import Detection, InferenceResult, Reason, Region, Source, TextLine

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

SQUARE = Region(0, 0, 10, 10)


def det(box: Region, label: str = "cat", source: Source = Source.EDGE) -> Detection:
    """A detection of ``label`` at ``box``."""
    return Detection(box, label, 0 if label == "cat" else 1, 0.9, source)


def line(box: Region, text: str, source: Source = Source.EDGE) -> TextLine:
    """A text line reading ``text`` at ``box``."""
    return TextLine(box, text, 0.9, source)


def result(
    source: Source,
    *,
    labels: tuple[int, ...] = (),
    detections: tuple[Detection, ...] = (),
    lines: tuple[TextLine, ...] = (),
) -> InferenceResult:
    """An answer for one frame holding just what a test compares."""
    return InferenceResult(
        frame_id="f",
        site="s",
        camera="c",
        seq=0,
        labels=labels,
        scores=np.zeros((0, 0), dtype=np.float32),
        confidence=0.5,
        source=source,
        model="m",
        model_version="1",
        latency_ms=1.0,
        reason=Reason.CLOUD_ANSWER,
        detections=detections,
        lines=lines,
    )


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((1, 2, 3), (1, 5, 3), 2 / 3),
        ((4,), (4,), 1.0),
        ((4,), (5,), 0.0),
        ((), (), 1.0),
        ((1,), (1, 2), 0.0),
        ((), (1,), 0.0),
    ],
)
def test_label_agreement(a: tuple[int, ...], b: tuple[int, ...], expected: float) -> None:
    assert label_agreement(a, b) == pytest.approx(expected)


# ---------------------------------------------------------------- IoU


@pytest.mark.parametrize(
    ("b", "expected"),
    [
        (SQUARE, 1.0),
        (Region(5, 5, 10, 10), 25 / 175),  # a quarter of each overlaps
        (Region(0, 0, 10, 20), 100 / 200),  # twice as tall
        (Region(2, 2, 5, 5), 25 / 100),  # inside
        (Region(10, 0, 10, 10), 0.0),  # touching edges
        (Region(30, 30, 5, 5), 0.0),  # apart
        (Region(5, 5, 0, 0), 0.0),  # empty, inside
    ],
)
def test_iou(b: Region, expected: float) -> None:
    assert iou(SQUARE, b) == pytest.approx(expected)
    assert iou(b, SQUARE) == pytest.approx(expected)


def test_iou_of_equal_empty_rectangles_is_one() -> None:
    assert iou(Region(3, 3, 0, 5), Region(3, 3, 0, 5)) == 1.0
    assert iou(Region(3, 3, 0, 5), Region(4, 3, 0, 5)) == 0.0


# ---------------------------------------------------------------- detections


def test_f1_with_a_label_mismatch() -> None:
    far = Region(20, 0, 10, 10)
    a = [det(SQUARE, "cat"), det(far, "dog")]
    b = [det(SQUARE, "cat"), det(far, "cat")]
    assert detection_f1(a, b) == pytest.approx(2 * 1 / 4)
    assert detection_f1(a, b, match_labels=False) == 1.0


def test_f1_needs_the_iou_threshold() -> None:
    a, b = [det(SQUARE)], [det(Region(5, 5, 10, 10))]  # IoU 1/7
    assert detection_f1(a, b) == 0.0
    assert detection_f1(a, b, iou_threshold=0.1) == 1.0
    assert detection_f1([det(SQUARE)], [det(Region(0, 0, 10, 20))]) == 1.0  # IoU 0.5 exactly


def test_f1_counts_unmatched_detections_of_either_side() -> None:
    a = [det(SQUARE), det(Region(50, 50, 10, 10))]
    assert detection_f1(a, [det(SQUARE)]) == pytest.approx(2 / 3)
    assert detection_f1([det(SQUARE)], a) == pytest.approx(2 / 3)
    assert detection_f1(a, []) == 0.0
    assert detection_f1([], []) == 1.0


def test_f1_matches_greedily_highest_iou_first() -> None:
    # A1-B1 (IoU 1.0) is taken first; A1-B2 and A2-B1 (0.5 each) would have matched
    # both, but A2-B2 (0.25) is below the threshold: one match, not two.
    a = [det(SQUARE), det(Region(0, 0, 10, 5))]
    b = [det(SQUARE), det(Region(0, 0, 10, 20))]
    assert detection_f1(a, b) == pytest.approx(2 * 1 / 4)


def test_f1_a_wrong_label_does_not_take_the_box() -> None:
    # The dog overlaps the cat best, but only the taller cat may match it.
    a = [det(SQUARE, "cat")]
    b = [det(SQUARE, "dog"), det(Region(0, 0, 10, 20), "cat")]
    assert detection_f1(a, b) == pytest.approx(2 / 3)


# ---------------------------------------------------------------- characters


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("$3.49", "$3.40", 1 / 5),  # one substitution
        ("abc", "abxc", 1 / 3),  # one insertion
        ("abcd", "abd", 1 / 4),  # one deletion
        ("kitten", "sitting", 3 / 6),  # two substitutions and an insertion
        ("same", "same", 0.0),
        ("ab", "", 1.0),  # everything deleted
        ("a", "xyz", 3.0),  # more edits than characters: above 1
        ("", "", 0.0),
        ("", "x", 1.0),
    ],
)
def test_character_error_rate(reference: str, hypothesis: str, expected: float) -> None:
    assert character_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_character_error_rate_of_long_lines() -> None:
    reference = "0123456789" * 25 + "abcdef"  # 256 characters
    hypothesis = reference[:100] + "X" + reference[101:] + "!"
    assert character_error_rate(reference, hypothesis) == pytest.approx(2 / 256)


# ---------------------------------------------------------------- text lines

TOP, BOTTOM = Region(0, 0, 50, 10), Region(0, 20, 50, 10)


def test_text_agreement_with_an_unmatched_line() -> None:
    a = [line(TOP, "$3.40"), line(BOTTOM, "MILK")]
    b = [line(TOP, "$3.49")]
    # The matched pair scores 1 - 0.2; the unmatched line 0; two lines in all.
    assert text_agreement(a, b) == pytest.approx(0.8 / 2)
    assert text_agreement(b, a) == pytest.approx(0.8 / 2)


def test_text_agreement_takes_b_as_the_reference() -> None:
    assert text_agreement([line(TOP, "abc")], [line(TOP, "ab")]) == pytest.approx(1 - 1 / 2)
    assert text_agreement([line(TOP, "ab")], [line(TOP, "abc")]) == pytest.approx(1 - 1 / 3)


def test_text_agreement_caps_the_error_at_one() -> None:
    assert text_agreement([line(TOP, "xyz")], [line(TOP, "a")]) == 0.0


def test_text_agreement_matches_by_box() -> None:
    a = [line(TOP, "one"), line(BOTTOM, "two")]
    b = [line(BOTTOM, "two"), line(TOP, "one")]
    assert text_agreement(a, b) == 1.0
    assert text_agreement(a, [line(Region(0, 5, 50, 10), "one")], iou_threshold=0.5) == 0.0
    assert text_agreement([], []) == 1.0
    assert text_agreement(a, []) == 0.0


# ---------------------------------------------------------------- agreement


def test_agreement_of_classifier_rows() -> None:
    edge = result(Source.EDGE, labels=(1, 2, 3))
    assert agreement(edge, result(Source.CLOUD, labels=(1, 2, 4))) == pytest.approx(2 / 3)
    assert agrees(edge, result(Source.CLOUD, labels=(1, 2, 3)))
    assert not agrees(edge, result(Source.CLOUD, labels=(1, 2, 4)))
    assert agrees(edge, result(Source.CLOUD, labels=(1, 2, 4)), at_least=0.5)


def test_agreement_of_detections() -> None:
    edge = result(Source.EDGE, detections=(det(SQUARE),))
    cloud = result(Source.CLOUD, detections=(det(SQUARE, source=Source.CLOUD),))
    assert agreement(edge, cloud) == 1.0
    assert agreement(edge, result(Source.CLOUD, detections=(det(SQUARE, "dog"),))) == 0.0
    assert agreement(result(Source.EDGE), result(Source.CLOUD)) == 1.0


def test_agreement_prefers_lines_then_labels_then_detections() -> None:
    lines = result(Source.EDGE, labels=(1,), lines=(line(TOP, "a"),))
    assert agreement(lines, result(Source.CLOUD, labels=(1,))) == 0.0  # no cloud lines
    labels = result(Source.EDGE, labels=(1,), detections=(det(SQUARE),))
    assert agreement(labels, result(Source.CLOUD, labels=(2,), detections=(det(SQUARE),))) == 0.0
    # Labels on one side only: the detections decide.
    assert agreement(labels, result(Source.CLOUD, detections=(det(SQUARE),))) == 1.0


def test_agreement_compares_only_the_boxes_the_cloud_looked_at() -> None:
    left, right, far = Region(0, 0, 10, 10), Region(20, 0, 10, 10), Region(40, 0, 10, 12)
    edge = result(Source.EDGE, detections=(det(left), det(right), det(far)))
    # The cloud was asked about the right box only: the others are left out.
    asked = result(Source.CLOUD, detections=(det(right),))
    assert agreement(edge, asked) == 1.0
    assert detection_f1(edge.detections, asked.detections) == pytest.approx(2 / 4)
    # A box the cloud gave back changed, with IoU 100/120 with ``far``, is not the same
    # box; one with IoU 110/120 is.
    assert agreement(edge, result(Source.CLOUD, detections=(det(Region(40, 0, 10, 10)),))) == 0.0
    assert agreement(edge, result(Source.CLOUD, detections=(det(Region(40, 1, 10, 11)),))) == 1.0
    # A cloud answer with nothing restricts nothing: it disagrees with all three.
    assert agreement(edge, result(Source.CLOUD)) == 0.0
    # As many items as the edge: nothing is left out.
    both = result(Source.CLOUD, detections=(det(right), det(Region(60, 60, 5, 5)), det(left)))
    assert agreement(edge, both) == pytest.approx(2 * 2 / 6)


def test_agreement_restricts_lines_and_labels_alike() -> None:
    edge = result(Source.EDGE, lines=(line(TOP, "$3.40"), line(BOTTOM, "MILK")))
    cloud = result(Source.CLOUD, lines=(line(TOP, "$3.49"),))
    assert agreement(edge, cloud) == pytest.approx(0.8)
    regions = (Region(0, 0, 10, 10), Region(20, 0, 10, 10), Region(40, 0, 10, 10))
    edge = result(Source.EDGE, labels=(1, 2, 3), detections=tuple(det(r) for r in regions))
    cloud = result(Source.CLOUD, labels=(2,), detections=(det(regions[1]),))
    assert agreement(edge, cloud) == 1.0
    assert agreement(edge, result(Source.CLOUD, labels=(3,), detections=(det(regions[1]),))) == 0.0


# ---------------------------------------------------------------- properties

regions = st.builds(
    Region,
    st.integers(0, 40),
    st.integers(0, 40),
    st.integers(0, 20),
    st.integers(0, 20),
)
detections = st.lists(
    st.builds(det, regions, st.sampled_from(["cat", "dog"])),
    max_size=8,
)
texts = st.text(alphabet="ab$3.", max_size=12)


def distance(a: str, b: str) -> int:
    """The edit distance from ``a`` to ``b``, read back from the error rate."""
    return round(character_error_rate(a, b) * len(a)) if a else len(b)


def textbook_distance(a: str, b: str) -> int:
    """The edit distance from ``a`` to ``b`` by the whole (len(a)+1) x (len(b)+1) table."""
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            substitute = table[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, substitute)
    return table[len(a)][len(b)]


@PROPERTY
@given(texts, texts)
def test_edit_distance_is_symmetric_and_bounded(a: str, b: str) -> None:
    d = distance(a, b)
    assert d == distance(b, a) == textbook_distance(a, b)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)


@PROPERTY
@given(detections, st.booleans())
def test_f1_of_a_list_with_itself_is_one(a: list[Detection], match_labels: bool) -> None:
    assert detection_f1(a, a, match_labels=match_labels) == 1.0


@PROPERTY
@given(regions, regions)
def test_iou_is_symmetric_and_in_range(a: Region, b: Region) -> None:
    assert iou(a, b) == iou(b, a)
    assert 0.0 <= iou(a, b) <= 1.0


def test_only_answers_that_can_be_compared_are() -> None:
    box = Region(0, 0, 10, 10)
    edge_box = Detection(box, "product", 1, 0.5, Source.EDGE)
    cloud_label = Detection(box, "bottle", 1, 0.9, Source.CLOUD)
    reading = TextLine(box, "$3.49", 0.9, Source.CLOUD)
    edge, cloud = result(Source.EDGE), result(Source.CLOUD)
    assert not comparable(edge, cloud)  # nothing on either side
    # A detector's box that the cloud labelled with its own model: another label set.
    assert not comparable(
        result(Source.EDGE, detections=(edge_box,)),
        result(Source.CLOUD, detections=(cloud_label,)),
    )
    assert comparable(result(Source.EDGE, labels=(1,)), result(Source.CLOUD, labels=(2,)))
    assert comparable(edge, result(Source.CLOUD, lines=(reading,)))
