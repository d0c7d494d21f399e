"""Real PP-OCR weights (models/ppocr): fetched honestly, declared, and read correctly.

``models/ppocr/manifest.json`` declares PaddleOCR's PP-OCRv4 mobile detector
(``text-det``) and recogniser (``text-rec-edge``) and the PP-OCRv6 small recogniser
(``text-rec-cloud``), taken from pinned RapidOCR wheels by ``models/ppocr/build.py``.
The files are not in the repository: the session fixture runs the build (pip download
from the package registry, a few seconds) when ``models/ppocr/files`` lacks them, and
the tests that need them skip, saying why, when the build cannot run (no registry, or
``HYBRIDFLEET_PPOCR_BUILD=0``).

The reading test renders a price label (a white card with "WHOLE MILK 1GAL" and
"$3.49" in Pillow's built-in font on a 1280 x 720 frame) and runs the declared chain
``text-det,text-rec-edge`` (and ``-cloud``) on it: two lines in reading order, the price
exact, the name within one character of right. The same on a 640 x 360 JPEG
(quality 30) of it.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.ppocr import build as ppocr
from pipeline.inference.analysis import Analysis, Look
from pipeline.inference.chain import ModelChain
from pipeline.inference.declaration import Expectation
from pipeline.inference.manifest import load_declaration
from pipeline.inference.outputs import Text
from pipeline.inference.runtime import DeclaredModel
from schemas.errors import ModelError
from schemas.messages import Source

NAME, PRICE = "WHOLE MILK 1GAL", "$3.49"
RECOGNISERS = ("text-rec-edge", "text-rec-cloud")


@pytest.fixture(scope="session")
def manifest(ppocr_manifest: Path) -> Path:
    return ppocr_manifest


def _label() -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]]]:
    """A 1280 x 720 RGB frame with a price label, and each line's text box (x0, y0, x1, y1)."""
    image = Image.new("RGB", (1280, 720), (150, 160, 150))
    draw = ImageDraw.Draw(image)
    draw.rectangle((240, 160, 1040, 560), fill=(255, 255, 255))
    boxes = {}
    for text, xy, size in ((NAME, (290, 210), 64), (PRICE, (290, 360), 120)):
        font = ImageFont.load_default(size=size)
        draw.text(xy, text, font=font, fill=(0, 0, 0))
        x0, y0, x1, y1 = draw.textbbox(xy, text, font=font)
        boxes[text] = (int(x0), int(y0), int(x1), int(y1))
    return np.asarray(image), boxes


def _jpeg(image: np.ndarray, size: tuple[int, int], quality: int) -> np.ndarray:
    """``image`` downscaled to ``size`` and through a JPEG of ``quality``, decoded."""
    small = Image.fromarray(image).resize(size, Image.Resampling.BOX)
    data = io.BytesIO()
    small.save(data, "JPEG", quality=quality)
    return np.asarray(Image.open(data).convert("RGB"))


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _read(manifest: Path, recogniser: str, image: np.ndarray) -> Analysis:
    chain = ModelChain.load(f"text-det,{recogniser}", manifest, source=Source.EDGE)
    [analysis] = chain.analyse([Look(image, ())])
    return analysis


def test_manifest_is_what_the_build_writes() -> None:
    """The committed manifest is the build's (no model file needed to check it)."""
    written = json.loads(ppocr.MANIFEST.read_text(encoding="utf-8"))
    assert written == {"schema": 2, "models": ppocr.declarations()}
    for role in ("text-det", *RECOGNISERS):
        declaration, _ = load_declaration(role, ppocr.MANIFEST)
        model = next(m for m in ppocr.MODEL_FILES if declaration.file == f"files/{m.name}")
        assert declaration.sha256 == model.sha256
        assert declaration.provenance["licence"] == "Apache-2.0"
        assert declaration.provenance["wheel"]["sha256"] == model.wheel.sha256


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    """--wheels DIR: a wheel with the right name and other bytes is refused, nothing copied."""
    fake = tmp_path / ppocr.RAPIDOCR_ONNXRUNTIME.filename
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(ppocr.DET_V4.member, b"not a model")
    with pytest.raises(ppocr.BuildError, match=r"SHA-256 .* expected the pinned"):
        ppocr.fetch(tmp_path / "files", wheels=tmp_path)
    assert not (tmp_path / "files" / ppocr.DET_V4.name).exists()


def test_a_missing_wheel_is_named(tmp_path: Path) -> None:
    with pytest.raises(ppocr.BuildError, match=r"rapidocr.*whl is missing"):
        ppocr.fetch(tmp_path / "files", wheels=tmp_path)


def test_the_files_load_as_declared(manifest: Path) -> None:
    """Each file has its pinned SHA-256 (checked at load) and the recognisers' character
    lists (ONNX metadata) fit their outputs: PP-OCRv4 6625 classes, PP-OCRv6 18710."""
    for role, classes in (("text-rec-edge", 6625), ("text-rec-cloud", 18710)):
        model = DeclaredModel.load(role, manifest)
        assert len(model.labels) == classes
        assert model.labels[0] == "<blank>" and model.labels[-1] == " "
    assert DeclaredModel.load("text-det", manifest).task == "text_detect"


@pytest.mark.parametrize("recogniser", RECOGNISERS)
def test_a_price_label_is_read(manifest: Path, recogniser: str) -> None:
    image, boxes = _label()
    analysis = _read(manifest, recogniser, image)
    texts = [line.text for line in analysis.lines]
    assert len(texts) == 2, texts
    name, price = analysis.lines
    assert price.text == PRICE
    assert _distance(name.text, NAME) <= 1, name.text
    for line, text in ((name, NAME), (price, PRICE)):
        x0, y0, x1, y1 = boxes[text]  # the line's box holds the text, a little grown
        box = line.box
        assert box.x <= x0 + 4 and box.y <= y0 + 4, (box, boxes[text])
        assert box.x + box.w >= x1 - 4 and box.y + box.h >= y1 - 4, (box, boxes[text])
        assert box.w <= (x1 - x0) * 1.3 and box.h <= (y1 - y0) * 1.8, (box, boxes[text])
        assert 0.0 <= line.confidence <= 1.0


@pytest.mark.parametrize("recogniser", RECOGNISERS)
def test_a_small_jpeg_of_the_label_is_read(manifest: Path, recogniser: str) -> None:
    """640 x 360, JPEG quality 30: the price still exact; the name within one character
    of right once spaces are ignored (PP-OCRv4's Chinese recogniser drops the spaces
    between small words, with high confidence)."""
    image, _ = _label()
    analysis = _read(manifest, recogniser, _jpeg(image, (640, 360), 30))
    assert [line.text for line in analysis.lines][1:] == [PRICE]
    name = analysis.lines[0].text
    assert _distance(name.replace(" ", ""), NAME.replace(" ", "")) <= 1, name


def test_a_reading_not_in_its_expected_form_is_unsure(manifest: Path) -> None:
    """confidence.expect: the edge reader's own rule passes a well-formed price; a rule
    the same reading breaks makes it unsure (the band's low end) however sure its
    characters are."""
    image, boxes = _label()
    x0, y0, x1, y1 = boxes[PRICE]
    strip = image[y0 - 4 : y1 + 4, x0 - 4 : x1 + 4]
    edge = DeclaredModel.load("text-rec-edge", manifest)
    [answer] = edge.run([strip])
    assert isinstance(answer, Text) and answer.text == PRICE
    sure = edge.confidence_of(answer)
    assert sure == float(answer.char_probabilities.min()) > 0.9
    declaration = edge.declaration
    strict = replace(
        declaration,
        confidence=replace(
            declaration.confidence,
            expect=(Expectation(looks_like=r"\$", must_match=r"\$\d+\.\d\d\d"),),
        ),
    )
    broken = DeclaredModel(strict, edge._session, edge.labels, "test")
    assert broken.confidence_of(answer) == declaration.confidence.uncertain_band[0]


def test_only_a_text_reader_has_an_expected_form() -> None:
    declaration, _ = load_declaration("text-det", ppocr.MANIFEST)
    rule = Expectation(looks_like=r"\d", must_match=r"\d+")
    with pytest.raises(ModelError, match="only a text reader"):
        replace(declaration, confidence=replace(declaration.confidence, expect=(rule,)))
