"""The decoders' registry, their parameters' validation (by pipeline.declared), and
the errors that name what to fix when a model's outputs do not match its manifest."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.declared import build_variant
from pipeline.inference.decoders import DECODERS
from pipeline.inference.decoders.classify import SoftmaxParams
from pipeline.inference.decoders.ctc import CtcParams
from pipeline.inference.decoders.db import DbParams
from pipeline.inference.decoders.ssd import SsdParams
from pipeline.inference.decoders.yolo import YoloV8Params
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Text
from schemas.errors import ModelError

ONE = [Geometry.identity(64, 64)]


def test_every_decoder_is_registered_with_defaults_that_validate() -> None:
    assert sorted(DECODERS) == [
        "ctc",
        "db",
        "embedding",
        "probabilities",
        "sigmoid",
        "softmax",
        "ssd",
        "yolov5",
        "yolov8",
    ]
    for name, kind in DECODERS.items():
        assert kind.name == name
        assert kind.params.decoder == name
        kind.params()


def _built(name: str, fields: dict[str, Any]) -> Any:
    """Parameters as the manifest path builds them (``ModelDeclaration.decoder``)."""
    registry = {n: kind.params for n, kind in DECODERS.items()}
    table = {"type": name, **fields}
    return build_variant(registry, table, "manifest.json", path="models.m.decoder").params


def test_json_values_are_converted() -> None:
    params = _built("yolov8", {"score_threshold": 1, "iou_threshold": 0})
    assert params == YoloV8Params(score_threshold=1.0, iou_threshold=0.0)
    assert isinstance(params.score_threshold, float)
    assert isinstance(params.iou_threshold, float)
    assert _built("ctc", {"labels": ["a", "b"]}).labels == ("a", "b")


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("yolov8", {"score_threshold": "0.3"}, r"score_threshold must be a number, got '0.3'"),
        ("yolov8", {"iou_threshold": 1.5}, r"iou_threshold must be a number in \[0, 1\], got 1.5"),
        ("yolov8", {"score_threshold": float("nan")}, r"score_threshold must be a number in"),
        ("yolov8", {"max_detections": 0}, "max_detections must be a number >= 1, got 0"),
        ("yolov8", {"max_detections": True}, "max_detections must be an integer, got True"),
        ("yolov8", {"max_detections": 10.0}, "max_detections must be an integer, got 10.0"),
        ("yolov8", {"class_agnostic": 1}, "class_agnostic must be true or false, got 1"),
        ("yolov8", {"output": None}, "output must be a string, got None"),
        ("yolov8", {"ouptut": "x"}, "ouptut: unknown key; did you mean 'output'"),
        ("softmax", {"temperature": 0}, "temperature must be a finite number > 0, got 0.0"),
        ("softmax", {"temperature": 1e999}, "temperature must be a finite number > 0, got inf"),
        ("ssd", {"box_format": "cxcywh"}, "box_format must be one of xyxy, yxyx, got 'cxcywh'"),
        ("ssd", {"class_offset": -1}, "class_offset must be a number >= 0, got -1"),
        ("ctc", {"labels": "abc"}, "labels must be a list, got 'abc'"),
        ("ctc", {"labels": ["a", 1]}, r"labels\[1\] must be a string, got 1"),
        ("db", {"min_size": 0}, "min_size must be a number >= 1, got 0"),
        ("db", {"unclip_ratio": -0.5}, "unclip_ratio must be a finite number >= 0, got -0.5"),
    ],
)
def test_bad_parameters_in_a_manifest_name_the_key(
    name: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        _built(name, fields)
    assert str(caught.value).startswith(f"manifest.json: models.m.decoder.{next(iter(fields))}")


@pytest.mark.parametrize(
    ("params", "fields", "message"),
    [
        (YoloV8Params, {"iou_threshold": 1.5}, r"iou_threshold must be a number in \[0, 1\]"),
        (YoloV8Params, {"score_threshold": float("nan")}, "score_threshold must be a number in"),
        (YoloV8Params, {"max_detections": 0}, "max_detections must be a number >= 1, got 0"),
        (SoftmaxParams, {"temperature": 0.0}, "temperature must be a finite number > 0"),
        (SsdParams, {"input_width": -1}, "input_width must be a number >= 0, got -1"),
        (CtcParams, {"blank": -1}, "blank must be a number >= 0, got -1"),
        (DbParams, {"min_size": 0}, "min_size must be a number >= 1, got 0"),
    ],
)
def test_parameters_made_in_code_are_held_to_the_same_ranges(
    params: type[Any], fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        params(**fields)
    assert f"decoder.{next(iter(fields))}" in str(caught.value)
    assert str(caught.value).startswith(f"decoder {params.decoder!r}: ")


def test_parameters_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        YoloV8Params(0.5)  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        YoloV8Params().score_threshold = 0.5  # type: ignore[misc]


def test_an_output_is_picked_by_name_or_first() -> None:
    outputs = {"a": np.zeros((1, 2), np.float32), "b": np.array([[0.0, 5.0]], np.float32)}
    decode = DECODERS["softmax"].decode
    [first] = decode(outputs, ONE, SoftmaxParams())
    [named] = decode(outputs, ONE, SoftmaxParams(output="b"))
    assert first.probabilities.tolist() == [0.5, 0.5]  # type: ignore[union-attr]
    assert named.probabilities[1] > 0.99  # type: ignore[union-attr]
    with pytest.raises(ModelError, match=r"output is 'c' but the model's outputs are \['a', 'b'\]"):
        decode(outputs, ONE, SoftmaxParams(output="c"))
    with pytest.raises(ModelError, match="no outputs"):
        decode({}, ONE, SoftmaxParams())


@pytest.mark.parametrize(
    ("name", "outputs", "expected"),
    [
        (
            "softmax",
            {"o": np.zeros((2, 3))},
            r"\[2, 3\] for 1 image\(s\); expected \[batch, classes\]",
        ),
        ("embedding", {"o": np.zeros((1, 2, 3))}, r"\[batch, dimensions\]"),
        ("yolov8", {"o": np.zeros((1, 4, 10))}, r"\[batch, 4 \+ classes, anchors\] \(or set"),
        ("yolov5", {"o": np.zeros((1, 10, 5))}, r"\[batch, anchors, 5 \+ classes\]"),
        ("ctc", {"o": np.zeros((1, 5))}, r"\[batch, steps, classes\]"),
        ("db", {"o": np.zeros((1, 2, 8, 8))}, r"\[batch, 1, height, width\]"),
        ("db", {"o": np.zeros((1, 8, 8))}, r"\[batch, 1, height, width\]"),
    ],
)
def test_wrong_shapes_say_what_was_expected(
    name: str, outputs: dict[str, np.ndarray], expected: str
) -> None:
    kind = DECODERS[name]
    params = kind.params(labels=("a",)) if name == "ctc" else kind.params()
    with pytest.raises(ModelError, match=expected) as caught:
        kind.decode(outputs, ONE, params)
    assert "manifest" in str(caught.value)


def test_ssd_tensors_must_agree() -> None:
    outputs = {
        "detection_boxes": np.zeros((1, 3, 4), np.float32),
        "detection_scores": np.zeros((1, 2), np.float32),
        "detection_classes": np.zeros((1, 3), np.float32),
    }
    decode = DECODERS["ssd"].decode
    with pytest.raises(ModelError, match=r"scores \[batch, 3\] like the boxes"):
        decode(outputs, ONE, SsdParams())
    outputs["detection_scores"] = np.zeros((1, 3), np.float32)
    outputs["detection_boxes"] = np.zeros((1, 3, 5), np.float32)
    with pytest.raises(ModelError, match=r"boxes \[batch, K, 4\]"):
        decode(outputs, ONE, SsdParams())
    outputs["detection_boxes"] = np.zeros((1, 3, 4), np.float32)
    with pytest.raises(ModelError, match="count_output is 'n'"):
        decode(outputs, ONE, SsdParams(count_output="n"))


def test_ssd_input_size_can_be_given() -> None:
    outputs = {
        "detection_boxes": np.array([[[0.5, 0.5, 1.0, 1.0]]], np.float32),
        "detection_scores": np.array([[0.9]], np.float32),
        "detection_classes": np.array([[0.0]], np.float32),
    }
    # fit_height-style preprocessing: 100 x 20 source into 200 x 40, padded right to 300.
    geometry = Geometry(100, 20, scale_x=2.0, scale_y=2.0)
    params = SsdParams(input_width=300, input_height=40)
    [boxes] = DECODERS["ssd"].decode(outputs, [geometry], params)
    assert boxes.xyxy.tolist() == [[75.0, 10.0, 100.0, 20.0]]  # type: ignore[union-attr]


def test_ctc_blank_can_be_any_class() -> None:
    # Classes: 0 "a", 1 "b", 2 blank.
    probs = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 2, 0]][None]
    [text] = DECODERS["ctc"].decode({"o": probs}, ONE, CtcParams(labels=("a", "b"), blank=2))
    assert isinstance(text, Text)
    assert text.text == "aba"
    with pytest.raises(ModelError, match="blank is 3 but the model has 3 classes"):
        DECODERS["ctc"].decode({"o": probs}, ONE, CtcParams(labels=("a", "b"), blank=3))


def test_batch_must_match_the_images() -> None:
    with pytest.raises(ModelError, match="for 2 image"):
        DECODERS["yolov8"].decode({"o": np.zeros((1, 6, 4))}, ONE * 2, YoloV8Params())
