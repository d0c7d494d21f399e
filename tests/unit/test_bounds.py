"""The bounds on numbers and times: what no reader accepts, no writer can produce.

Every time on the wire is Unix seconds in [0, MAX_UNIX_TIME] (2100-01-01), an
escalation is due 0 to MAX_DEADLINE_S seconds after capture, a result's ``latency_ms``
is finite and >= 0, and its detections' scores and lines' confidences are in [0, 1],
with their labels, label indexes, texts and counts bounded. Each bound is checked four
ways: the msgpack and the JSON decoder refuse a map that breaks it, and ``encode`` and
``to_json`` refuse a message that breaks it, all four with the same words. Values on
the bound are accepted.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import struct
from datetime import UTC, datetime
from typing import Any

import msgpack
import orjson
import pytest

from schemas.codec import decode, decode_escalation, decode_frame, decode_result, encode
from schemas.errors import SchemaError
from schemas.jsonform import from_json, to_json
from schemas.limits import (
    MAX_CLASSES,
    MAX_DEADLINE_MS,
    MAX_DEADLINE_S,
    MAX_DETECTIONS,
    MAX_LABEL_CHARS,
    MAX_LINES,
    MAX_TEXT_CHARS,
    MAX_UNIX_TIME,
)
from schemas.messages import (
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    Message,
    PrivacyClass,
    Region,
    Source,
)
from tests.unit.wire_samples import (
    make_dead_letter,
    make_detection,
    make_escalation,
    make_frame,
    make_line,
    make_result,
)

T0 = 1_700_000_000.5  # the captured_at of make_escalation()


def test_the_bounds_are_the_documented_constants() -> None:
    assert datetime.fromtimestamp(MAX_UNIX_TIME, UTC) == datetime(2100, 1, 1, tzinfo=UTC)
    assert MAX_DEADLINE_S == 3600.0
    assert MAX_DEADLINE_MS == MAX_DEADLINE_S * 1000


def _refused_everywhere(message: Message, fragment: str) -> None:
    """Both encoders refuse ``message``; both decoders refuse its map; same words."""
    kind = type(message)
    with pytest.raises(SchemaError, match=re.escape(fragment)) as by_encode:
        encode(message)
    with pytest.raises(SchemaError, match=re.escape(fragment)) as by_to_json:
        to_json(message)
    # The map as a writer without the checks would have sent it.
    wire = _unchecked_map(message)
    with pytest.raises(SchemaError, match=re.escape(fragment)) as by_msgpack:
        decode(kind, msgpack.packb(wire, use_bin_type=True))
    if _finite(wire):  # JSON has no NaN or infinity
        with pytest.raises(SchemaError, match=re.escape(fragment)) as by_json:
            from_json(kind, orjson.dumps(wire, default=_base64))
        assert str(by_json.value) == str(by_msgpack.value)
    assert str(by_encode.value) == str(by_to_json.value) == str(by_msgpack.value)


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a wire map."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _plain(value: Any) -> Any:
    """A message's value as a wire map holds it, unchecked: detections and lines as maps."""
    if isinstance(value, Region):
        return [value.x, value.y, value.w, value.h]
    if isinstance(value, Source):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        return [_plain(v) for v in value]
    return value


def _base64(value: Any) -> str:
    assert isinstance(value, bytes)
    return base64.b64encode(value).decode()


def _unchecked_map(message: Message) -> dict[str, Any]:
    """The wire map of ``message`` as an unchecked writer would send it.

    Encoded from a twin with valid scalars, then the message's own scalars put back.
    """
    fixes: dict[type[Any], dict[str, Any]] = {
        Frame: {"captured_at": 0.0, "deadline_ms": 1, "seq": 0, "priority": 1, "threshold": None},
        InferenceResult: {
            "latency_ms": 0.0,
            "confidence": 0.0,
            "seq": 0,
            "detections": (),
            "lines": (),
        },
        Escalation: {
            "captured_at": 0.0,
            "deadline_at": 0.0,
            "seq": 0,
            "priority": 1,
            "edge_confidence": 0.0,
        },
        DeadLetter: {"at": 0.0},
    }
    wire: dict[str, Any] = msgpack.unpackb(
        encode(dataclasses.replace(message, **fixes[type(message)])), raw=False
    )
    for key in fixes[type(message)]:
        wire[key] = _plain(getattr(message, key))
    return wire


# ------------------------------------------------------------------ times


@pytest.mark.parametrize(
    ("captured_at", "fragment"),
    [
        (1e308, "frame.captured_at: 1e+308 is outside 0.0..4102444800.0"),
        (MAX_UNIX_TIME + 1, "frame.captured_at: 4102444801.0 is outside 0.0..4102444800.0"),
        (-0.001, "frame.captured_at: -0.001 is outside 0.0..4102444800.0"),
        (math.inf, "frame.captured_at: inf is not a finite number"),
        (math.nan, "frame.captured_at: nan is not a finite number"),
    ],
)
def test_frame_captured_at_bounds(captured_at: float, fragment: str) -> None:
    _refused_everywhere(make_frame(captured_at=captured_at), fragment)


def test_frame_deadline_must_fall_before_the_end_of_time() -> None:
    # captured_at itself is in range, but the result would be due after 2100.
    late = make_frame(captured_at=MAX_UNIX_TIME - 0.125, deadline_ms=250)
    _refused_everywhere(
        late,
        "frame.deadline_ms: the deadline captured_at + deadline_ms / 1000 = 4102444800.125 is "
        "after 4102444800.0 (2100-01-01)",
    )


@pytest.mark.parametrize(
    "frame",
    [
        make_frame(captured_at=0.0, deadline_ms=MAX_DEADLINE_MS),
        make_frame(captured_at=MAX_UNIX_TIME - 0.25, deadline_ms=250),
        make_frame(captured_at=MAX_UNIX_TIME - MAX_DEADLINE_S, deadline_ms=MAX_DEADLINE_MS),
    ],
    ids=["epoch-longest", "last-moment", "last-longest"],
)
def test_frames_on_the_bounds_are_accepted_and_can_be_escalated(frame: Frame) -> None:
    assert decode_frame(encode(frame)).deadline_at == frame.deadline_at <= MAX_UNIX_TIME
    assert from_json(Frame, to_json(frame)).captured_at == frame.captured_at
    # Whatever frame a reader accepts, its escalation is one the cloud accepts.
    escalation = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1, 2), 0.5)
    assert decode_escalation(encode(escalation)).deadline_at == frame.deadline_at


def test_every_frame_deadline_gives_an_escalation_within_max_deadline() -> None:
    # captured_at + deadline_ms / 1000 is never more than captured_at + MAX_DEADLINE_S in
    # float64, whatever the rounding: the rule is written as that comparison.
    crossing = 2.0**31 - 3600 + 3 * 2.0**-22  # c + 3600 rounds up as it crosses 2**31
    assert (crossing + MAX_DEADLINE_S) - crossing > MAX_DEADLINE_S
    for captured_at in (0.1, 1_700_000_000.1, 1_999_999_999.3, 4_000_000_000.7, crossing):
        for deadline_ms in (1, 999, 3_599_999, MAX_DEADLINE_MS):
            frame = make_frame(captured_at=captured_at, deadline_ms=deadline_ms)
            esc = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1, 2), 0.5)
            assert decode_escalation(encode(esc)).deadline_at == frame.deadline_at


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"captured_at": 1e308}, "escalation.captured_at: 1e+308 is outside 0.0..4102444800.0"),
        ({"captured_at": -1.0}, "escalation.captured_at: -1.0 is outside 0.0..4102444800.0"),
        (
            {"captured_at": MAX_UNIX_TIME, "deadline_at": MAX_UNIX_TIME + 0.5},
            "escalation.deadline_at: 4102444800.5 is outside 0.0..4102444800.0",
        ),
        ({"deadline_at": math.inf}, "escalation.deadline_at: inf is not a finite number"),
        (
            {"deadline_at": T0 - 0.25},
            f"escalation.deadline_at: {T0 - 0.25} is -0.250 s after captured_at {T0}; "
            "it must be 0 to 3600 s after",
        ),
        (
            {"deadline_at": T0 + MAX_DEADLINE_S + 0.5},
            f"escalation.deadline_at: {T0 + 3600.5} is 3600.500 s after captured_at {T0}; "
            "it must be 0 to 3600 s after",
        ),
        (
            {"captured_at": 0.0, "deadline_at": 1e9},
            "escalation.deadline_at: 1000000000.0 is 1000000000.000 s after captured_at 0.0",
        ),
    ],
    ids=["huge", "negative", "after-2100", "inf", "before-capture", "too-late", "decades"],
)
def test_escalation_time_bounds(changes: dict[str, Any], fragment: str) -> None:
    _refused_everywhere(make_escalation(**changes), fragment)


@pytest.mark.parametrize(
    "changes",
    [
        {"deadline_at": T0},
        {"deadline_at": T0 + MAX_DEADLINE_S},
        {"captured_at": 0.0, "deadline_at": 0.0},
        {"captured_at": MAX_UNIX_TIME, "deadline_at": MAX_UNIX_TIME},
    ],
    ids=["due-at-capture", "longest", "epoch", "end"],
)
def test_escalation_times_on_the_bounds_are_accepted(changes: dict[str, Any]) -> None:
    esc = make_escalation(**changes)
    got = decode_escalation(encode(esc))
    assert (got.captured_at, got.deadline_at) == (esc.captured_at, esc.deadline_at)
    assert from_json(Escalation, to_json(esc)).deadline_at == esc.deadline_at


# ------------------------------------------------------------------ results and the rest


@pytest.mark.parametrize(
    ("latency_ms", "fragment"),
    [
        (-0.001, "result.latency_ms: -0.001 is outside 0.0..inf"),
        (-3.0, "result.latency_ms: -3.0 is outside 0.0..inf"),
        (-math.inf, "result.latency_ms: -inf is not a finite number"),
        (math.inf, "result.latency_ms: inf is not a finite number"),
        (math.nan, "result.latency_ms: nan is not a finite number"),
    ],
)
def test_result_latency_bounds(latency_ms: float, fragment: str) -> None:
    _refused_everywhere(make_result(latency_ms=latency_ms), fragment)


@pytest.mark.parametrize("latency_ms", [0.0, 0.001, 4.1e12])
def test_result_latency_on_the_bounds_is_accepted(latency_ms: float) -> None:
    assert decode_result(encode(make_result(latency_ms=latency_ms))).latency_ms == latency_ms


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (make_result(confidence=1.0000001), "result.confidence: 1.0000001 is outside 0.0..1.0"),
        (make_result(confidence=-0.5), "result.confidence: -0.5 is outside 0.0..1.0"),
        (make_escalation(edge_confidence=2.0), "escalation.edge_confidence: 2.0 is outside"),
        (make_frame(threshold=1.5), "frame.threshold: 1.5 is outside 0.0..1.0"),
        (make_frame(priority=0), "frame.priority: 0 is outside 1..3"),
        (make_escalation(priority=4), "escalation.priority: 4 is outside 1..3"),
        (make_frame(deadline_ms=0), "frame.deadline_ms: 0 is outside 1..3600000"),
        (make_frame(deadline_ms=3_600_001), "frame.deadline_ms: 3600001 is outside 1..3600000"),
        (make_frame(seq=-1), "frame.seq: -1 is outside 0..9223372036854775807"),
        (make_result(seq=2**63), "result.seq: 9223372036854775808 is outside 0..922337"),
        (make_dead_letter(at=-1.0), "dead_letter.at: -1.0 is outside 0.0..inf"),
        (make_dead_letter(at=math.nan), "dead_letter.at: nan is not a finite number"),
    ],
)
def test_other_scalar_rules_hold_for_writers_too(message: Message, fragment: str) -> None:
    _refused_everywhere(message, fragment)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (make_frame(captured_at="now"), "frame.captured_at: expected a number, got str"),
        (make_frame(seq=True), "frame.seq: expected an integer, got bool"),
        (make_frame(priority=2.0), "frame.priority: expected an integer, got float"),
        (make_result(latency_ms=None), "result.latency_ms: expected a number, got NoneType"),
        (make_escalation(deadline_at=True), "escalation.deadline_at: expected a number, got bool"),
    ],
)
def test_writers_refuse_numbers_of_the_wrong_type(message: Message, fragment: str) -> None:
    for write in (encode, to_json):
        with pytest.raises(SchemaError, match=re.escape(fragment)):
            write(message)


def test_float_fields_are_written_as_float_64() -> None:
    # 0xcb is msgpack's float 64; an int 0 in a float field is still written as 0.0.
    data = encode(make_frame(captured_at=0, threshold=1, deadline_ms=5))
    assert b"\xabcaptured_at\xcb" + bytes(8) in data
    assert b"\xa9threshold\xcb" + struct.pack(">d", 1.0) in data
    result = encode(make_result(latency_ms=3, confidence=1))
    assert b"\xaalatency_ms\xcb" in result and b"\xaaconfidence\xcb" in result


# ------------------------------------------------------------------ detections and lines


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (
            make_result(detections=(make_detection(score=1.5),)),
            "result.detections[0].score: 1.5 is outside 0.0..1.0",
        ),
        (
            make_result(detections=(make_detection(score=-0.0001),)),
            "result.detections[0].score: -0.0001 is outside 0.0..1.0",
        ),
        (
            make_result(detections=(make_detection(), make_detection(score=math.nan))),
            "result.detections[1].score: nan is not a finite number",
        ),
        (
            make_result(detections=(make_detection(score=math.inf),)),
            "result.detections[0].score: inf is not a finite number",
        ),
        (
            make_result(detections=(make_detection(label_index=MAX_CLASSES),)),
            "result.detections[0].label_index: 1000 is outside 0..999",
        ),
        (
            make_result(detections=(make_detection(label="x" * (MAX_LABEL_CHARS + 1)),)),
            "result.detections[0].label: longer than 128 characters",
        ),
        (
            make_result(detections=(make_detection(),) * (MAX_DETECTIONS + 1)),
            "result.detections: 301 items, at most 300 allowed",
        ),
        (
            make_result(lines=(make_line(confidence=1.25),)),
            "result.lines[0].confidence: 1.25 is outside 0.0..1.0",
        ),
        (
            make_result(lines=(make_line(text="é" * (MAX_TEXT_CHARS + 1)),)),
            "result.lines[0].text: longer than 256 characters",
        ),
        (
            make_result(lines=(make_line(),) * (MAX_LINES + 1)),
            "result.lines: 301 items, at most 300 allowed",
        ),
    ],
    ids=[
        "score-high",
        "score-negative",
        "score-nan",
        "score-inf",
        "label-index",
        "label-long",
        "too-many-detections",
        "confidence-high",
        "text-long",
        "too-many-lines",
    ],
)
def test_detection_and_line_bounds(message: Message, fragment: str) -> None:
    _refused_everywhere(message, fragment)


def test_detections_and_lines_on_the_bounds_are_accepted() -> None:
    result = make_result(
        detections=(
            make_detection(score=0.0, label_index=0, label="x"),
            make_detection(score=1.0, label_index=MAX_CLASSES - 1, label="y" * MAX_LABEL_CHARS),
        )
        * (MAX_DETECTIONS // 2),
        lines=(make_line(text="", confidence=0.0), make_line(text="z" * MAX_TEXT_CHARS))
        * (MAX_LINES // 2),
    )
    for got in (decode_result(encode(result)), from_json(InferenceResult, to_json(result))):
        assert got.detections == result.detections and got.lines == result.lines
