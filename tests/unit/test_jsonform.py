"""schemas.jsonform: the JSON form mirrors msgpack, is checked as strictly, and the
``Content-Type`` / ``Accept`` headers choose between the two.

The strictness claim is tested as a property: a valid message with one field (at any
depth) replaced by any JSON value, or removed, gets the same verdict from both forms,
the same ``SchemaError`` message or the same message. The examples of
docs/wire-format.md are decoded here too, so they cannot go stale.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import math
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import (
    DEFAULT_MAX_BYTES,
    KINDS,
    SCHEMA_VERSION,
    Message,
    decode_dead_letter,
    decode_escalation,
    decode_frame,
    decode_result,
    encode,
)
from schemas.errors import SchemaError
from schemas.jsonform import (
    JSON,
    MSGPACK,
    decode_frame_message,
    encode_result_for,
    from_json,
    header,
    to_json,
)
from schemas.messages import (
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Source,
)
from tests.unit.test_codec import (
    _assert_same,
    _shares_received_bytes,
    make_dead_letter,
    make_escalation,
    make_frame,
    make_result,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"
MSGPACK_DECODERS: dict[type[Any], Callable[[bytes], Message]] = {
    Frame: decode_frame,
    InferenceResult: decode_result,
    Escalation: decode_escalation,
    DeadLetter: decode_dead_letter,
}


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
]
IDS = ["frame", "frame-empty", "result", "result-empty", "esc-crop", "esc-full",
       "esc-embedding", "result-device", "dead"]  # fmt: skip


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_round_trip_keeps_every_field(message: Message) -> None:
    got = from_json(type(message), to_json(message))
    _assert_same(got, message)


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_same_keys_in_the_same_order_as_msgpack(message: Message) -> None:
    packed = msgpack.unpackb(encode(message), raw=False)
    assert list(_raw(message)) == list(packed)
    assert _raw(message)["v"] == SCHEMA_VERSION == 2
    assert _raw(message)["type"] == KINDS[type(message)]


@pytest.mark.parametrize("message", MESSAGES, ids=IDS)
def test_json_and_msgpack_decode_to_the_same_message(message: Message) -> None:
    from_msgpack = MSGPACK_DECODERS[type(message)](encode(message))
    assert encode(from_json(type(message), to_json(message))) == encode(from_msgpack)


def test_arrays_are_base64_of_raw_little_endian_bytes() -> None:
    result = make_result(labels=(1,), scores=np.array([[0.25, 0.75]], dtype=">f4"))
    scores = _raw(result)["scores"]
    assert scores == {
        "dtype": "float32",
        "shape": [1, 2],
        "data": base64.b64encode(np.array([0.25, 0.75], "<f4").tobytes()).decode(),
    }
    image = make_frame().image
    assert _raw(make_frame())["image"]["data"] == base64.b64encode(image.tobytes()).decode()


def test_dead_letter_data_is_base64() -> None:
    assert _raw(make_dead_letter(data=b"\x00\xff"))["data"] == "AP8="


def test_regions_enums_and_nulls_are_plain_json() -> None:
    raw = _raw(make_frame(threshold=None, privacy=PrivacyClass.LOCAL_ONLY))
    assert raw["regions"] == [[0, 0, 4, 3], [4, 3, 4, 3]]
    assert raw["privacy"] == "local_only" and raw["threshold"] is None
    assert _raw(make_result())["source"] == "cloud"


def test_arrays_read_from_json_are_read_only_views() -> None:
    frame = from_json(Frame, to_json(make_frame()))
    assert frame.image.flags.writeable is False
    assert _shares_received_bytes(frame.image)


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
            "frame.v: schema version 1 is not supported; this reader speaks 2",
        ),
        (b'{"v": 3, "type": "frame"}', "frame.v: schema version 3 is not supported"),
        (b'{"v": 2, "type": "result"}', "frame.type: 'result', expected 'frame'"),
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
_TEXT = ["", "a.b", "*", "x" * 65, "local_only", "embedding", "crop", "full", "uint8",
         "float32", "frame", "result", "escalation", "dead_letter", "device", "edge", "cloud",
         "confident", "unchanged"]  # fmt: skip
_INTS = [0, 1, 2, 3, 4, -1, 63, 64, 65, 999, 1000, 65536, 65537, 2**63 - 1, 2**63, 2**64 - 1]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(_INTS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 0.5, 1.0, 1.0000001, 1e308, 5e-324]),
    st.text(max_size=12),
    st.sampled_from(_TEXT),
)
# No "data" keys: a string under "data" is a binary value in JSON and a type error in
# msgpack, a difference of form tested above, not a difference in checks.
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(
            (st.text(max_size=8) | st.sampled_from(["dtype", "shape"])).filter(
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
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if key != "data":  # binary values keep their form; see json_values
            out.append((*prefix, key))
        if isinstance(child, dict | list):
            out.extend(_paths(child, (*prefix, key)))
    return out


def _verdict(decode: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "accepted", encode(decode(data))
    except SchemaError as exc:
        return "refused", str(exc)


@pytest.mark.parametrize(
    "seed", SEEDS, ids=["frame", "result", "esc-crop", "esc-full", "esc-embedding", "dead"]
)
@settings(PARITY)
@given(data=st.data())
def test_one_field_changed_gets_the_same_verdict_in_both_forms(
    seed: Message, data: st.DataObject
) -> None:
    raw = msgpack.unpackb(encode(seed), raw=False)
    path = data.draw(st.sampled_from(_paths(raw)))
    changed = copy.deepcopy(raw)
    parent = changed
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.integers(0, 9)) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values)
    packed = msgpack.packb(changed, use_bin_type=True)
    as_json = orjson.dumps(changed, default=lambda b: base64.b64encode(b).decode())
    kind = type(seed)
    assert _verdict(lambda d: from_json(kind, d), as_json) == _verdict(
        MSGPACK_DECODERS[kind], packed
    )


@pytest.mark.parametrize("kind", list(MSGPACK_DECODERS))
@settings(PARITY, max_examples=150)
@given(payload=st.binary(max_size=256) | json_values.map(orjson.dumps))
def test_any_input_is_a_message_or_a_schema_error(kind: type[Any], payload: bytes) -> None:
    try:
        message = from_json(kind, payload)
    except SchemaError as exc:
        assert str(exc)
        return
    assert type(message) is kind


# ------------------------------------------------------------------ headers


def test_header_lookup_ignores_case() -> None:
    assert header(None, "Accept") is None
    assert header({}, "Accept") is None
    assert header({"Accept": JSON}, "Accept") == JSON
    assert header({"accept": JSON}, "Accept") == JSON
    assert header({"ACCEPT": JSON}, "accept") == JSON
    assert header({"Accepted": JSON}, "Accept") is None


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"Content-Type": MSGPACK}, {"content-type": "Application/MsgPack"}, {"X": "y"}],
)
def test_frames_are_msgpack_by_default(headers: dict[str, str] | None) -> None:
    frame = decode_frame_message(encode(make_frame()), headers, max_bytes=DEFAULT_MAX_BYTES)
    _assert_same(frame, make_frame())


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", " APPLICATION/JSON "]
)
def test_frames_in_json(content_type: str) -> None:
    data = to_json(make_frame())
    frame = decode_frame_message(data, {"Content-Type": content_type}, max_bytes=DEFAULT_MAX_BYTES)
    _assert_same(frame, make_frame())


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-msgpack", "", "json"])
def test_unknown_content_type_is_refused_naming_the_header(content_type: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_frame_message(
            to_json(make_frame()), {"Content-Type": content_type}, max_bytes=DEFAULT_MAX_BYTES
        )
    assert f"frame: header Content-Type {content_type!r} is not supported" in str(info.value)
    assert "application/msgpack (the default) or application/json" in str(info.value)


def test_the_header_decides_not_the_bytes() -> None:
    json_frame, msgpack_frame = to_json(make_frame()), encode(make_frame())
    with pytest.raises(SchemaError, match="frame: not valid msgpack"):
        decode_frame_message(json_frame, None, max_bytes=DEFAULT_MAX_BYTES)
    with pytest.raises(SchemaError, match="frame: not valid JSON"):
        decode_frame_message(msgpack_frame, {"Content-Type": JSON}, max_bytes=DEFAULT_MAX_BYTES)


def test_frame_size_limit_applies_to_json() -> None:
    data = to_json(make_frame())
    with pytest.raises(SchemaError, match=f"frame: {len(data)} bytes is over the limit of 99"):
        decode_frame_message(data, {"Content-Type": JSON}, max_bytes=99)


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (None, MSGPACK),
        ("", MSGPACK),
        (JSON, JSON),
        ("application/json; charset=utf-8", JSON),
        (MSGPACK, MSGPACK),
        ("text/html", MSGPACK),
        ("*/*", MSGPACK),
        ("application/json, application/msgpack", JSON),
        ("application/msgpack, application/json", MSGPACK),
        ("application/msgpack;q=0.5, application/json", JSON),
        ("application/json;q=0, application/msgpack", MSGPACK),
        ("application/json;q=0", MSGPACK),
        ("application/json;q=oops, text/plain", MSGPACK),
        ("text/html, application/json;q=0.1", JSON),
    ],
)
def test_results_in_the_form_accept_asks_for(accept: str | None, wanted: str) -> None:
    result = make_result()
    data, headers = encode_result_for(result, accept)
    assert headers == {"Content-Type": wanted}
    if wanted == JSON:
        assert data == to_json(result)
        _assert_same(from_json(InferenceResult, data), result)
    else:
        assert data == encode(result)


# ------------------------------------------------------------------ the documented examples


def _section(marker: str) -> str:
    pattern = rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->"
    found = re.findall(pattern, DOC.read_text(), re.S)
    assert len(found) == 1, f"docs/wire-format.md needs one {marker} section"
    return str(found[0])


def _fenced(section: str, language: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.S)
    assert blocks, f"no {language} block"
    return [str(b) for b in blocks]


def _nats_commands() -> list[tuple[str, str, dict[str, str], bytes]]:
    """(verb, subject, headers, body) of each ``nats`` command, templates filled in."""
    (script,) = _fenced(_section("nats-example"), "sh")
    out = []
    for line in script.replace("\\\n", " ").splitlines():
        if not line.strip():
            continue
        argv = shlex.split(line)
        assert argv[0] == "nats" and argv[1] in ("req", "pub"), line
        headers: dict[str, str] = {}
        positional = []
        words = iter(argv[2:])
        for word in words:
            if word in ("--header", "-H"):
                # As the nats CLI reads K:V: split at the first colon, trim both sides.
                name, _, value = next(words).partition(":")
                headers[name.strip()] = value.strip()
            else:
                positional.append(word)
        subject, body = positional
        # The two templates of the nats CLI the examples use.
        body = body.replace("{{ID}}", "4XbUvYVOUgqPJ7c8RDmhUE").replace("{{Unix}}", "1700000000")
        assert "{{" not in body
        out.append((argv[1], subject, headers, body.encode()))
    return out


def test_documented_json_frame_decodes() -> None:
    (block,) = _fenced(_section("frame-example"), "json")
    frame = decode_frame_message(
        block.encode(), {"Content-Type": JSON}, max_bytes=DEFAULT_MAX_BYTES
    )
    assert frame.site == "site1" and frame.image.shape == (8, 8)
    assert len(frame.regions) == 1 and frame.path == ()
    # Drawn as the camera draws digits: every pixel is 15 times a value in 0..16.
    assert np.all(frame.image % 15 == 0) and frame.image.max() <= 240


def test_documented_nats_commands_send_valid_frames() -> None:
    (block,) = _fenced(_section("frame-example"), "json")
    example = decode_frame_message(block.encode(), {"Content-Type": JSON}, max_bytes=1 << 20)
    commands = _nats_commands()
    assert {verb for verb, *_ in commands} == {"req", "pub"}
    for verb, subject, headers, body in commands:
        frame = decode_frame_message(body, headers, max_bytes=DEFAULT_MAX_BYTES)
        assert headers["Content-Type"] == JSON
        tokens = subject.split(".")
        assert frame.site == tokens[1]  # what the edge worker checks
        if verb == "pub":
            assert tokens[0] == "frames" and frame.camera == tokens[2]
        else:
            assert tokens[0] == "infer" and len(tokens) == 2
            _, reply_headers = encode_result_for(make_result(), header(headers, "Accept"))
            assert reply_headers == {"Content-Type": JSON}
        assert np.array_equal(frame.image, example.image)
        assert frame.regions == example.regions


def test_documented_result_decodes_and_answers_the_frame() -> None:
    (block,) = _fenced(_section("result-example"), "json")
    result = from_json(InferenceResult, block.encode())
    assert result.source is Source.EDGE and result.reason is Reason.CONFIDENT
    assert result.labels == (0,) and result.scores.shape == (1, 10)
    assert result.path == ("edge",)
    frame = next(decode_frame_message(b, h, max_bytes=1 << 20) for _, _, h, b in _nats_commands())
    assert (result.site, result.camera, result.seq) == (frame.site, frame.camera, frame.seq)
    assert result.frame_id == frame.frame_id


def test_documented_frame_is_the_digit_the_result_says() -> None:
    from pipeline.inference.digits import pixels_to_features
    from pipeline.inference.model import OnnxModel

    (block,) = _fenced(_section("frame-example"), "json")
    frame = from_json(Frame, block.encode())
    probabilities = OnnxModel.load("edge").predict_proba(pixels_to_features(frame.crops()))
    assert int(probabilities.argmax()) == 0 and float(probabilities.max()) > 0.99


def test_every_reason_code_is_documented() -> None:
    text = DOC.read_text()
    missing = [r.value for r in Reason if f"| `{r.value}` |" not in text]
    assert not missing, f"docs/wire-format.md does not list reasons {missing}"


def test_every_privacy_class_and_tier_is_documented() -> None:
    text = DOC.read_text()
    for value in [*PrivacyClass, *Source]:
        assert f"`{value.value}`" in text, f"docs/wire-format.md does not name {value.value!r}"


def test_the_doc_describes_this_version() -> None:
    text = DOC.read_text()
    assert text.startswith(f"# Wire format, schema version {SCHEMA_VERSION}\n")
    assert f"| `v` | int | schema version, `{SCHEMA_VERSION}` |" in text
    assert f"## Changes from version {SCHEMA_VERSION - 1}" in text


def test_message_field_lists_match_the_doc_tables() -> None:
    # Every field of every message type is named in the doc (as `name` in a table row).
    text = DOC.read_text()
    for cls in (Frame, InferenceResult, Escalation, DeadLetter):
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name} is not documented"
