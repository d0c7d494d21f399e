"""docs/wire-format.md says exactly what the encoder writes.

A client in another language is written from that page, so its tables are checked
against the code: the key order of every message table against ``to_map``, the float
fields against the bytes of the golden vectors, and the bounds and size limits against
the constants the code uses. Its examples (a JSON frame, ``nats`` commands, a JSON
result) are decoded here too, so they cannot go stale.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from pipeline.messaging.natsio import DEAD_LETTER_MAX_DATA
from pipeline.messaging.server import NatsServer
from schemas.jsonform import JSON, decode_frame_message, encode_result_for, from_json, header
from schemas.limits import (
    DEFAULT_MAX_BYTES,
    MAX_DEADLINE_MS,
    MAX_DEADLINE_S,
    MAX_UNIX_TIME,
    SCHEMA_VERSION,
)
from schemas.messages import KINDS, Frame, InferenceResult, PrivacyClass, Reason, Source
from schemas.vectors import make
from schemas.writer import to_map
from tests.unit.wire_samples import make_result

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
FLAT = " ".join(DOC.split())  # for phrases that a line break may split
# The heading of each message's section, by its wire name.
SECTIONS = {
    "frame": '### Frame (`type: "frame"`)',
    "result": '### Result (`type: "result"`)',
    "escalation": '### Escalation (`type: "escalation"`)',
    "dead_letter": '### DeadLetter (`type: "dead_letter"`)',
}


def _first_table(after: str) -> list[list[str]]:
    """The cells of the first table after the heading ``after``, header rows dropped."""
    assert DOC.count(after) == 1, f"docs/wire-format.md needs one {after!r}"
    text = DOC[DOC.index(after) :]
    rows = []
    for line in text.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"no table after {after!r}"
    return rows[2:]  # the header and the |---| line


def _keys(rows: list[list[str]]) -> list[str]:
    """The key names of a table, in order: every `name` in each row's first cell."""
    return [key for row in rows for key in re.findall(r"`([a-z_]+)`", row[0])]


def _example(cls: type[Any]) -> Any:
    return next(m for m in make.messages().values() if type(m) is cls)


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: KINDS[c])
def test_each_message_table_lists_the_keys_in_the_order_they_are_written(
    cls: type[Any],
) -> None:
    written = list(to_map(_example(cls)))
    assert written[:2] == ["v", "type"]
    assert _keys(_first_table(SECTIONS[KINDS[cls]])) == written[2:]


def test_the_envelope_and_array_tables_are_in_written_order() -> None:
    envelope = _first_table("Every map carries:")
    assert _keys(envelope) == ["v", "type"]
    frame = to_map(_example(Frame))
    assert _keys(_first_table("An array is a map:")) == list(frame["image"])


def test_the_float_fields_are_exactly_those_written_as_float_64() -> None:
    documented: dict[str, set[str]] = {}
    for row in _first_table("float fields are exactly these"):
        documented[row[0]] = set(re.findall(r"`([a-z_]+)`", row[1]))
    names = {"frame": "Frame", "result": "Result", "escalation": "Escalation",
             "dead_letter": "DeadLetter"}  # fmt: skip
    written: dict[str, set[str]] = {}
    for file, data in make.files().items():
        if file.endswith(".msgpack"):
            raw = msgpack.unpackb(data, raw=False)
            floats = {k for k, v in raw.items() if type(v) is float}
            written.setdefault(names[raw["type"]], set()).update(floats)
            # ... and each as float 64, 0xcb.
            for key in floats:
                assert bytes([0xA0 | len(key)]) + key.encode() + b"\xcb" in data, (file, key)
    assert documented == written


def test_the_documented_bounds_are_the_codes() -> None:
    assert f"0..{MAX_UNIX_TIME:.0f}" in FLAT and "2100-01-01" in FLAT
    assert f"captured_at + {MAX_DEADLINE_S:.1f}" in FLAT
    assert f"1..{MAX_DEADLINE_MS:,}" in FLAT
    assert "`MAX_UNIX_TIME`" in FLAT and "`MAX_DEADLINE_S`" in FLAT


def test_the_documented_size_limits_are_the_codes() -> None:
    assert DEFAULT_MAX_BYTES == 4 * 1024 * 1024
    assert f"4 MiB, {DEFAULT_MAX_BYTES:,} bytes" in FLAT
    max_payload = inspect.signature(NatsServer).parameters["max_payload"].default
    assert max_payload == 8 << 20 and f"**8 MiB** ({max_payload:,} bytes)" in FLAT
    for conf in ("nats-site.conf", "nats-hub.conf"):
        assert "max_payload: 8MB" in (ROOT / "deploy" / conf).read_text(encoding="utf-8")
        assert f"`deploy/{conf}`" in FLAT
    assert DEAD_LETTER_MAX_DATA == 1 << 20 and "the first 1 MiB of the bytes" in FLAT
    assert "`nats.errors.MaxPayloadError`" in FLAT


def test_nats_py_refuses_an_oversized_payload_as_documented() -> None:
    # What the page promises of nats-py, read from the installed client's source: the
    # check compares the payload with the server's max_payload before sending.
    import nats.aio.client
    import nats.errors

    source = inspect.getsource(nats.aio.client.Client.publish)
    assert "payload_size > self._max_payload" in source
    assert "raise errors.MaxPayloadError" in source
    assert str(nats.errors.MaxPayloadError()) == "nats: maximum payload exceeded"
    assert '("nats: maximum payload exceeded")' in FLAT


# ------------------------------------------------------------------ the documented examples


def _section(marker: str) -> str:
    pattern = rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->"
    found = re.findall(pattern, DOC, re.S)
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
    missing = [r.value for r in Reason if f"| `{r.value}` |" not in DOC]
    assert not missing, f"docs/wire-format.md does not list reasons {missing}"


def test_every_privacy_class_and_tier_is_documented() -> None:
    for value in [*PrivacyClass, *Source]:
        assert f"`{value.value}`" in DOC, f"docs/wire-format.md does not name {value.value!r}"


def test_the_doc_describes_this_version() -> None:
    assert DOC.startswith(f"# Wire format, schema version {SCHEMA_VERSION}\n")
    assert f"| `v` | int | schema version, `{SCHEMA_VERSION}` |" in DOC
    assert f"## Changes from version {SCHEMA_VERSION - 1}" in DOC


def test_message_field_lists_match_the_doc_tables() -> None:
    # Every field of every message type is named in the doc (as `name` in a table row).
    for cls in KINDS:
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in DOC, f"{cls.__name__}.{field.name} is not documented"
