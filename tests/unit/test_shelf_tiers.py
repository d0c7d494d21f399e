"""Edge-only, hybrid and cloud-only shelf reading from one pass (pipeline/camera/shelf/tiers.py).

Hand-made line records with the tiers' figures worked out by hand; the escalation
signals; then the real PP-OCR models (models/ppocr, built as tests/unit/test_ppocr.py
builds them, skipped where they cannot be) on one drawn price label, and a tiny
generated video decoded back.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from models.ppocr import build as ppocr
from pipeline.camera.shelf.labels import PRODUCTS, STYLES, LabelSpec, render_label
from pipeline.camera.shelf.scoring import TruthLine
from pipeline.camera.shelf.tiers import (
    FramePass,
    LineRead,
    LineRecord,
    Readers,
    budget,
    compare_tiers,
    decode_frames,
    in_band,
    looks_like_price,
    read_frame,
    signal,
)
from pipeline.camera.shelf.writer import write_shelf_video
from schemas.messages import Region

BAND = (0.25, 0.9)
TRUTH = (
    TruthLine(0, 1, "price", "$3.49", (0.0, 0.0, 50.0, 20.0)),
    TruthLine(0, 2, "price", "$1.29", (100.0, 0.0, 150.0, 20.0)),
    TruthLine(0, 1, "name", "MILK", (0.0, 30.0, 50.0, 40.0)),
)


def _read(text: str, confidence: float, mean: float | None = None) -> LineRead:
    return LineRead(text, confidence, confidence, confidence if mean is None else mean)


def _line(index: int, truth: int | None, edge: LineRead, cloud: LineRead) -> LineRecord:
    return LineRecord(0, index, Region(10 * index, 0, 5, 5), truth, edge, cloud)


LINES = (
    _line(0, 0, _read("$3.49", 0.95), _read("$3.49", 0.99)),
    _line(1, 1, _read("$1.20", 0.5, mean=0.9), _read("$1.29", 0.9)),
    _line(2, 2, _read("MLK", 0.2), _read("MILK", 0.8)),  # below the band: never asked
    _line(3, None, _read("III", 0.6, mean=0.3), _read("II", 0.3)),  # a barcode: extra
)
PASS = FramePass(0, TRUTH, LINES, {"det": 0.0})


def test_the_three_tiers_by_hand() -> None:
    edge, hybrid, cloud = compare_tiers([PASS], BAND)
    assert [row.tier for row in (edge, hybrid, cloud)] == ["edge-only", "hybrid", "cloud-only"]
    assert [row.escalated for row in (edge, hybrid, cloud)] == [0.0, 0.5, 1.0]
    # 14 characters: $3.49, $1.29, MILK
    assert (edge.tally.prices_exact, edge.tally.edits_all) == (1, 2)
    assert (hybrid.tally.prices_exact, hybrid.tally.edits_all) == (2, 1)
    assert (cloud.tally.prices_exact, cloud.tally.edits_all) == (2, 0)
    assert hybrid.tally.cer_all == pytest.approx(1 / 14)
    assert {row.tally.extra for row in (edge, hybrid, cloud)} == {1}


def test_the_band_takes_its_low_end_and_not_its_high_end() -> None:
    escalate = in_band(0.5, 0.95)
    assert [escalate(line) for line in LINES] == [False, True, False, True]
    by_mean = in_band(0.25, 0.5, signal("mean_char"))
    assert [by_mean(line) for line in LINES] == [False, False, False, True]


def test_a_budget_takes_the_least_sure_lines_at_or_above_the_floor() -> None:
    rank = signal("min_char")
    picked = [[budget([PASS], rank, share, 0.25)(x) for x in LINES] for share in (0.25, 0.5, 1)]
    assert picked == [
        [False, True, False, False],  # 1 of 4 lines: 0.5 first
        [False, True, False, True],
        [True, True, False, True],  # the 0.2 line stays under the floor
    ]


def test_a_reading_that_should_be_a_price_but_is_not_is_unsure() -> None:
    price_aware = signal("min_char+price", low=0.25)
    assert price_aware(_line(0, 0, _read("53.49", 0.97), _read("", 0))) == 0.25
    assert price_aware(_line(0, 0, _read("$3,49", 0.97), _read("", 0))) == 0.25
    assert price_aware(_line(0, 0, _read("$3.49", 0.97), _read("", 0))) == 0.97
    assert price_aware(_line(0, 0, _read("$0.03/oz", 0.8), _read("", 0))) == 0.8
    assert [looks_like_price(t) for t in ("$ 3.49", "63.29", "564", "MILK 1GAL", "$0.1/oz")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        signal("max_char")


@pytest.fixture(scope="module")
def readers() -> Readers:
    """The three PP-OCR models, built if their files are missing (or skipped)."""
    if not ppocr.ready():
        if os.environ.get("HYBRIDFLEET_PPOCR_BUILD", "1") == "0":
            pytest.skip("the PP-OCR model files are not built; run `python -m models.ppocr.build`")
        try:
            ppocr.build()
        except ppocr.BuildError as e:
            pytest.skip(f"the PP-OCR model files are not built and the build failed: {e}")
    return Readers.load(ppocr.MANIFEST)


def test_one_label_read_by_both_recognisers(readers: Readers) -> None:
    spec = LabelSpec(PRODUCTS[0], 349, STYLES[0], ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"), 1.8)
    card = render_label(spec, 200)
    image = np.full((360, 640, 3), 120, dtype=np.uint8)
    x, y = 140, 80
    h, w = card.image.shape[:2]
    image[y : y + h, x : x + w] = card.image
    truth = tuple(
        TruthLine(
            0,
            1,
            line.kind,
            line.text,
            (line.box[0] + x, line.box[1] + y, line.box[2] + x, line.box[3] + y),
        )
        for line in card.lines
    )
    one = read_frame(readers, 0, image, truth)
    assert set(one.seconds) == {"det", "edge_rec", "cloud_rec"}
    price = next(line for line in one.lines if line.truth == 1)  # card.lines: name, price, unit
    assert (price.edge.text, price.cloud.text) == ("$3.49", "$3.49")
    assert 0.0 < price.edge.min_char <= price.edge.mean_char <= 1.0
    assert price.edge.confidence == price.edge.min_char  # the declared signal is min_char
    assert sorted(line.truth for line in one.lines if line.truth is not None) == [0, 1, 2]
    edge, _, cloud = compare_tiers([one], readers.band)
    assert edge.tally.price_exact == cloud.tally.price_exact == 1.0
    assert readers.band == (0.25, 0.5)  # the edge reader's band in models/ppocr/manifest.json


def test_decode_frames_gives_the_frames_asked_for(tmp_path: Path) -> None:
    video = write_shelf_video(tmp_path / "tiny.mp4", seconds=0.6, width=320, height=180, fps=5)
    frames = list(decode_frames(video.video))
    assert [n for n, _ in frames] == [0, 1, 2]
    assert {image.shape for _, image in frames} == {(180, 320, 3)}
    assert [n for n, _ in decode_frames(video.video, [1])] == [1]
