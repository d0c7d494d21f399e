"""Fuzzing the decoders: whatever the bytes, the outcome is a message or a SchemaError.

Four sources of input for each of the four decoders: (a) arbitrary bytes, (b) any
msgpack document (and maps dressed with the right ``v`` and ``type`` so they get past
the envelope), (c) a valid message with one field, at any depth, replaced or removed,
(d) valid messages of every version 3 shape drawn by ``wire_strategies`` (raw grey and
colour pixels, encoded images, detections, text lines, crops of either kind), as they
are and with one field changed. About 11,000 inputs in all (``EXAMPLES``), sized so
the file runs in well under a minute on two cores: generating nested msgpack documents
is the expensive part.

Anything other than ``SchemaError`` escaping a decoder fails the test, and so does an
accepted message that breaks a promise of the contract (a bool where an int belongs,
a region outside its image, ...) or does not survive encode -> decode unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import messages
from schemas.codec import decode_dead_letter, decode_escalation, decode_frame, decode_result, encode
from schemas.errors import SchemaError
from schemas.jsonform import from_json, to_json
from schemas.limits import MAX_DEADLINE_S, MAX_UNIX_TIME, SCHEMA_VERSION
from tests.unit.wire_samples import (
    DELETE,
    make_dead_letter,
    make_detection,
    make_escalation,
    make_frame,
    make_line,
    make_result,
    sample_colour,
    sample_jpeg,
)
from tests.unit.wire_strategies import (
    escalations,
    frames,
    key_paths,
    replaced,
    results,
    scalar_values,
    value_at,
)

# Inputs per decoder and source: 4 x (1000 + 550 + 800) + 2 x 600 + 5 x 200 (the version
# 3 seeds) + 3 x (200 + 250) (drawn messages) = 12,950 in all.
EXAMPLES = {
    "bytes": 1000,
    "msgpack": 350,
    "mutated": 500,
    "mutated_other": 600,
    "mutated_v3": 200,
    "drawn": 200,
    "drawn_mutated": 250,
}
FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Decoder = Callable[[bytes], Any]
DECODERS: dict[str, tuple[Decoder, type]] = {
    "frame": (decode_frame, messages.Frame),
    "result": (decode_result, messages.InferenceResult),
    "escalation": (decode_escalation, messages.Escalation),
    "dead_letter": (decode_dead_letter, messages.DeadLetter),
}
KINDS = list(DECODERS)

# ------------------------------------------------------------------ valid seeds

SEEDS: dict[str, Any] = {
    "frame": make_frame(),
    "result": make_result(),
    "escalation": make_escalation(messages.PrivacyClass.CROP),
    "dead_letter": make_dead_letter(),
}
ESCALATION_FULL = make_escalation(messages.PrivacyClass.FULL)
ESCALATION_EMBEDDING = make_escalation(messages.PrivacyClass.EMBEDDING)
# The shapes version 3 added, each a seed of its own.
V3_SEEDS: dict[str, tuple[str, Any]] = {
    "frame-jpeg": (
        "frame",
        make_frame(image=sample_jpeg(), colour=messages.Colour.RGB, regions=()),
    ),
    "frame-rgb": ("frame", make_frame(image=sample_colour(), colour=messages.Colour.BGR)),
    "result-detections-lines": (
        "result",
        make_result(
            detections=(make_detection(), make_detection(label="car", label_index=2)),
            lines=(make_line(), make_line(text="")),
        ),
    ),
    "escalation-encoded-crops": (
        "escalation",
        make_escalation(messages.PrivacyClass.CROP, crops=(sample_jpeg(0), sample_colour(5, 5))),
    ),
    "escalation-full-jpeg": (
        "escalation",
        make_escalation(messages.PrivacyClass.FULL, image=sample_jpeg()),
    ),
}


def _raw(msg: Any) -> dict[str, Any]:
    out = msgpack.unpackb(encode(msg), raw=False)
    assert isinstance(out, dict)
    return out


RAW_SEEDS = {kind: _raw(msg) for kind, msg in SEEDS.items()}
RAW_ESCALATION_FULL = _raw(ESCALATION_FULL)
RAW_ESCALATION_EMBEDDING = _raw(ESCALATION_EMBEDDING)
RAW_V3_SEEDS = {name: (kind, _raw(msg)) for name, (kind, msg) in V3_SEEDS.items()}

# ------------------------------------------------------------------ strategies

scalars = scalar_values()
nested = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.text(max_size=8), inner, max_size=6),
    ),
    max_leaves=12,
)


def _pack(value: Any) -> bytes:
    out = msgpack.packb(value, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def _twins(value: Any) -> list[Any]:
    """Values that look like ``value`` but have another type or sit just past a bound."""
    out: list[Any] = [None, [value], {"": value}, str(value), True, False]
    if type(value) is int:
        out += [float(value), value - 1, value + 1, -value, 2**64 - 1, -(2**63)]
    elif type(value) is float:
        out += [int(value), value * 2, -value, value + 1e-9, math.nan, math.inf]
        out += [value + MAX_DEADLINE_S, value + MAX_DEADLINE_S + 0.5, value - 0.5]
    elif type(value) is str:
        out += [value.encode(), value.upper(), value + ".x", value + " ", value * 65, ""]
    elif type(value) is bytes:
        out += [value[:-1], value + b"\x00", value.decode("latin-1"), b"", value[1:]]
    elif type(value) is list:
        out += [value[:-1], [*value, *value], value * 40, [], value[::-1]]
    elif type(value) is dict:
        out += [{}, {**value, "shape": []}, list(value.values()), {**value, "encoding": "png"}]
    return out


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> bytes:
    """``seed`` with the value at one path replaced by anything, or removed."""
    paths = key_paths(seed)
    # Half the time a top-level field, so each gets a fair share next to nested ones.
    top = [p for p in paths if len(p) == 1]
    path = draw(st.sampled_from(top if draw(st.booleans()) else paths))
    how = draw(st.integers(0, 9))
    if how == 0:
        value = DELETE
    elif how <= 4:
        value = draw(st.sampled_from(_twins(value_at(seed, path))))
    else:
        value = draw(nested)
    return _pack(replaced(seed, path, value))


def dressed(kind: str) -> st.SearchStrategy[bytes]:
    """Maps of known and random keys, with the envelope right so decoding goes deeper."""
    keys = st.sampled_from(sorted(RAW_SEEDS[kind])) | st.text(max_size=8)
    return st.dictionaries(keys, scalars | nested, max_size=10).map(
        lambda d: _pack({**d, "v": SCHEMA_VERSION, "type": kind})
    )


# ------------------------------------------------------------------ the property


def _is_int(v: Any) -> bool:
    return type(v) is int


def _is_labels(v: Any) -> bool:
    return type(v) is tuple and all(_is_int(i) and 0 <= i < 1000 for i in v)


def _is_number(v: Any) -> bool:
    return type(v) is float and math.isfinite(v)


def _is_array(v: Any, dtype: str, ndims: tuple[int, ...] = (2,)) -> bool:
    return (
        type(v) is np.ndarray
        and v.dtype == np.dtype(dtype)
        and v.ndim in ndims
        and not v.flags.writeable
        and (dtype != "float32" or bool(np.isfinite(v).all()))
    )


def _is_region(r: Any) -> bool:
    return (
        type(r) is messages.Region
        and all(_is_int(v) for v in (r.x, r.y, r.w, r.h))
        and (r.x >= 0 and r.y >= 0 and r.w >= 1 and r.h >= 1)
    )


def _is_path(v: Any) -> bool:
    tiers = list(messages.Source)
    return (
        type(v) is tuple
        and all(type(t) is messages.Source for t in v)
        and list(v) == sorted(set(v), key=tiers.index)
    )


def _is_time(v: float) -> bool:
    return 0.0 <= v <= MAX_UNIX_TIME


def _inside(regions: tuple[messages.Region, ...], image: np.ndarray) -> bool:
    height, width = image.shape[:2]
    return all(r.x + r.w <= width and r.y + r.h <= height for r in regions)


def _is_pixels(v: Any) -> bool:
    """uint8 H x W or H x W x 3, or an encoded image that starts with its signature."""
    if type(v) is messages.Encoded:
        return (
            type(v.encoding) is messages.Encoding
            and type(v.data) is bytes
            and v.data.startswith(v.encoding.signature)
        )
    return _is_array(v, "uint8", (2, 3)) and (v.ndim == 2 or v.shape[2] == 3)


def _is_share(v: Any) -> bool:
    return _is_number(v) and 0.0 <= v <= 1.0


def _is_detection(d: Any) -> bool:
    return (
        type(d) is messages.Detection
        and _is_region(d.box)
        and type(d.label) is str
        and 1 <= len(d.label) <= 128
        and _is_int(d.label_index)
        and 0 <= d.label_index < 1000
        and _is_share(d.score)
        and type(d.source) is messages.Source
    )


def _is_line(t: Any) -> bool:
    return (
        type(t) is messages.TextLine
        and _is_region(t.box)
        and type(t.text) is str
        and len(t.text) <= 256
        and _is_share(t.confidence)
        and type(t.source) is messages.Source
    )


# What an accepted message promises, field by field, whatever the input was.
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: type(v) is str,
    "int": _is_int,
    "float": _is_number,
    "bool": lambda v: type(v) is bool,
    "bytes": lambda v: type(v) is bytes,
    "float | None": lambda v: v is None or _is_number(v),
    "tuple[int, ...]": _is_labels,
    "tuple[int, ...] | None": lambda v: v is None or _is_labels(v),
    "tuple[Region, ...]": lambda v: type(v) is tuple and all(_is_region(r) for r in v),
    "np.ndarray": lambda v: type(v) is np.ndarray,
    "Pixels": _is_pixels,
    "Pixels | None": lambda v: v is None or _is_pixels(v),
    "tuple[Pixels, ...]": lambda v: type(v) is tuple and all(_is_pixels(c) for c in v),
    "tuple[Detection, ...]": lambda v: (
        type(v) is tuple and len(v) <= 300 and all(_is_detection(d) for d in v)
    ),
    "tuple[TextLine, ...]": lambda v: (
        type(v) is tuple and len(v) <= 300 and all(_is_line(t) for t in v)
    ),
    "Colour": lambda v: type(v) is messages.Colour,
    "PrivacyClass": lambda v: type(v) is messages.PrivacyClass,
    "Source": lambda v: type(v) is messages.Source,
    "Reason": lambda v: type(v) is messages.Reason,
    "tuple[str, ...]": _is_path,
}
# Fields whose type alone does not say what they promise.
_NAMED_CHECKS: dict[str, Callable[[Any], bool]] = {
    "embedding": lambda v: v is None or _is_array(v, "float32", (1, 2)),
}


def _assert_well_formed(msg: Any) -> None:
    for field in dataclasses.fields(msg):
        value = getattr(msg, field.name)
        check = _NAMED_CHECKS.get(field.name) or _FIELD_CHECKS[str(field.type)]
        assert check(value), f"{field.name} = {value!r}"
    if isinstance(msg, messages.Frame | messages.Escalation | messages.InferenceResult):
        for token in (msg.site, msg.camera):
            assert token and all(c.isascii() and (c.isalnum() or c in "_-") for c in token)
    if isinstance(msg, messages.Frame):
        if isinstance(msg.image, messages.Encoded):
            assert msg.colour is messages.Colour.RGB  # regions: checked by the edge
        else:
            assert (msg.colour is messages.Colour.GRAY) == (msg.image.ndim == 2)
            assert _inside(msg.regions, msg.image)
        assert 1 <= msg.priority <= 3
        assert msg.threshold is None or 0.0 <= msg.threshold <= 1.0
        assert _is_time(msg.captured_at) and _is_time(msg.deadline_at)
        assert 1 <= msg.deadline_ms <= MAX_DEADLINE_S * 1000
    elif isinstance(msg, messages.InferenceResult):
        assert _is_array(msg.scores, "float32")
        assert msg.scores.shape[0] == len(msg.labels)
        assert 0.0 <= msg.confidence <= 1.0
        assert msg.latency_ms >= 0.0
        assert not msg.path or msg.path[-1] is msg.source
    elif isinstance(msg, messages.Escalation):
        assert msg.privacy is not messages.PrivacyClass.LOCAL_ONLY
        assert 1 <= msg.priority <= 3
        assert _is_time(msg.captured_at) and _is_time(msg.deadline_at)
        assert msg.captured_at <= msg.deadline_at <= msg.captured_at + MAX_DEADLINE_S
        assert 0.0 <= msg.edge_confidence <= 1.0
        if msg.privacy is messages.PrivacyClass.EMBEDDING:
            assert msg.image is None and msg.crops == ()
            assert msg.embedding is not None and msg.embedding.shape[-1] >= 1
            assert msg.embedding.ndim == 1 or msg.embedding.shape[0] == len(msg.regions)
            return
        assert msg.embedding is None
        if msg.privacy is messages.PrivacyClass.FULL:
            assert msg.image is not None and msg.crops == ()
            if isinstance(msg.image, messages.Encoded):
                return  # its regions: checked by the cloud once it has decoded it
            assert _inside(msg.regions, msg.image)
        else:
            assert msg.image is None
            assert len(msg.crops) == len(msg.regions)
            for crop, r in zip(msg.crops, msg.regions, strict=True):
                assert isinstance(crop, messages.Encoded) or crop.shape[:2] == (r.h, r.w)
        pixels = msg.region_pixels()
        assert all(isinstance(p, messages.Encoded) or p.size > 0 for p in pixels)


def _check(kind: str, data: bytes) -> None:
    decode, cls = DECODERS[kind]
    try:
        msg = decode(data)
    except SchemaError as exc:
        assert str(exc), "a SchemaError must say what is wrong"
        return
    assert type(msg) is cls
    _assert_well_formed(msg)
    if isinstance(msg, messages.DeadLetter):
        assert msg.at >= 0.0
    # An accepted message is a valid one: it survives another trip unchanged.
    again = encode(msg)  # type: ignore[arg-type]
    assert encode(decode(again)) == again


@pytest.mark.parametrize("kind", KINDS)
@settings(FUZZ, max_examples=EXAMPLES["bytes"])
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes(kind: str, data: bytes) -> None:
    _check(kind, data)


@pytest.mark.parametrize("kind", KINDS)
@settings(FUZZ, max_examples=EXAMPLES["msgpack"])
@given(data=st.data())
def test_arbitrary_msgpack(kind: str, data: st.DataObject) -> None:
    payload = _pack(data.draw(nested)) if data.draw(st.booleans()) else data.draw(dressed(kind))
    _check(kind, payload)


@pytest.mark.parametrize("kind", KINDS)
@settings(FUZZ, max_examples=EXAMPLES["mutated"])
@given(data=st.data())
def test_one_field_mutated(kind: str, data: st.DataObject) -> None:
    _check(kind, data.draw(mutated(RAW_SEEDS[kind])))


@settings(FUZZ, max_examples=EXAMPLES["mutated_other"])
@given(data=mutated(RAW_ESCALATION_FULL))
def test_full_escalation_one_field_mutated(data: bytes) -> None:
    _check("escalation", data)


@settings(FUZZ, max_examples=EXAMPLES["mutated_other"])
@given(data=mutated(RAW_ESCALATION_EMBEDDING))
def test_embedding_escalation_one_field_mutated(data: bytes) -> None:
    _check("escalation", data)


@pytest.mark.parametrize("name", list(V3_SEEDS))
@settings(FUZZ, max_examples=EXAMPLES["mutated_v3"])
@given(data=st.data())
def test_v3_seed_one_field_mutated(name: str, data: st.DataObject) -> None:
    kind, raw = RAW_V3_SEEDS[name]
    _check(kind, data.draw(mutated(raw)))


DRAWN: dict[str, st.SearchStrategy[messages.Message]] = {
    "frame": frames(),
    "result": results(),
    "escalation": escalations(),
}


@pytest.mark.parametrize("kind", list(DRAWN))
@settings(FUZZ, max_examples=EXAMPLES["drawn"])
@given(data=st.data())
def test_drawn_messages_round_trip_in_both_forms(kind: str, data: st.DataObject) -> None:
    msg = data.draw(DRAWN[kind])
    decode, cls = DECODERS[kind]
    packed = encode(msg)
    got = decode(packed)
    _assert_well_formed(got)
    assert encode(got) == packed
    assert encode(from_json(cls, to_json(msg))) == packed


@pytest.mark.parametrize("kind", list(DRAWN))
@settings(FUZZ, max_examples=EXAMPLES["drawn_mutated"])
@given(data=st.data())
def test_drawn_message_one_field_mutated(kind: str, data: st.DataObject) -> None:
    _check(kind, data.draw(mutated(_raw(data.draw(DRAWN[kind])))))


def test_seeds_are_valid() -> None:
    # The mutation tests only mean something if the unmutated seeds decode.
    for kind, raw in RAW_SEEDS.items():
        decode, cls = DECODERS[kind]
        assert type(decode(_pack(raw))) is cls
    assert decode_escalation(_pack(RAW_ESCALATION_FULL)).image is not None
    assert decode_escalation(_pack(RAW_ESCALATION_EMBEDDING)).embedding is not None
    for kind, raw in RAW_V3_SEEDS.values():
        decode, cls = DECODERS[kind]
        assert type(decode(_pack(raw))) is cls


def test_mutations_reach_nested_fields() -> None:
    paths = key_paths(RAW_SEEDS["escalation"])
    assert ("crops", 1, "shape", 0) in paths
    assert ("regions", 0, 2) in paths
    assert ("image", "data") in key_paths(RAW_SEEDS["frame"])
    assert ("path", 1) in key_paths(RAW_SEEDS["result"])
    assert ("embedding", "shape", 1) in key_paths(RAW_ESCALATION_EMBEDDING)
    assert ("image", "encoding") in key_paths(RAW_V3_SEEDS["frame-jpeg"][1])
    assert ("image", "shape", 2) in key_paths(RAW_V3_SEEDS["frame-rgb"][1])
    assert ("colour",) in key_paths(RAW_V3_SEEDS["frame-rgb"][1])
    result = key_paths(RAW_V3_SEEDS["result-detections-lines"][1])
    assert ("detections", 1, "score") in result and ("lines", 1, "text") in result
    assert ("detections", 0, "box", 3) in result
    assert ("crops", 0, "encoding") in key_paths(RAW_V3_SEEDS["escalation-encoded-crops"][1])
