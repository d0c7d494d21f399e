"""Scoring a reader against a shelf video's ground truth (pipeline/camera/shelf/scoring.py):
hand-made truth lines and readings with the figures worked out by hand, then the real
generator's records read back and scored against themselves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipeline.camera.shelf.scene import ShelfConfig, ShelfScene
from pipeline.camera.shelf.scoring import (
    LineScope,
    Reading,
    Tally,
    TruthLine,
    load_truth,
    match_lines,
    normalise,
    score_frame,
    score_frames,
    tally_frame,
    truth_lines,
)
from schemas.messages import Region, Source, TextLine

NAME = TruthLine(0, 1, "name", "WHOLE MILK 1GAL", (10.0, 10.0, 110.0, 20.0))  # 13 chars
PRICE = TruthLine(0, 1, "price", "$3.49", (10.0, 25.0, 60.0, 45.0))
UNIT = TruthLine(0, 1, "unit_price", "$0.03/oz", (10.0, 48.0, 50.0, 54.0), occluded=True)
OTHER = TruthLine(0, 2, "price", "$1.29", (200.0, 25.0, 250.0, 45.0))
TRUTH = (NAME, PRICE, UNIT, OTHER)


def test_a_frame_by_hand() -> None:
    readings: list[Reading] = [
        (Region(8, 8, 105, 14), "WHOLE MILK IGAL"),  # centre (60.5, 15): the name, 1 edit
        TextLine(Region(8, 23, 55, 24), "$3.49", 0.9, Source.EDGE),  # the price, exact
        (Region(9, 46, 42, 10), "$0.03/oz"),  # the occluded line: neither scored nor extra
        (Region(400, 400, 20, 10), "junk"),  # nothing there: extra
    ]
    score = score_frame(0, TRUTH, readings)
    t = score.tally
    assert score.frame == 0
    assert (t.lines, t.matched, t.skipped, t.extra) == (3, 2, 1, 1)
    assert (t.chars, t.chars_matched, t.edits_matched, t.edits_all) == (23, 18, 1, 6)
    assert t.cer_matched == pytest.approx(1 / 18)
    assert t.cer_all == pytest.approx(6 / 23)  # the missed $1.29 costs its 5 characters
    assert (t.prices, t.prices_exact, t.price_exact) == (2, 1, 0.5)
    assert t.match_rate == pytest.approx(2 / 3)


def test_occluded_lines_count_when_the_scope_says_so() -> None:
    readings = [(Region(9, 46, 42, 10), "$0.08/oz")]
    t = score_frame(0, TRUTH, readings, LineScope(skip_occluded=False)).tally
    assert (t.lines, t.matched, t.skipped, t.extra) == (4, 1, 0, 0)
    assert (t.chars, t.edits_matched) == (31, 1)


def test_the_scope_keeps_kinds_and_tall_enough_lines() -> None:
    prices = LineScope(kinds=frozenset({"price"}))
    assert [line.text for line in TRUTH if prices.counts(line)] == ["$3.49", "$1.29"]
    tall = LineScope(min_height=15.0)  # the name is 10 high, the prices 20
    assert [line.text for line in TRUTH if tall.counts(line)] == ["$3.49", "$1.29"]
    t = score_frame(0, TRUTH, [(Region(8, 8, 105, 14), "WHOLE MILK 1GAL")], tall).tally
    assert (t.lines, t.matched, t.skipped, t.extra) == (2, 0, 2, 0)


def test_matching_is_one_to_one_and_prefers_the_larger_overlap() -> None:
    loose = Region(0, 15, 80, 40)  # centre (40, 35) inside the price; IoU 0.31
    tight = Region(10, 25, 50, 20)  # the price's box exactly
    assert match_lines([loose, tight], [PRICE]) == [(1, 0)]
    t = score_frame(0, (PRICE,), [(loose, "$3.49"), (tight, "$3.40")]).tally
    assert (t.matched, t.extra, t.prices_exact, t.edits_matched) == (1, 1, 0, 1)


def test_a_padded_box_matches_a_thin_line_by_its_centre() -> None:
    thin = TruthLine(0, 1, "name", "COLA", (100.0, 100.0, 160.0, 105.0))  # 5 px of ink
    padded = Region(96, 94, 68, 17)  # IoU 0.26, centre (130, 102.5)
    assert match_lines([padded], [thin]) == [(0, 0)]
    beside = Region(96, 106, 68, 17)  # centre below the line, no overlap
    assert match_lines([beside], [thin]) == []


def test_text_ignores_whitespace_and_a_lines_cost_is_capped() -> None:
    assert normalise(" $3. 49\t") == "$3.49"
    t = tally_frame((PRICE, OTHER), ["$3 .49", "XXXXXXXXXXXXXXXXXXXX"])
    assert (t.prices_exact, t.edits_matched, t.cer_all) == (1, 5, 0.5)


def test_tallies_add_and_empty_ones_have_no_rates() -> None:
    a = Tally(lines=2, matched=1, chars=10, chars_matched=5, edits_matched=1, prices=1)
    b = Tally(lines=1, matched=1, extra=3, chars=4, chars_matched=4, prices=1, prices_exact=1)
    total = a + b
    assert (total.lines, total.matched, total.extra, total.chars) == (3, 2, 3, 14)
    assert (total.edits_all, total.price_exact) == (6, 0.5)
    empty = Tally()
    assert math.isnan(empty.cer_all) and math.isnan(empty.price_exact)
    with pytest.raises(ValueError):
        tally_frame(TRUTH, ["x"])


def _record(frame: int, price: str) -> dict[str, object]:
    line = {"kind": "price", "text": price, "box": [10, 25, 60, 45], "quad": [], "occluded": False}
    label = {"id": 7, "slot": 0, "size": "near", "price": price, "lines": [line]}
    return {"frame": frame, "labels": [label], "faces": []}


def test_load_truth_and_score_frames(tmp_path: Path) -> None:
    path = tmp_path / "shelf.jsonl"
    path.write_text(
        "".join(json.dumps(_record(n, p)) + "\n" for n, p in ((0, "$1.00"), (1, "$2.00")))
    )
    truth = load_truth(path)
    assert truth[1] == (TruthLine(1, 7, "price", "$2.00", (10.0, 25.0, 60.0, 45.0)),)
    box = Region(10, 25, 50, 20)
    score = score_frames(truth, [(0, [(box, "$1.00")]), (1, [(box, "$2.08")])])
    assert [s.tally.prices_exact for s in score.frames] == [1, 0]
    assert (score.total.prices, score.total.prices_exact, score.total.edits_all) == (2, 1, 1)
    with pytest.raises(KeyError):
        score_frames(truth, [(5, [])])


def test_the_generators_records_scored_against_themselves() -> None:
    frame = next(iter(ShelfScene(ShelfConfig(640, 360, fps=5, frames=1, seed=3))))
    lines = truth_lines(frame.truth)
    labels = frame.truth["labels"]
    assert isinstance(labels, list)
    assert len(lines) == 3 * len(labels) > 0
    readings = [(line.region, line.text) for line in lines]
    t = score_frame(0, lines, readings, LineScope(skip_occluded=False)).tally
    assert (t.lines, t.matched, t.extra, t.edits_all) == (len(lines), len(lines), 0, 0)
    assert t.prices == t.prices_exact == len(labels)
