"""schemas.jsonform: the JSON form mirrors msgpack and is checked as strictly.

The strictness claim is tested as a property: a valid message with one field (at any
depth) replaced by any JSON value, or removed, gets the same verdict from both forms,
the same ``SchemaError`` message or the same message. The ``Content-Type`` and
``Accept`` headers that choose between the forms are tested in
test_jsonform_headers.py, the JSON examples of docs/wire-format.md in test_wire_doc.py.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode
from schemas.errors import SchemaError
from schemas.jsonform import from_json, to_json
from schemas.limits import DEFAULT_MAX_BYTES, SCHEMA_VERSION
from schemas.messages import (
    KINDS,
    Colour,
    DeadLetter,
    Frame,
    InferenceResult,
    Message,
    PrivacyClass,
    Reason,
    Region,
    Source,
)
from tests.unit.wire_samples import (
    DELETE,
    assert_same,
    make_dead_letter,
    make_detection,
    make_escalation,
    make_frame,
    make_line,
    make_result,
    raw,
    sample_colour,
    sample_jpeg,
    sample_png,
    shares_received_bytes,
)
from tests.unit.wire_strategies import key_paths, replaced, scalar_values


def _raw(message: Message) -> dict[str, Any]:
    out = orjson.loads(to_json(message))
    assert isinstance(out, dict)
    return out


def _json(raw: Any) -> bytes:
    return orjson.dumps(raw)


def _refused(kind: type[Any], data: bytes, fragment: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        from_json(kind, data)


# ------------------------------------------------------------------ the form


MESSAGES = [
    make_frame(),
    make_frame(threshold=None, regions=(), image=np.zeros((0, 0), np.uint8), seq=2**63 - 1),
    make_result(),
    make_result(labels=(), scores=np.zeros((0, 10), np.float32), edge_labels=None),
    make_escalation(PrivacyClass.CROP),
    make_escalation(PrivacyClass.FULL),
    make_escalation(PrivacyClass.EMBEDDING),
    make_result(
        source=Source.DEVICE,
        reason=Reason.UNCHANGED,
        degraded=False,
        edge_labels=None,
        path=("device",),
    ),
    make_dead_letter(),
    make_frame(image=sample_colour(), colour=Colour.BGR),
    make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=()),
    make_frame(image=sample_png(), colour=Colour.RGB, regions=(Region(0, 0, 3, 2),)),
    make_result(
        labels=(),
        scores=np.zeros((0, 0), np.float32),
        detections=(make_detection(), make_detection(label="café", source=Source.CLOUD)),
        lines=(make_line(), make_line(text="Straße 12 🚗", confidence=0.0)),
    ),
    make_escalation(PrivacyClass.CROP, crops=(sample_jpeg(0), sample_png())),
    make_escalation(PrivacyClass.FULL, image=sample_jpeg()),
]
IDS = ["frame", "frame-empty", "result", "result-empty", "esc-crop", "esc-full",
       "esc-embedding", "result-device", "dead", "frame-bgr", "frame-jpeg", "frame-png",
       "result-detections-lines", "esc-encoded-crops", "esc-full-jpeg"]  # fmt: skip


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_round_trip_keeps_every_field(message: Message) -> None:
    got = from_json(type(message), to_json(message))
    assert_same(got, message)


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_same_keys_in_the_same_order_as_msgpack(message: Message) -> None:
    packed = msgpack.unpackb(encode(message), raw=False)
    assert list(_raw(message)) == list(packed)
    assert _raw(message)["v"] == SCHEMA_VERSION == 3
    assert _raw(message)["type"] == KINDS[type(message)]


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_json_and_msgpack_decode_to_the_same_message(message: Message) -> None:
    from_msgpack = decode(type(message), encode(message))
    assert encode(from_json(type(message), to_json(message))) == encode(from_msgpack)


def test_arrays_are_base64_of_raw_little_endian_bytes() -> None:
    result = make_result(labels=(1,), scores=np.array([[0.25, 0.75]], dtype=">f4"))
    scores = _raw(result)["scores"]
    assert scores == {
        "dtype": "float32",
        "shape": [1, 2],
        "data": base64.b64encode(np.array([0.25, 0.75], "<f4").tobytes()).decode(),
    }
    image = raw(make_frame().image)
    assert _raw(make_frame())["image"]["data"] == base64.b64encode(image.tobytes()).decode()


def test_encoded_images_are_base64_of_the_file() -> None:
    jpeg = sample_jpeg()
    assert _raw(make_frame(image=jpeg, colour=Colour.RGB))["image"] == {
        "encoding": "jpeg",
        "data": base64.b64encode(jpeg.data).decode(),
    }
    raw = _raw(make_escalation(PrivacyClass.CROP, crops=(sample_png(), jpeg)))
    assert [c["encoding"] for c in raw["crops"]] == ["png", "jpeg"]
    assert base64.b64decode(raw["crops"][0]["data"]) == sample_png().data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("/9j/4A==!", "frame.image.data: not valid base64"),
        (None, "frame.image.data: expected base64 text, got NoneType"),
        ("iVBORw0KGgo=", "frame.image.data: starts with 89 50 4E, not the jpeg signature"),
    ],
)
def test_encoded_image_data_must_be_base64_of_a_jpeg(data: Any, fragment: str) -> None:
    raw = _raw(make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=()))
    raw["image"]["data"] = data
    _refused(Frame, _json(raw), fragment)


def test_detections_and_lines_are_plain_json() -> None:
    result = make_result(detections=(make_detection(),), lines=(make_line(text="Straße"),))
    raw = _raw(result)
    assert list(raw)[-2:] == ["detections", "lines"]
    assert raw["detections"] == [
        {"box": [1, 2, 3, 4], "label": "person", "label_index": 0, "score": 0.875,
         "source": "edge"}
    ]  # fmt: skip
    assert raw["lines"] == [
        {"box": [0, 1, 8, 2], "text": "Straße", "confidence": 0.75, "source": "edge"}
    ]
    assert "Straße".encode() in to_json(result)  # UTF-8, not \u escapes
    whole = make_detection(score=1)
    assert b'"score":1.0,' in to_json(make_result(detections=(whole,)))
    _refused(
        InferenceResult,
        to_json(result).replace(b'"score":0.875', b'"score":1.5'),
        "result.detections[0].score: 1.5 is outside 0.0..1.0",
    )


def test_dead_letter_data_is_base64() -> None:
    assert _raw(make_dead_letter(data=b"\x00\xff"))["data"] == "AP8="


def test_regions_enums_and_nulls_are_plain_json() -> None:
    raw = _raw(make_frame(threshold=None, privacy=PrivacyClass.LOCAL_ONLY))
    assert raw["regions"] == [[0, 0, 4, 3], [4, 3, 4, 3]]
    assert raw["privacy"] == "local_only" and raw["threshold"] is None
    assert _raw(make_result())["source"] == "cloud"


def test_arrays_read_from_json_are_read_only_views() -> None:
    frame = from_json(Frame, to_json(make_frame()))
    assert raw(frame.image).flags.writeable is False
    assert shares_received_bytes(raw(frame.image))


def test_numpy_scalars_are_written_as_numbers() -> None:
    result = make_result(confidence=np.float64(0.5), latency_ms=np.float32(2.5))
    raw = _raw(result)
    assert raw["confidence"] == 0.5 and raw["latency_ms"] == 2.5


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_cannot_be_written(value: float) -> None:
    # orjson would write null, which reads back as "no threshold": refuse instead.
    with pytest.raises(SchemaError, match=rf"frame\.threshold: {value} is not a finite number"):
        to_json(make_frame(threshold=value))


def test_float_fields_are_written_as_floats_even_when_given_as_integers() -> None:
    # A generic encoder writes 0 for an int 0; the contract's float fields are floats.
    frame = make_frame(captured_at=0, threshold=1)
    assert b'"captured_at":0.0,' in to_json(frame) and b'"threshold":1.0,' in to_json(frame)
    result = make_result(confidence=1, latency_ms=np.float32(0))
    assert b'"confidence":1.0,' in to_json(result) and b'"latency_ms":0.0,' in to_json(result)


def test_unknown_dtype_cannot_be_written() -> None:
    with pytest.raises(SchemaError, match="array dtype float64 cannot be sent"):
        to_json(make_frame(image=np.zeros((2, 2), np.float64)))


# ------------------------------------------------------------------ JSON refusals


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "frame: not valid JSON"),
        (b"{", "frame: not valid JSON"),
        (b'{"v": 1} x', "frame: not valid JSON"),
        (b'{"v": NaN}', "frame: not valid JSON"),
        (b'{"v": 1, "s": "\xff"}', "frame: not valid JSON"),
        (b"[]", "frame: expected a map, got list"),
        (b'"frame"', "frame: expected a map, got str"),
        (b'{"v": 2.0, "type": "frame"}', "frame.v: expected an integer, got float"),
        (b'{"v": 2e0, "type": "frame"}', "frame.v: expected an integer, got float"),
        (b'{"v": true, "type": "frame"}', "frame.v: expected an integer, got bool"),
        (b'{"v": "2", "type": "frame"}', "frame.v: expected an integer, got str"),
        (b'{"v": null, "type": "frame"}', "frame.v: expected an integer, got NoneType"),
        (b'{"type": "frame"}', "frame.v: missing; every message carries its schema version"),
        (
            b'{"v": 1, "type": "frame"}',
            "frame.v: schema version 1 is not supported; this reader speaks 3",
        ),
        (
            b'{"v": 2, "type": "frame"}',
            "frame.v: schema version 2 is not supported; this reader speaks 3",
        ),
        (b'{"v": 4, "type": "frame"}', "frame.v: schema version 4 is not supported"),
        (b'{"v": 3, "type": "result"}', "frame.type: 'result', expected 'frame'"),
    ],
)
def test_envelope_refusals(data: bytes, fragment: str) -> None:
    _refused(Frame, data, fragment)


def test_not_bytes_and_over_the_limit() -> None:
    with pytest.raises(SchemaError, match="frame: expected bytes, got str"):
        from_json(Frame, "{}")  # type: ignore[arg-type]
    data = to_json(make_frame())
    with pytest.raises(SchemaError, match=f"frame: {len(data)} bytes is over the limit of 100"):
        from_json(Frame, data, max_bytes=100)
    assert from_json(Frame, data, max_bytes=len(data)).seq == 42
    assert from_json(Frame, bytearray(data)).seq == 42  # type: ignore[arg-type]


def test_dead_letters_get_the_msgpack_decoders_larger_default_limit() -> None:
    dead = make_dead_letter(data=b"\x00" * DEFAULT_MAX_BYTES)
    assert from_json(DeadLetter, to_json(dead)).data == dead.data


def _with_image_data(data: Any) -> bytes:
    raw = _raw(make_frame())
    raw["image"]["data"] = data
    return _json(raw)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (None, "frame.image.data: expected base64 text, got NoneType"),
        (48, "frame.image.data: expected base64 text, got int"),
        ([0] * 48, "frame.image.data: expected base64 text, got list"),
        ("AAAA!AAA", "frame.image.data: not valid base64"),
        ("AAAA AAA", "frame.image.data: not valid base64"),
        ("AAAA\nAAAA", "frame.image.data: not valid base64"),
        ("AAA", "frame.image.data: not valid base64"),
        ("QUJD\u00e9===", "frame.image.data: not valid base64"),
        ("AAAA", "frame.image: shape [6, 8] of uint8 needs 48 bytes, got 3"),
    ],
)
def test_binary_must_be_base64_of_the_right_length(data: Any, fragment: str) -> None:
    _refused(Frame, _with_image_data(data), fragment)


def test_urlsafe_base64_is_refused() -> None:
    image = np.full((6, 8), 0xFB, np.uint8)  # base64 of 0xfb bytes uses '+' and '/'
    text = base64.urlsafe_b64encode(image.tobytes()).decode()
    assert "-" in text or "_" in text
    _refused(Frame, _with_image_data(text), "frame.image.data: not valid base64")


def test_dead_letter_data_must_be_base64() -> None:
    raw = _raw(make_dead_letter())
    raw["data"] = 7
    _refused(DeadLetter, _json(raw), "dead_letter.data: expected base64 text, got int")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("seq", 42.0, "frame.seq: expected an integer, got float"),
        ("priority", True, "frame.priority: expected an integer, got bool"),
        ("captured_at", "now", "frame.captured_at: expected a number, got str"),
        ("threshold", 1.5, "frame.threshold: 1.5 is outside 0.0..1.0"),
        ("site", "a.b", "frame.site: 'a.b' is not a valid name"),
        ("regions", [[0, 0, 9, 1]], "frame.regions[0]: [0, 0, 9, 1] reaches outside"),
        ("privacy", "public", "frame.privacy: 'public' is not one of local_only, embedding"),
        ("path", ["edge", "device"], "frame.path: ['edge', 'device'] is out of order"),
        ("path", ["edge", "edge"], "frame.path: 'edge' appears twice"),
        ("path", ["fog"], "frame.path[0]: 'fog' is not one of device, edge, cloud"),
    ],
)
def test_field_rules_are_the_codecs(field: str, value: Any, fragment: str) -> None:
    raw = _raw(make_frame())
    raw[field] = value
    _refused(Frame, _json(raw), fragment)


def test_integer_beyond_64_bits_is_refused() -> None:
    # orjson cannot write it, but JSON text can hold it; it reads back as a float.
    data = _json(_raw(make_frame())).replace(b'"seq":42', b'"seq":18446744073709551616')
    _refused(Frame, data, "frame.seq: expected an integer, got float")


def test_unknown_keys_are_ignored() -> None:
    raw = _raw(make_frame())
    raw["later_version_key"] = {"anything": [1, 2]}
    assert from_json(Frame, _json(raw)).seq == 42


# ------------------------------------------------------------------ same verdict as msgpack

PARITY = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
json_scalars = scalar_values(json=True)
# No "data" keys: a string under "data" is a binary value in JSON and a type error in
# msgpack, a difference of form tested above, not a difference in checks.
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            (st.text(max_size=8) | st.sampled_from(["dtype", "shape", "encoding"])).filter(
                lambda k: k != "data"
            ),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=12,
)
SEEDS: list[Message] = [
    make_frame(),
    make_result(),
    make_escalation(PrivacyClass.CROP),
    make_escalation(PrivacyClass.FULL),
    make_escalation(PrivacyClass.EMBEDDING),
    make_dead_letter(data=b"\x01\x02"),
    make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=(Region(0, 0, 16, 8),)),
    make_frame(image=sample_colour(), colour=Colour.RGB),
    make_result(detections=(make_detection(),), lines=(make_line(),)),
    make_escalation(PrivacyClass.CROP, crops=(sample_jpeg(0), sample_colour(5, 5))),
]
SEED_IDS = ["frame", "result", "esc-crop", "esc-full", "esc-embedding", "dead", "frame-jpeg",
            "frame-rgb", "result-detections-lines", "esc-mixed-crops"]  # fmt: skip


def _verdict(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "accepted", encode(decode(data))
    except SchemaError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize("seed", SEEDS, ids=SEED_IDS)
@settings(PARITY)
@given(data=st.data())
def test_one_field_changed_gets_the_same_verdict_in_both_forms(
    seed: Message, data: st.DataObject
) -> None:
    raw = msgpack.unpackb(encode(seed), raw=False)
    # Binary values keep their form; see json_values.
    path = data.draw(st.sampled_from(key_paths(raw, skip=("data",))))
    value = DELETE if data.draw(st.integers(0, 9)) == 0 else data.draw(json_values)
    changed = replaced(raw, path, value)
    packed = msgpack.packb(changed, use_bin_type=True)
    as_json = orjson.dumps(changed, default=lambda b: base64.b64encode(b).decode())
    kind = type(seed)
    assert _verdict(lambda d: from_json(kind, d), as_json) == _verdict(
        lambda d: decode(kind, d), packed
    )


@pytest.mark.parametrize("kind", list(KINDS))
@settings(PARITY, max_examples=150)
@given(payload=st.binary(max_size=256) | json_values.map(orjson.dumps))
def test_any_input_is_a_message_or_a_schema_error(kind: type[Any], payload: bytes) -> None:
    try:
        message = from_json(kind, payload)
    except SchemaError as exc:
        assert str(exc)
        return
    assert type(message) is kind
