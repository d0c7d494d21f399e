"""schemas.jsonform: the ``Content-Type`` and ``Accept`` headers choose the wire form.

A frame is msgpack unless its ``Content-Type`` says JSON; a result comes back in the
form the requester's ``Accept`` header asks for, msgpack by default.
"""

from __future__ import annotations

import pytest

from schemas.codec import encode
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
from schemas.limits import DEFAULT_MAX_BYTES
from schemas.messages import InferenceResult
from tests.unit.wire_samples import assert_same, make_frame, make_result


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
    assert_same(frame, make_frame())


@pytest.mark.parametrize(
    "content_type", [JSON, "application/json; charset=utf-8", " APPLICATION/JSON "]
)
def test_frames_in_json(content_type: str) -> None:
    data = to_json(make_frame())
    frame = decode_frame_message(data, {"Content-Type": content_type}, max_bytes=DEFAULT_MAX_BYTES)
    assert_same(frame, make_frame())


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
        assert_same(from_json(InferenceResult, data), result)
    else:
        assert data == encode(result)
