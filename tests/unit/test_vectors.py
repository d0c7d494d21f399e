"""schemas/vectors: the golden messages agree with both decoders and both encoders.

Each vector is a message in its two wire forms. msgpack -> message -> JSON must give
the committed ``.json`` and JSON -> message -> msgpack the committed ``.msgpack`` byte
for byte, and the generator must still write exactly the committed files.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import orjson
import pytest

from schemas.codec import decode, decode_result, encode
from schemas.jsonform import from_json, to_json
from schemas.limits import SCHEMA_VERSION
from schemas.messages import (
    KINDS,
    Colour,
    Encoded,
    Encoding,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Source,
)
from schemas.vectors import make

DIRECTORY = Path(make.__file__).parent
NAMES = sorted(p.stem for p in DIRECTORY.glob("*.msgpack"))
TYPES = {name: cls for cls, name in KINDS.items()}


def _kind(name: str) -> str:
    kind = orjson.loads((DIRECTORY / f"{name}.json").read_bytes())["type"]
    assert isinstance(kind, str)
    return kind


def test_generator_writes_exactly_the_committed_files() -> None:
    committed = {
        p.name: p.read_bytes() for p in DIRECTORY.iterdir() if p.suffix in (".msgpack", ".json")
    }
    assert make.files() == committed


def test_every_kind_and_case_is_covered() -> None:
    assert len(NAMES) >= 8
    assert {_kind(name) for name in NAMES} == set(TYPES)
    messages = make.messages()
    frames = [m for m in messages.values() if isinstance(m, Frame)]
    assert any(f.regions for f in frames) and any(not f.regions for f in frames)
    assert any(f.path == ("device",) for f in frames) and any(not f.path for f in frames)
    privacies = {m.privacy for m in messages.values() if isinstance(m, Escalation)}
    assert privacies == {PrivacyClass.CROP, PrivacyClass.FULL, PrivacyClass.EMBEDDING}
    results = [m for m in messages.values() if isinstance(m, InferenceResult)]
    assert any(r.edge_labels for r in results) and any(r.edge_labels is None for r in results)
    assert {r.source for r in results} == set(Source)
    assert any(r.path == ("device",) and r.reason is Reason.UNCHANGED for r in results)
    assert all(r.path and r.path[-1] == r.source for r in results)
    # Version 3: colour and encoded frames, detections, text lines, encoded crops.
    assert {f.colour for f in frames} == {Colour.GRAY, Colour.RGB}
    assert any(isinstance(f.image, np.ndarray) and f.image.ndim == 3 for f in frames)
    assert any(isinstance(f.image, Encoded) and f.image.encoding is Encoding.JPEG for f in frames)
    assert any(r.detections and not r.labels and r.scores.shape == (0, 0) for r in results)
    assert any(r.lines and any(not line.text.isascii() for line in r.lines) for r in results)
    escalations = [m for m in messages.values() if isinstance(m, Escalation)]
    assert any(e.crops and all(isinstance(c, Encoded) for c in e.crops) for e in escalations)


def test_shed_vector_is_what_an_edge_worker_publishes() -> None:
    # The edge finalises a shed frame like any other: path = frame.path + ("edge",), no
    # labels, no edge_labels, scores with 0 rows and one column per class.
    shed = decode_result((DIRECTORY / "result_shed.msgpack").read_bytes())
    assert shed.reason is Reason.SHED and shed.source is Source.EDGE and shed.degraded
    assert shed.path == ("edge",)
    assert shed.labels == () and shed.edge_labels is None
    assert shed.scores.shape == (0, 10) and shed.confidence == 0.0


def test_every_vector_is_this_version() -> None:
    for name in NAMES:
        assert orjson.loads((DIRECTORY / f"{name}.json").read_bytes())["v"] == SCHEMA_VERSION


@pytest.mark.parametrize("name", NAMES)
def test_msgpack_to_message_to_json_gives_the_json_file(name: str) -> None:
    message = decode(TYPES[_kind(name)], (DIRECTORY / f"{name}.msgpack").read_bytes())
    committed = orjson.loads((DIRECTORY / f"{name}.json").read_bytes())
    # Compared as compact JSON text, so 1.0 and 1 (float and int) stay different.
    assert to_json(message) == orjson.dumps(committed)


@pytest.mark.parametrize("name", NAMES)
def test_json_to_message_to_msgpack_gives_the_msgpack_file(name: str) -> None:
    message = from_json(TYPES[_kind(name)], (DIRECTORY / f"{name}.json").read_bytes())
    assert encode(message) == (DIRECTORY / f"{name}.msgpack").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_vector_is_what_the_generator_built(name: str) -> None:
    built = make.messages()[name]
    assert encode(built) == (DIRECTORY / f"{name}.msgpack").read_bytes()
    assert KINDS[type(built)] == _kind(name)


@pytest.mark.parametrize(
    ("jpeg", "region"),
    [(make.JPEG_FRAME, (0, 0, 16, 8)), (make.JPEG_CROP_0, (0, 0, 8, 8)),
     (make.JPEG_CROP_1, (8, 2, 6, 5))],
    ids=["frame", "crop-0", "crop-1"],
)  # fmt: skip
def test_the_jpegs_are_real_pictures_of_what_they_say(
    jpeg: bytes, region: tuple[int, int, int, int]
) -> None:
    # Decoded (OpenCV, as the edge decodes), each is the colour image of the vectors, or
    # its region, as close as JPEG at quality 75 gets.
    x, y, w, h = region
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.shape == (h, w, 3)
    want = make._colour(8, 16)[y : y + h, x : x + w]
    assert np.abs(bgr[..., ::-1].astype(int) - want).mean() < 20


def test_the_jpeg_frame_and_crops_are_those_of_their_vectors() -> None:
    messages = make.messages()
    frame = messages["frame_jpeg"]
    assert isinstance(frame, Frame) and frame.image == Encoded(make.JPEG_FRAME, Encoding.JPEG)
    assert frame.colour is Colour.RGB and frame.regions == ()
    esc = messages["escalation_jpeg_crops"]
    assert isinstance(esc, Escalation) and esc.privacy is PrivacyClass.CROP
    assert [c.data for c in esc.crops if isinstance(c, Encoded)] == [
        make.JPEG_CROP_0,
        make.JPEG_CROP_1,
    ]
    detected = messages["result_detections"]
    assert isinstance(detected, InferenceResult) and detected.frame_id == frame.frame_id
    assert detected.confidence == min(d.score for d in detected.detections)
