"""schemas.codec: what every message must be to be read, whatever its type.

Bytes within the size limit, valid msgpack, a map, the schema version this reader
speaks, the right ``type``, every field present and every number finite. Each refusal
asserts ``SchemaError`` *and* a fragment of its message.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import decode_frame, encode
from schemas.limits import SCHEMA_VERSION
from schemas.messages import Frame, Message
from tests.unit.wire_samples import (
    DECODER_IDS,
    DECODERS,
    DELETE,
    make_frame,
    make_result,
    patched,
    refused,
)

# ------------------------------------------------------------------ envelope refusals


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_not_msgpack(kind: str, decode: Callable[..., Any], make: Callable[[], Message]) -> None:
    refused(decode, b"\xc1", f"{kind}: not valid msgpack")
    refused(decode, encode(make())[:-3], f"{kind}: not valid msgpack")  # truncated
    refused(decode, encode(make()) + b"\x00", f"{kind}: not valid msgpack")  # trailing data
    refused(decode, b"", f"{kind}: not valid msgpack")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_not_bytes(kind: str, decode: Callable[..., Any], make: Callable[[], Message]) -> None:
    refused(decode, "not bytes", f"{kind}: expected bytes, got str")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    ("payload", "got"), [([1, 2], "list"), ("frame", "str"), (None, "NoneType"), (7, "int")]
)
def test_not_a_map(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], payload: Any, got: str
) -> None:
    refused(decode, msgpack.packb(payload), f"{kind}: expected a map, got {got}")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    "version", [1, 2, 4, 0, -2, 2**64 - 1], ids=["v1", "v2", "v4", "v0", "neg", "u64"]
)
def test_unknown_schema_version(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], version: int
) -> None:
    refused(
        decode,
        patched(make(), v=version),
        f"{kind}.v: schema version {version} is not supported; this reader speaks {SCHEMA_VERSION}",
    )


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_missing_schema_version_says_v_is_missing(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    err = refused(decode, patched(make(), v=DELETE), f"{kind}.v: missing;")
    assert "None" not in str(err) and "not supported" not in str(err)
    assert f"this reader speaks {SCHEMA_VERSION}" in str(err)


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    ("version", "got"),
    [(2.0, "float"), (True, "bool"), (False, "bool"), ("2", "str"), (None, "NoneType")],
    ids=["float", "true", "false", "str", "nil"],
)
def test_schema_version_of_another_type_is_a_type_error(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], version: Any, got: str
) -> None:
    err = refused(decode, patched(make(), v=version), f"{kind}.v: expected an integer, got {got}")
    assert "not supported" not in str(err)


def test_this_is_version_3() -> None:
    # A bump is a contract change: docs/wire-format.md and the vectors move with it.
    assert SCHEMA_VERSION == 3
    assert msgpack.unpackb(encode(make_frame()))["v"] == 3


def test_a_version_2_frame_is_refused_saying_so() -> None:
    # What a version 2 camera sends: no colour key, v 2. The version is read first.
    v2 = patched(make_frame(), v=2, colour=DELETE)
    refused(decode_frame, v2, "frame.v: schema version 2 is not supported; this reader speaks 3")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_wrong_message_type(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    other = make_result() if kind != "result" else make_frame()
    other_kind = "result" if kind != "result" else "frame"
    refused(decode, encode(other), f"{kind}.type: {other_kind!r}, expected {kind!r}")
    refused(decode, patched(make(), type=DELETE), f"{kind}.type: None, expected {kind!r}")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_oversized_payload(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    data = encode(make())
    refused(
        lambda d: decode(d, max_bytes=100),
        data,
        f"{kind}: {len(data)} bytes is over the limit of 100",
    )


def test_default_frame_size_limit() -> None:
    image = np.zeros((2048, 4097), np.uint8)  # just over 8 MiB of pixels
    data = encode(make_frame(image=image))
    refused(decode_frame, data, f"frame: {len(data)} bytes is over the limit of 8388608")


# ------------------------------------------------------------------ every field, every number

FRAME_FIELDS = [
    "frame_id",
    "site",
    "camera",
    "seq",
    "captured_at",
    "image",
    "regions",
    "priority",
    "deadline_ms",
    "threshold",
    "privacy",
    "path",
    "colour",
]


def test_frame_field_list_is_complete() -> None:
    assert set(FRAME_FIELDS) == {f.name for f in dataclasses.fields(Frame)}
    assert set(msgpack.unpackb(encode(make_frame()))) == {*FRAME_FIELDS, "v", "type"}


MISSING = [
    (kind, decode, make, field.name)
    for kind, decode, make in DECODERS
    for field in dataclasses.fields(type(make()))
]


@pytest.mark.parametrize(
    ("kind", "decode", "make", "field"), MISSING, ids=[f"{k}.{f}" for k, _, _, f in MISSING]
)
def test_missing_field(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], field: str
) -> None:
    refused(decode, patched(make(), **{field: DELETE}), f"{kind}.{field}: missing")


NUMBERS = [
    ("frame", "captured_at"),
    ("frame", "threshold"),
    ("result", "confidence"),
    ("result", "latency_ms"),
    ("escalation", "captured_at"),
    ("escalation", "deadline_at"),
    ("escalation", "edge_confidence"),
    ("dead_letter", "at"),
]


@pytest.mark.parametrize(("kind", "field"), NUMBERS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_refused(kind: str, field: str, value: float) -> None:
    _, decode, make = DECODERS[DECODER_IDS.index(kind)]
    refused(decode, patched(make(), **{field: value}), f"{kind}.{field}: {value} is not a finite")


def test_map_keys_must_be_strings() -> None:
    refused(decode_frame, msgpack.packb({1: 1, "v": 1}), "frame: not valid msgpack")
