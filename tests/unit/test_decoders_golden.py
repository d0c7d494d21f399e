"""Every decoder end to end: a small ONNX graph whose outputs we chose, run by ONNX
Runtime, decoded, and the answer checked against values worked out by hand."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from pipeline.inference.decoders import DECODERS
from pipeline.inference.decoders.classify import ProbabilitiesParams, SigmoidParams, SoftmaxParams
from pipeline.inference.decoders.ctc import CtcParams
from pipeline.inference.decoders.db import DbParams
from pipeline.inference.decoders.embedding import EmbeddingParams
from pipeline.inference.decoders.ssd import SsdParams
from pipeline.inference.decoders.yolo import YoloV5Params, YoloV8Params
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Boxes, Classes, Embedding, Text
from schemas.errors import ModelError

NAN = np.nan
A = TypeVar("A", Boxes, Classes, Embedding, Text)


def run_graph(golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run, with ONNX Runtime, a model whose outputs are the ``golden`` tensors.

    Each output is ``Add(<name>_in, <name>_weights)``: the golden tensor is stored in
    the graph, as a model's weights are, and the input is fed zeros.
    """
    nodes, inputs, outputs, weights = [], [], [], []
    for name, value in golden.items():
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        weights.append(numpy_helper.from_array(value, f"{name}_weights"))
        inputs.append(helper.make_tensor_value_info(f"{name}_in", dtype, value.shape))
        outputs.append(helper.make_tensor_value_info(name, dtype, value.shape))
        nodes.append(helper.make_node("Add", [f"{name}_in", f"{name}_weights"], [name]))
    graph = helper.make_graph(nodes, "golden", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"{name}_in": np.zeros_like(value) for name, value in golden.items()}
    return dict(zip(golden, session.run(None, feeds), strict=True))


def decode(
    name: str,
    golden: dict[str, np.ndarray],
    geometries: list[Geometry],
    params: object,
    answer: type[A],
) -> list[A]:
    """Run the golden graph, decode its outputs with the decoder ``name``, and check
    each image got an ``answer``."""
    kind = DECODERS[name]
    assert isinstance(params, kind.params)
    answers = kind.decode(run_graph(golden), geometries, params)
    typed = [a for a in answers if isinstance(a, answer)]
    assert len(typed) == len(answers) == len(geometries)
    return typed


def f32(values: object) -> np.ndarray:
    """``values`` as a float32 array."""
    return np.asarray(values, dtype=np.float32)


# ---------------------------------------------------------------------------- classifiers


def test_probabilities_renormalised_and_tempered() -> None:
    golden = {"probs": f32([[0.2, 0.3, 0.5], [1.0, 1.0, 2.0]])}
    geometries = [Geometry.identity(8, 8)] * 2
    plain = decode("probabilities", golden, geometries, ProbabilitiesParams(), Classes)
    np.testing.assert_allclose(plain[0].probabilities, [0.2, 0.3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(plain[1].probabilities, [0.25, 0.25, 0.5], rtol=1e-6)
    # T = 2 halves the log-probabilities: proportional to sqrt(p).
    soft = decode("probabilities", golden, geometries, ProbabilitiesParams(temperature=2), Classes)
    root = np.sqrt([0.2, 0.3, 0.5])
    np.testing.assert_allclose(soft[0].probabilities, root / root.sum(), rtol=1e-6)


def test_softmax_of_logits() -> None:
    golden = {"logits": f32([[1.0, 2.0, 3.0]])}
    one = [Geometry.identity(8, 8)]
    [answer] = decode("softmax", golden, one, SoftmaxParams(), Classes)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(answer.probabilities, e / e.sum(), rtol=1e-6)
    assert answer.probabilities.dtype == np.float32
    [sharp] = decode("softmax", golden, one, SoftmaxParams(temperature=0.5), Classes)
    e = np.exp([2.0, 4.0, 6.0])
    np.testing.assert_allclose(sharp.probabilities, e / e.sum(), rtol=1e-6)


def test_sigmoid_is_independent_per_class() -> None:
    golden = {"logits": f32([[0.0, 2.0, -2.0, 200.0, -200.0]])}
    [answer] = decode("sigmoid", golden, [Geometry.identity(8, 8)], SigmoidParams(), Classes)
    expected = [0.5, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0)), 1.0, 0.0]
    np.testing.assert_allclose(answer.probabilities, expected, rtol=1e-6, atol=1e-30)
    assert not np.isclose(answer.probabilities.sum(), 1.0)


@pytest.mark.parametrize("name", ["probabilities", "softmax", "sigmoid"])
def test_classifier_output_with_nan_raises(name: str) -> None:
    golden = {"out": f32([[0.1, NAN, 0.2]])}
    with pytest.raises(ModelError, match="NaN"):
        decode(name, golden, [Geometry.identity(8, 8)], DECODERS[name].params(), Classes)


def test_embedding_normalised_or_not() -> None:
    golden = {"vec": f32([[3.0, 4.0], [0.0, 0.0]])}
    geometries = [Geometry.identity(8, 8)] * 2
    unit = decode("embedding", golden, geometries, EmbeddingParams(), Embedding)
    np.testing.assert_allclose(unit[0].vector, [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(unit[1].vector, [0.0, 0.0])
    raw = decode("embedding", golden, geometries, EmbeddingParams(normalize=False), Embedding)
    np.testing.assert_array_equal(raw[0].vector, [3.0, 4.0])
    with pytest.raises(ModelError, match="NaN"):
        decode(
            "embedding", {"vec": f32([[1.0, NAN]])}, geometries[:1], EmbeddingParams(), Embedding
        )


# ----------------------------------------------------------------------------- detectors

# A 1280 x 960 source letterboxed into 640 x 640: scale 0.5, 80 pixels above and below.
LETTERBOX = Geometry(1280, 960, scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=80.0)

# Anchors of a YOLOv8 head with 3 classes: cx, cy, w, h, score of class 0, 1, 2.
V8_ANCHORS = f32(
    [
        [100, 180, 40, 40, 0.0, 0.9, 0.0],  # class 1: input (80, 160, 120, 200)
        [104, 182, 40, 40, 0.0, 0.8, 0.0],  # class 1, IoU 0.75 with the first: suppressed
        [104, 182, 40, 40, 0.0, 0.0, 0.7],  # the same box as class 2: kept per class
        [300, 300, 20, 20, 0.1, 0.0, 0.0],  # below the score threshold
        [NAN, 300, 20, 20, 0.95, 0.0, 0.0],  # a NaN coordinate: dropped
        [500, 400, 20, 20, NAN, 0.0, 0.0],  # a NaN score: counts as 0
        [620, 100, 60, 60, 0.0, 0.0, 0.5],  # crosses the right edge and the top pad
    ]
)
# In source pixels: x / 0.5, (y - 80) / 0.5, clipped to 1280 x 960.
FIRST, SAME_AS_CLASS_2, AT_EDGE = [160, 160, 240, 240], [168, 164, 248, 244], [1180, 0, 1280, 100]


@pytest.mark.parametrize("transposed", [False, True])
def test_yolov8_thresholds_nms_per_class_and_undoes_the_letterbox(transposed: bool) -> None:
    head = V8_ANCHORS[None] if transposed else V8_ANCHORS.T[None]
    params = YoloV8Params(transposed=transposed)
    [boxes] = decode("yolov8", {"output0": head}, [LETTERBOX], params, Boxes)
    np.testing.assert_array_equal(boxes.xyxy, f32([FIRST, SAME_AS_CLASS_2, AT_EDGE]))
    np.testing.assert_array_equal(boxes.scores, f32([0.9, 0.7, 0.5]))
    assert boxes.classes.tolist() == [1, 2, 2]
    assert boxes.classes.dtype == np.int64
    assert boxes.polygons is None


def test_yolov8_class_agnostic_and_max_detections() -> None:
    golden = {"output0": V8_ANCHORS.T[None].copy()}
    [agnostic] = decode("yolov8", golden, [LETTERBOX], YoloV8Params(class_agnostic=True), Boxes)
    np.testing.assert_array_equal(agnostic.xyxy, f32([FIRST, AT_EDGE]))
    assert agnostic.classes.tolist() == [1, 2]
    [two] = decode("yolov8", golden, [LETTERBOX], YoloV8Params(max_detections=2), Boxes)
    assert two.scores.tolist() == pytest.approx([0.9, 0.7])


def test_yolov8_batch_of_two_and_nothing_found() -> None:
    head = np.stack([V8_ANCHORS.T, np.zeros_like(V8_ANCHORS.T)])
    identity = Geometry.identity(640, 640)
    found, empty = decode("yolov8", {"output0": head}, [LETTERBOX, identity], YoloV8Params(), Boxes)
    assert len(found) == 3
    assert len(empty) == 0
    assert empty.xyxy.shape == (0, 4)


def test_yolov5_score_is_objectness_times_class() -> None:
    head = f32(
        [
            [
                [50, 50, 20, 10, 0.9, 0.2, 0.8],  # 0.72, class 1
                [50, 50, 20, 10, 0.2, 1.0, 0.0],  # 0.2: below the threshold
                [150, 20, 10, 10, 1.0, 0.5, 0.1],  # 0.5, class 0
                [150, 20, 10, 10, NAN, 1.0, 1.0],  # NaN objectness: dropped
            ]
        ]
    )
    [boxes] = decode(
        "yolov5", {"output": head}, [Geometry.identity(200, 100)], YoloV5Params(), Boxes
    )
    np.testing.assert_array_equal(boxes.xyxy, f32([[40, 45, 60, 55], [145, 15, 155, 25]]))
    np.testing.assert_allclose(boxes.scores, [0.72, 0.5], rtol=1e-6)
    assert boxes.classes.tolist() == [1, 0]


def test_ssd_four_outputs_normalised_yxyx_with_count() -> None:
    golden = {
        "detection_boxes": f32(
            [[[0.25, 0.125, 0.5, 0.375], [0.5, 0.5, 0.625, 0.75], [0.0, 0.0, 1.0, 1.0]]]
        ),
        "detection_scores": f32([[0.8, 0.6, 0.9]]),
        "detection_classes": f32([[3.0, 1.0, 2.0]]),
        "num_detections": f32([2.0]),  # the third row is padding
    }
    params = SsdParams(count_output="num_detections", class_offset=1)
    [boxes] = decode("ssd", golden, [LETTERBOX], params, Boxes)
    # The input is 1280 * 0.5 x (960 * 0.5 + 2 * 80) = 640 x 640; the first box is
    # x 80..240, y 160..320 there, and x 160..480, y 160..480 in the source.
    np.testing.assert_array_equal(boxes.xyxy, f32([[160, 160, 480, 480], [640, 480, 960, 640]]))
    np.testing.assert_array_equal(boxes.scores, f32([0.8, 0.6]))
    assert boxes.classes.tolist() == [2, 0]


def test_ssd_three_outputs_in_pixels_with_nms_and_nan() -> None:
    golden = {
        "boxes": f32([[[10, 10, 50, 50], [12, 10, 52, 50], [60, 60, 80, 90], [0, 0, 5, 5]]]),
        "scores": f32([[0.9, 0.8, NAN, 0.7]]),
        "classes": np.array([[0, 0, 1, 1]], dtype=np.int64),
    }
    params = SsdParams(
        boxes_output="boxes",
        scores_output="scores",
        classes_output="classes",
        box_format="xyxy",
        normalized=False,
        nms=True,
    )
    [boxes] = decode("ssd", golden, [Geometry.identity(100, 100)], params, Boxes)
    np.testing.assert_array_equal(boxes.xyxy, f32([[10, 10, 50, 50], [0, 0, 5, 5]]))
    assert boxes.classes.tolist() == [0, 1]
    assert np.all(np.isfinite(boxes.scores))


# ---------------------------------------------------------------------------- text: ctc

LABELS = (*"0123456789$.", " ")  # PaddleOCR style: the dictionary's lines, then a space


def steps(spelled: list[tuple[str, float]], length: int) -> np.ndarray:
    """Per-step probabilities [length, 14]: each step's character ("" for the blank)
    gets its probability, the other classes share the rest; blanks pad the end."""
    rows = np.zeros((length, len(LABELS) + 1), dtype=np.float32)
    padded = spelled + [("", 0.9)] * (length - len(spelled))
    for row, (char, p) in zip(rows, padded, strict=True):
        row[:] = (1.0 - p) / len(LABELS)
        row[LABELS.index(char) + 1 if char else 0] = p
    return rows


PRICE = [("", 0.9), ("$", 0.6), ("$", 0.95), ("", 0.8), ("3", 0.85), ("3", 0.7), (".", 0.3)]
PRICE += [("", 0.9), ("4", 0.88), ("", 0.99), ("9", 0.77), ("9", 0.9)]
ONE_ONE = [("1", 0.9), ("1", 0.8), ("", 0.9), ("1", 0.7)]


@pytest.mark.parametrize("logits", [False, True])
def test_ctc_collapses_repeats_drops_blanks_and_keeps_run_maxima(logits: bool) -> None:
    probs = np.stack([steps(PRICE, 12), steps(ONE_ONE, 12), steps([], 12)])
    golden = {"softmax_out": np.log(probs) if logits else probs}
    params = CtcParams(labels=LABELS, logits=logits)
    price, ones, nothing = decode("ctc", golden, [Geometry.identity(320, 48)] * 3, params, Text)
    assert price.text == "$3.49"
    # "$" is the best of its run (0.6, 0.95); "." is the uncertain one.
    np.testing.assert_allclose(price.char_probabilities, [0.95, 0.85, 0.3, 0.88, 0.9], rtol=1e-5)
    assert price.char_probabilities.dtype == np.float32
    assert ones.text == "11"  # a blank between repeats keeps both
    np.testing.assert_allclose(ones.char_probabilities, [0.9, 0.7], rtol=1e-5)
    assert nothing.text == ""
    assert nothing.char_probabilities.shape == (0,)


def test_ctc_nan_raises_and_labels_must_match_the_classes() -> None:
    probs = steps(PRICE, 12)[None].copy()
    one = [Geometry.identity(320, 48)]
    with pytest.raises(ModelError, match="14 classes but labels give 12"):
        decode("ctc", {"out": probs}, one, CtcParams(labels=LABELS[:-1]), Text)
    probs[0, 3, 5] = NAN
    with pytest.raises(ModelError, match="NaN"):
        decode("ctc", {"out": probs}, one, CtcParams(labels=LABELS), Text)


# ----------------------------------------------------------------------------- text: db

# A 96 x 64 map from a 192 x 100 source at scale 0.5 with 7 pixels above and below.
DB_GEOMETRY = Geometry(192, 100, scale_x=0.5, scale_y=0.5, pad_x=0.0, pad_y=7.0)


def expected_text_box(x0: int, x1: int, y0: int, y1: int) -> list[list[float]]:
    """The corners in source pixels of the box DB makes of a rectangle of map pixels
    x0..x1, y0..y1 (inclusive): the rectangle through the pixel centres, w = x1 - x0
    by h = y1 - y0, grown on each side by w * h * 1.5 / (2 * (w + h))."""
    w, h = x1 - x0, y1 - y0
    d = w * h * 1.5 / (2 * (w + h))
    left, right = (x0 - d) / 0.5, (x1 + d) / 0.5
    top, bottom = (y0 - d - 7) / 0.5, (y1 + d - 7) / 0.5
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def test_db_two_lines_in_reading_order() -> None:
    prob = np.zeros((64, 96), dtype=np.float32)
    prob[14:24, 50:80] = 0.9  # line 1, right
    prob[16:26, 5:25] = 0.95  # line 1, left: lower by 2 pixels, still the same line
    prob[40:50, 8:38] = 0.8  # line 2
    prob[55:61, 60:91] = 0.5  # above the bitmap threshold, below the box threshold
    prob[2:4, 90:92] = 0.9  # smaller than min_size
    prob[30:34, 60:70] = NAN  # not text
    prob[30:34, 80:90] = np.inf  # not text either
    golden = {"sigmoid_0.tmp_0": prob[None, None]}
    [boxes] = decode("db", golden, [DB_GEOMETRY], DbParams(), Boxes)
    expected = f32(
        [
            expected_text_box(5, 24, 16, 25),
            expected_text_box(50, 79, 14, 23),
            expected_text_box(8, 37, 40, 49),
        ]
    )
    expected[..., 0] = np.clip(expected[..., 0], 0, 192)
    assert boxes.polygons is not None
    assert boxes.polygons.shape == (3, 4, 2)
    assert boxes.polygons.dtype == np.float32
    np.testing.assert_allclose(boxes.polygons, expected, atol=0.01)
    np.testing.assert_allclose(boxes.xyxy, expected[:, [0, 2]].reshape(3, 4), atol=0.01)
    np.testing.assert_allclose(boxes.scores, [0.95, 0.9, 0.8], rtol=1e-5)
    assert boxes.classes.tolist() == [0, 0, 0]


def test_db_blank_map_finds_nothing() -> None:
    golden = {"maps": np.zeros((2, 1, 64, 96), dtype=np.float32)}
    for boxes in decode("db", golden, [DB_GEOMETRY] * 2, DbParams(), Boxes):
        assert boxes.xyxy.shape == (0, 4)
        assert boxes.polygons is not None
        assert boxes.polygons.shape == (0, 4, 2)


def test_a_box_wholly_in_the_letterbox_border_is_dropped() -> None:
    # 640x360 letterboxed into 640x640: rows 0-139 and 500-639 are border.
    geometry = Geometry(640, 360, 1.0, 1.0, 0.0, 140.0)
    head = np.zeros((1, 4 + 1, 2), dtype=np.float32)
    head[0, :, 0] = [320, 60, 100, 40, 0.9]  # centre in the top border: nothing in the image
    head[0, :, 1] = [320, 320, 100, 40, 0.8]  # in the image
    (found,) = DECODERS["yolov8"].decode({"output0": head}, [geometry], YoloV8Params())
    assert isinstance(found, Boxes) and len(found) == 1
    np.testing.assert_allclose(found.xyxy, [[270, 160, 370, 200]])
    assert found.scores.tolist() == pytest.approx([0.8])
