"""The text path end to end: a "PaddleOCR pair" declared only by manifest entries.

Two small ONNX graphs, built here with ``onnx.helper`` so that their outputs are known:

* a text detector ``x [N, 3, H, W] -> [N, 1, H, W]``: Sigmoid(K * (EDGE - the mean over
  channels of the normalised input)), so dark strokes on a light background are text
  (probability ~1) and the background is not (~0);
* a text recogniser ``x [N, 3, 48, W] -> [N, T, C]``: per-step probabilities that
  spell "$3.49" whatever the input (a constant expanded to the batch, plus
  ``0 * ReduceSum(x)`` so the input is used), its characters in the file's
  ``character`` metadata, newline-joined, as PaddleOCR stores them.

A schema-2 manifest declares them (task, input, decoder, labels, confidence); the
chain ``text-det,text-rec`` then reads a white frame with two dark text-line-shaped
rectangles: two lines, in reading order, boxed around the rectangles as DB unclips
them, each "$3.49", each with the declared signal of the constant output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.inference.analysis import Analysis, Look
from pipeline.inference.chain import ModelChain
from pipeline.inference.outputs import Text
from pipeline.inference.runtime import DeclaredModel
from schemas.errors import ModelError
from schemas.messages import Region, Source

OPSET = 17
CHARACTERS = (*"0123456789", "$", ".")  # the dictionary's lines (PaddleOCR: en_dict.txt)
CLASSES = ("<blank>", *CHARACTERS, " ")  # blank 0, then the characters, then the space
# PaddleOCR det's normalisation (ImageNet's), and the detector's own constants.
DET_MEAN, DET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SHARPNESS, EDGE = 10.0, 0.2  # white ~ +2.4 and black ~ -2.0 after normalisation
BAND = (0.5, 0.85)  # the recogniser's uncertain_band

# The frame: 640 x 360 white, two dark 200 x 30 "text lines" (x, y, w, h). The lower
# one is further left, so reading order is not left-to-right order.
WIDTH, HEIGHT = 640, 360
RECTANGLES = (Region(360, 60, 200, 30), Region(60, 220, 200, 30))

# The recogniser's steps: (character, its probability), "" for the blank. "$" is read
# over two steps (its probability the higher of the run), "4" too.
CONFIDENT = [("", 0.99), ("$", 0.93), ("$", 0.97), ("", 0.98), ("3", 0.95), (".", 0.9)]
CONFIDENT += [("", 0.97), ("4", 0.91), ("4", 0.94), ("9", 0.96), ("", 0.99), ("", 0.99)]
# The same with "." at 0.55: in the band, so the line is one the edge is unsure of.
UNSURE = [(c, 0.55 if c == "." else p) for c, p in CONFIDENT]


def _model(graph: onnx.GraphProto, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=9)
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def text_detector() -> onnx.ModelProto:
    """``x [N, 3, H, W]`` (dynamic) -> ``maps [N, 1, H, W]`` = Sigmoid(K * (EDGE - mean_c x))."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["edge", "mean"], ["dark"]),
        helper.make_node("Mul", ["dark", "sharpness"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["maps"]),
    ]
    weights = [
        numpy_helper.from_array(np.array(EDGE, dtype=np.float32), "edge"),
        numpy_helper.from_array(np.array(SHARPNESS, dtype=np.float32), "sharpness"),
    ]
    graph = helper.make_graph(
        nodes,
        "text-detector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        weights,
    )
    return _model(graph)


def steps(spelled: list[tuple[str, float]]) -> np.ndarray:
    """Per-step probabilities [T, C]: each step's class gets its probability, the other
    classes share the rest equally (so each row sums to 1 and its class is the best)."""
    rows = np.zeros((len(spelled), len(CLASSES)), dtype=np.float32)
    for row, (char, p) in zip(rows, spelled, strict=True):
        row[:] = (1.0 - p) / (len(CLASSES) - 1)
        row[CLASSES.index(char) if char else 0] = p
    return rows


def text_recogniser(spelled: list[tuple[str, float]], *, character: bool = True) -> onnx.ModelProto:
    """``x [N, 3, 48, W]`` -> ``softmax [N, T, C]``: ``steps(spelled)`` for every line."""
    table = steps(spelled)[None]  # [1, T, C]
    tail = np.array(table.shape[1:], dtype=np.int64)
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], start=0, end=1),  # [N]
        helper.make_node("Concat", ["x_shape", "tail"], ["out_shape"], axis=0),  # [N, T, C]
        helper.make_node("Expand", ["table", "out_shape"], ["spelled"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),  # uses the input
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["spelled", "nothing"], ["softmax"]),
    ]
    weights = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(tail, "tail"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    graph = helper.make_graph(
        nodes,
        "text-recogniser",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 48, "W"])],
        [helper.make_tensor_value_info("softmax", TensorProto.FLOAT, ["N", *table.shape[1:]])],
        weights,
    )
    return _model(graph, {"character": "\n".join(CHARACTERS)} if character else None)


def _write(model: onnx.ModelProto, path: Path) -> str:
    data = model.SerializeToString()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_manifest(
    folder: Path,
    spelled: list[tuple[str, float]],
    *,
    character: bool = True,
    signal: str = "min_char",
) -> Path:
    """Both models and their schema-2 ``manifest.json`` (as ``models/random/build.py``
    writes one) in ``folder``; returns the manifest's path."""
    provenance = {"script": "tests/unit/test_text_chain.py", "weights": "hand-set, known outputs"}
    det = {
        "name": "toy-db-det",
        "version": "1.0.0",
        "file": "det.onnx",
        "sha256": _write(text_detector(), folder / "det.onnx"),
        "task": "text_detect",
        "input": {
            "name": "x",
            "multiple": 32,
            "max_side": 960,
            "colour": "bgr",
            "mean": DET_MEAN,
            "std": DET_STD,
        },
        "decoder": {
            "type": "db",
            "bitmap_threshold": 0.3,
            "box_threshold": 0.6,
            "unclip_ratio": 1.5,
        },
        "provenance": provenance,
    }
    rec = {
        "name": "toy-ctc-rec",
        "version": "1.0.0",
        "file": "rec.onnx",
        "sha256": _write(text_recogniser(spelled, character=character), folder / "rec.onnx"),
        "task": "text_recognize",
        "input": {
            "name": "x",
            "height": 48,
            "width": 320,
            "resize": "fit_height",
            "colour": "bgr",
            "mean": [0.5],
            "std": [0.5],
        },
        "decoder": {"type": "ctc", "blank": 0},
        "labels": {"metadata": "character"},
        "confidence": {"signal": signal, "uncertain_band": list(BAND)},
        "provenance": provenance,
    }
    manifest: dict[str, Any] = {"schema": 2, "models": {"text-det": det, "text-rec": rec}}
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def frame() -> np.ndarray:
    """640 x 360 white RGB with the dark RECTANGLES."""
    image = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    for r in RECTANGLES:
        image[r.y : r.y + r.h, r.x : r.x + r.w] = (20, 20, 30)
    return image


def unclipped(r: Region) -> tuple[float, float, float, float]:
    """The source box (x1, y1, x2, y2) DB makes of rectangle ``r``, worked out by hand.

    The detector sees the frame at 640 x 352 (sides rounded to multiples of 32), so
    y scales by s = 352 / 360. The dark pixels' outline through their centres is
    (w - 1) x (h * s - 1) map pixels; unclip grows it on every side by
    d = area * 1.5 / perimeter; back in source pixels the vertical growth is d / s.
    """
    s = 352 / HEIGHT
    w, h = r.w - 1.0, r.h * s - 1.0
    d = w * h * 1.5 / (2.0 * (w + h))
    return (
        max(0.0, r.x - d),
        max(0.0, r.y - d / s),
        min(float(WIDTH), r.x + r.w - 1 + d),
        min(float(HEIGHT), r.y + r.h - 1 / s + d / s),
    )


def expected_confidence(spelled: list[tuple[str, float]], signal: str) -> float:
    """The declared signal of the constant output: per character (a run of one class)
    its best step, then the lowest (``min_char``) or the mean (``mean_char``)."""
    best: list[float] = []
    previous = None
    for char, p in spelled:
        if char and char == previous:
            best[-1] = max(best[-1], float(np.float32(p)))
        elif char:
            best.append(float(np.float32(p)))
        previous = char
    chars = np.array(best, dtype=np.float32)
    return float(chars.min() if signal == "min_char" else chars.mean())


def read(manifest: Path, threshold: float | None = None) -> Analysis:
    chain = ModelChain.load("text-det,text-rec", manifest, source=Source.EDGE)
    assert chain.name == "toy-db-det+toy-ctc-rec"
    (analysis,) = chain.analyse([Look(frame(), (), threshold)])
    return analysis


def assert_read_as_drawn(analysis: Analysis, confidence: float) -> None:
    """Two lines, in reading order, around the rectangles, each "$3.49" at ``confidence``."""
    assert analysis.detections == ()
    assert len(analysis.lines) == 2
    for line, r in zip(analysis.lines, RECTANGLES, strict=True):
        assert line.text == "$3.49"
        assert line.source is Source.EDGE
        assert line.confidence == confidence
        x1, y1, x2, y2 = unclipped(r)
        box = line.box  # whole pixels: floor of the top-left, ceil of the bottom-right
        got = (box.x, box.y, box.x + box.w, box.y + box.h)
        assert got == pytest.approx((x1, y1, x2, y2), abs=2.0), (got, (x1, y1, x2, y2))
        # The box holds the whole rectangle, with DB's margin around it.
        assert box.x < r.x and box.y < r.y
        assert box.x + box.w > r.x + r.w and box.y + box.h > r.y + r.h


def test_the_text_path_reads_two_lines_in_reading_order(tmp_path: Path) -> None:
    analysis = read(write_manifest(tmp_path, CONFIDENT))
    confidence = expected_confidence(CONFIDENT, "min_char")
    assert confidence == float(np.float32(0.9))
    assert_read_as_drawn(analysis, confidence)
    assert analysis.asks == ()  # 0.9 is at or above the band's top (0.85)
    assert analysis.confidence == confidence
    assert analysis.threshold == BAND[1]


def test_a_low_character_puts_the_lines_in_asks(tmp_path: Path) -> None:
    analysis = read(write_manifest(tmp_path, UNSURE))
    confidence = expected_confidence(UNSURE, "min_char")
    assert confidence == float(np.float32(0.55))
    assert_read_as_drawn(analysis, confidence)
    assert analysis.asks == tuple(line.box for line in analysis.lines)
    assert analysis.confidence == confidence
    # A frame threshold under the line's confidence replaces the band's top: not unsure.
    lenient = read(tmp_path / "manifest.json", threshold=0.5)
    assert lenient.threshold == 0.5 and lenient.asks == ()
    assert lenient.confidence == confidence


def test_the_mean_char_signal_is_the_mean_of_the_characters(tmp_path: Path) -> None:
    analysis = read(write_manifest(tmp_path, UNSURE, signal="mean_char"))
    confidence = expected_confidence(UNSURE, "mean_char")
    assert confidence == pytest.approx((0.97 + 0.95 + 0.55 + 0.94 + 0.96) / 5, abs=1e-6)
    assert_read_as_drawn(analysis, confidence)
    assert analysis.asks == ()  # the mean (~0.87) is above the band


def test_the_models_are_what_their_entries_declare(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, CONFIDENT)
    det = DeclaredModel.load("text-det", manifest)
    rec = DeclaredModel.load("text-rec", manifest)
    assert (det.task, rec.task) == ("text_detect", "text_recognize")
    assert det.labels == () and det.label_name(0) == "text"
    assert rec.labels == CLASSES  # ["<blank>", *character, " "]
    # The recogniser spells the same whatever it is shown, one answer per line.
    blank, noise = np.full((30, 90, 3), 255, np.uint8), np.zeros((48, 400, 3), np.uint8)
    answers = rec.run([blank, noise])
    assert all(isinstance(a, Text) for a in answers)
    assert [a.text for a in answers if isinstance(a, Text)] == ["$3.49", "$3.49"]


def test_a_blank_frame_has_no_lines_and_full_confidence(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, UNSURE)
    chain = ModelChain.load("text-det,text-rec", manifest, source=Source.EDGE)
    white = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    (analysis,) = chain.analyse([Look(white, ())])
    assert analysis.lines == () and analysis.asks == () and analysis.confidence == 1.0


def test_a_recogniser_without_its_character_metadata_is_refused(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, CONFIDENT, character=False)
    with pytest.raises(ModelError, match=r"models\.text-rec: labels\.metadata.*'character'"):
        ModelChain.load("text-det,text-rec", manifest, source=Source.EDGE)
