"""Model declarations: the entries of docs/model-manifest.md build, parts must fit
together, and labels come from the entry, a file or the ONNX file's metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from pipeline.declared import build, dump
from pipeline.inference.declaration import (
    CONFIDENCE_SIGNALS,
    TASK_DECODERS,
    TASKS,
    ModelDeclaration,
)
from pipeline.inference.decoders import DECODERS
from pipeline.inference.labels import CTC_BLANK
from pipeline.inference.manifest import load_declaration
from pipeline.inference.providers import Runtime, session_for
from schemas.errors import ModelError

SHA = "ab" * 32
# The examples of docs/model-manifest.md.
YOLO: dict[str, Any] = {
    "name": "yolov8n-coco",
    "version": "8.1.0",
    "file": "yolov8n.onnx",
    "sha256": SHA,
    "task": "detect",
    "input": {"name": "images", "width": 640, "height": 640, "resize": "letterbox"},
    "decoder": {"type": "yolov8", "output": "output0", "score_threshold": 0.25},
    "labels": {"metadata": "names"},
    "confidence": {"uncertain_band": [0.25, 0.6]},
    "runtime": {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
    "provenance": {"exported_with": "yolo export format=onnx imgsz=640 opset=17"},
}
PADDLE_REC: dict[str, Any] = {
    "name": "ppocrv4-rec-en",
    "version": "4.0.0",
    "file": "en_PP-OCRv4_rec.onnx",
    "sha256": SHA,
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
    "confidence": {"signal": "min_char", "uncertain_band": [0.5, 0.85]},
}


def _declare(raw: dict[str, Any], **changes: Any) -> ModelDeclaration:
    return build(ModelDeclaration, {**raw, **changes}, "manifest.json", path="models.m")


def _refused(fragment: str, raw: dict[str, Any], **changes: Any) -> str:
    with pytest.raises(ModelError, match=re.escape(fragment)) as info:
        _declare(raw, **changes)
    return str(info.value)


def _onnx_file(path: Path, metadata: dict[str, str]) -> Path:
    """A one-node model (Identity) with these metadata properties."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    helper.set_model_props(model, metadata)
    onnx.save(model, path)
    return path


def _metadata(path: Path) -> dict[str, str]:
    session = session_for(path, Runtime(), str(path))
    return dict(session.get_modelmeta().custom_metadata_map)


def test_the_documented_examples_build() -> None:
    yolo = _declare(YOLO)
    assert (yolo.task, yolo.decoder.type, yolo.kind.name) == ("detect", "yolov8", "yolov8")
    assert yolo.decoder.params.score_threshold == 0.25
    assert yolo.confidence.signal == "score"  # the task's default
    assert yolo.runtime.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert yolo.input.width == 640 and yolo.labels is not None
    rec = _declare(PADDLE_REC)
    assert (rec.input.colour, rec.input.mean, rec.confidence.signal) == ("bgr", (0.5,), "min_char")
    assert build(ModelDeclaration, dump(rec), "") == rec


def test_every_task_has_decoders_and_signals_that_exist() -> None:
    assert set(TASK_DECODERS) == set(CONFIDENCE_SIGNALS) == set(TASKS)
    for decoders in TASK_DECODERS.values():
        assert set(decoders) <= set(DECODERS)


@pytest.mark.parametrize(
    ("raw", "changes", "fragment"),
    [
        (YOLO, {"decoder": {"type": "ctc"}}, "models.m: decoder.type 'ctc' does not fit task"),
        (YOLO, {"confidence": {"signal": "margin"}}, "confidence.signal 'margin' does not fit"),
        (YOLO, {"labels": None}, "models.m: labels: required for task 'detect'"),
        (PADDLE_REC, {"decoder": {"type": "ctc", "labels": ["a"]}}, "decoder.labels is filled"),
        (YOLO, {"task": "detection"}, "models.m.task must be one of classify, detect,"),
        (
            YOLO,
            {"input": {"widht": 640}},
            "models.m.input.widht: unknown key; did you mean 'width'?",
        ),
        (YOLO, {"input": {"width": 640}}, "models.m.input: input spec: width is 640"),
        (YOLO, {"decoder": {"type": "yolov9"}}, "did you mean 'yolov8'?"),
        (YOLO, {"decoder": {"type": "yolov8", "score_threshold": 2}}, "score_threshold must be"),
        (YOLO, {"confidence": {"uncertain_band": [0.6, 0.2]}}, "low <= high, got [0.6, 0.2]"),
        (
            YOLO,
            {"confidence": {"uncertain_band": [0.2, 1.5]}},
            "uncertain_band[1] must be a number in [0, 1]",
        ),
        (
            YOLO,
            {"runtime": {"providers": ["cuda"]}},
            "models.m.runtime.providers[0] must be one of CPUExecutionProvider,",
        ),
        (
            YOLO,
            {"runtime": {"intra_op_threads": 0}},
            "models.m.runtime.intra_op_threads must be a number in [1, 256]",
        ),
        (
            YOLO,
            {"file": "/abs/m.onnx"},
            "models.m.file must be a file name relative to the manifest's folder",
        ),
        (YOLO, {"file": "../m.onnx"}, "models.m.file must be a file name relative"),
        (YOLO, {"sha256": SHA.upper()}, "models.m.sha256 must be a lowercase hex SHA-256"),
        (YOLO, {"name": ""}, "models.m.name must be a non-empty string"),
        (YOLO, {"labels": {"file": "a.txt", "metadata": "names"}}, "give exactly one of"),
        (YOLO, {"labels": {"file": "../a.txt"}}, "file must be relative to the manifest's folder"),
        (YOLO, {"labels": ["a", ""]}, "names must not be empty strings"),
        (
            YOLO,
            {"input_from": {"role": "embed"}},
            "models.m.input_from.name: required key is missing",
        ),
    ],
)
def test_refusals_name_the_key_and_what_is_right(
    raw: dict[str, Any], changes: dict[str, Any], fragment: str
) -> None:
    _refused(fragment, raw, **changes)


def test_temperature_lives_in_one_place() -> None:
    classify = {
        **YOLO,
        "task": "classify",
        "decoder": {"type": "softmax", "temperature": 1.5},
        "labels": ["cat", "dog"],
    }
    assert _declare(classify).confidence.signal == "max_probability"
    _refused("set decoder.temperature instead", classify, confidence={"temperature": 1.2})
    assert _declare(YOLO, confidence={"temperature": 1.2}).confidence.temperature == 1.2


def test_an_embedding_has_no_labels() -> None:
    embed = {**YOLO, "task": "embed", "decoder": {"type": "embedding"}, "labels": None}
    assert _declare(embed).confidence.signal == "none"
    _refused("an embedding has no classes", embed, labels=["a"])


def test_labels_from_ultralytics_metadata(tmp_path: Path) -> None:
    names = "{0: 'person', 1: 'bicycle', 2: 'car'}"
    metadata = _metadata(_onnx_file(tmp_path / "yolo.onnx", {"names": names, "stride": "32"}))
    assert _declare(YOLO).resolve_labels(tmp_path, metadata, "m") == ("person", "bicycle", "car")
    listed = _declare(YOLO).resolve_labels(tmp_path, {"names": "['a', 'b']"}, "m")
    assert listed == ("a", "b")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("__import__('os').system('false')", "is not a Python literal"),
        ("{0: 'a', 2: 'b'}", "the dict's keys must be the indexes 0..1"),
        ("{True: 'a'}", "the dict's keys must be the indexes 0..0"),
        ("['a', 3]", "every name must be a non-empty string"),
        ("42", "must be a dict {index: name} or a list of names"),
    ],
)
def test_bad_names_metadata(value: str, fragment: str) -> None:
    with pytest.raises(ModelError, match=re.escape(fragment)):
        _declare(YOLO).resolve_labels(Path("."), {"names": value}, "m")


def test_missing_metadata_lists_what_the_file_has() -> None:
    with pytest.raises(
        ModelError,
        match=r"m: labels\.metadata: the model file has no metadata 'names'; it has \['stride'\]",
    ):
        _declare(YOLO).resolve_labels(Path("."), {"stride": "32"}, "m")


def test_ctc_labels_are_blank_characters_and_space(tmp_path: Path) -> None:
    rec = _declare(PADDLE_REC)
    metadata = _metadata(_onnx_file(tmp_path / "rec.onnx", {"character": "a\nb\nc"}))
    assert rec.resolve_labels(tmp_path, metadata, "m") == (CTC_BLANK, "a", "b", "c", " ")
    (tmp_path / "dict.txt").write_bytes(b"x\r\ny\n")
    from_file = _declare(PADDLE_REC, labels={"file": "dict.txt"})
    assert from_file.resolve_labels(tmp_path, {}, "m") == (CTC_BLANK, "x", "y", " ")
    blank_last = _declare(PADDLE_REC, labels=["x", "y"], decoder={"type": "ctc", "blank": 3})
    assert blank_last.resolve_labels(tmp_path, {}, "m") == ("x", "y", " ", CTC_BLANK)
    too_far = _declare(PADDLE_REC, labels=["x"], decoder={"type": "ctc", "blank": 3})
    with pytest.raises(ModelError, match=r"decoder\.blank is 3, beyond the 2 labels"):
        too_far.resolve_labels(tmp_path, {}, "m")


def test_labels_file(tmp_path: Path) -> None:
    declaration = _declare(YOLO, labels={"file": "coco.txt"})
    (tmp_path / "coco.txt").write_text("person\nbicycle\n", encoding="utf-8")
    assert declaration.resolve_labels(tmp_path, {}, "m") == ("person", "bicycle")
    (tmp_path / "coco.txt").write_text("person\n\nbicycle", encoding="utf-8")
    with pytest.raises(
        ModelError, match=r"labels file coco\.txt: needs one name per line; empty lines: \[2\]"
    ):
        declaration.resolve_labels(tmp_path, {}, "m")
    (tmp_path / "coco.txt").unlink()
    with pytest.raises(ModelError, match=r"m: labels\.file: cannot read"):
        declaration.resolve_labels(tmp_path, {}, "m")


def test_a_manifest_entry_is_read_with_its_path(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"schema": 2, "models": {"shop": YOLO}}), encoding="utf-8")
    declaration, where = load_declaration("shop", manifest)
    assert declaration == _declare(YOLO) and where == f"{manifest}: models.shop"
    broken = {**YOLO, "input": {"layuot": "nhwc"}}
    manifest.write_text(json.dumps({"schema": 2, "models": {"shop": broken}}), encoding="utf-8")
    with pytest.raises(
        ModelError,
        match=re.escape(
            f"{manifest}: models.shop.input.layuot: unknown key; did you mean 'layout'? "
            "(allowed: colour,"
        ),
    ):
        load_declaration("shop", manifest)
    manifest.write_text(json.dumps({"schema": 1, "models": {}}), encoding="utf-8")
    with pytest.raises(ModelError, match="schema is 1, this code reads 2"):
        load_declaration("shop", manifest)
