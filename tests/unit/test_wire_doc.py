"""docs/wire-format.md says exactly what the encoder writes.

A client in another language is written from that page, so its tables are checked
against the code: the key order of every message table (and of the maps inside a
message: arrays, encoded images, detections, text lines) against ``to_map``, the float
fields against the bytes of the golden vectors, and the bounds and size limits against
the constants the code uses, the servers' ``max_payload`` and what nats-py does. Its
examples (a JSON frame, ``nats`` commands, a JSON result) are decoded here too, so they
cannot go stale.
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
    DEAD_LETTER_MAX_BYTES,
    DEFAULT_MAX_BYTES,
    MAX_CLASSES,
    MAX_DEADLINE_MS,
    MAX_DEADLINE_S,
    MAX_DETECTIONS,
    MAX_LABEL_CHARS,
    MAX_LINES,
    MAX_REGIONS,
    MAX_TEXT_CHARS,
    MAX_UNIX_TIME,
    MESSAGE_OVERHEAD_BYTES,
    NATS_MAX_PAYLOAD,
    RAW_1080P_RGB_BYTES,
    SCHEMA_VERSION,
    max_pixel_bytes,
)
from schemas.messages import (
    KINDS,
    Colour,
    Detection,
    Encoded,
    Encoding,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Source,
    TextLine,
)
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


def test_the_tables_of_the_maps_inside_a_message_are_in_written_order() -> None:
    vectors = make.messages()
    jpeg = to_map(vectors["frame_jpeg"])["image"]
    assert _keys(_first_table("An encoded image is a map:")) == list(jpeg) == ["encoding", "data"]
    detected = to_map(vectors["result_detections"])["detections"][0]
    assert _keys(_first_table("#### Detection")) == list(detected)
    assert list(detected) == [f.name for f in dataclasses.fields(Detection)]
    read = to_map(vectors["result_lines"])["lines"][0]
    assert _keys(_first_table("#### TextLine")) == list(read)
    assert list(read) == [f.name for f in dataclasses.fields(TextLine)]
    # The keys version 3 added come last, after those of version 2.
    assert list(to_map(vectors["frame_jpeg"]))[-1] == "colour"
    assert list(to_map(vectors["result_lines"]))[-2:] == ["detections", "lines"]


def test_the_documented_image_rules_are_the_codes() -> None:
    assert f"`{Encoding.JPEG.value}` or `{Encoding.PNG.value}`" in FLAT
    for encoding in Encoding:
        assert encoding.signature.hex(" ").upper() in FLAT, encoding
    for colour in Colour:
        assert f"`{colour.value}`" in DOC
    assert "| raw, 2-D `[rows, columns]` | `gray` |" in DOC
    assert "| raw, 3-D `[rows, columns, 3]` | `rgb` (red first) or `bgr`" in DOC
    assert "| encoded (`jpeg`, `png`) | `rgb`:" in DOC
    # ... and the bounds of detections and lines.
    assert f"0..{MAX_DETECTIONS} [detections]" in FLAT and f"0..{MAX_LINES} [text lines]" in FLAT
    assert f"1..{MAX_LABEL_CHARS} characters" in FLAT and f"0..{MAX_TEXT_CHARS} characters" in FLAT
    assert f"0..{MAX_CLASSES - 1} |" in FLAT and f"0..{MAX_REGIONS} rectangles" in FLAT


def _floats(raw: dict[str, Any]) -> set[str]:
    """The float fields of a wire map: its own, and ``key[].name`` in its lists of maps."""
    out = {k for k, v in raw.items() if type(v) is float}
    for key, value in raw.items():
        if isinstance(value, list):
            out |= {f"{key}[].{k}" for item in value if isinstance(item, dict)
                    for k, v in item.items() if type(v) is float}  # fmt: skip
    return out


def test_the_float_fields_are_exactly_those_written_as_float_64() -> None:
    documented: dict[str, set[str]] = {}
    for row in _first_table("float fields are exactly these"):
        documented[row[0]] = set(re.findall(r"`([a-z_]+(?:\[\]\.[a-z_]+)?)`", row[1]))
    names = {"frame": "Frame", "result": "Result", "escalation": "Escalation",
             "dead_letter": "DeadLetter"}  # fmt: skip
    written: dict[str, set[str]] = {}
    for file, data in make.files().items():
        if file.endswith(".msgpack"):
            raw = msgpack.unpackb(data, raw=False)
            floats = _floats(raw)
            written.setdefault(names[raw["type"]], set()).update(floats)
            # ... and each as float 64, 0xcb.
            for name in floats:
                key = name.rpartition(".")[2]
                assert bytes([0xA0 | len(key)]) + key.encode() + b"\xcb" in data, (file, key)
    assert documented == written
    assert "detections[].score" in written["Result"] and "lines[].confidence" in written["Result"]


def test_the_documented_bounds_are_the_codes() -> None:
    assert f"0..{MAX_UNIX_TIME:.0f}" in FLAT and "2100-01-01" in FLAT
    assert f"captured_at + {MAX_DEADLINE_S:.1f}" in FLAT
    assert f"1..{MAX_DEADLINE_MS:,}" in FLAT
    assert "`MAX_UNIX_TIME`" in FLAT and "`MAX_DEADLINE_S`" in FLAT


def test_the_documented_size_limits_are_the_codes() -> None:
    assert DEFAULT_MAX_BYTES == 8 * 1024 * 1024
    assert f"8 MiB, {DEFAULT_MAX_BYTES:,} bytes" in FLAT
    assert DEAD_LETTER_MAX_BYTES == 16 << 20
    assert "| DeadLetter on `dlq.*` | operators (`decode_dead_letter`) | 16 MiB |" in DOC
    max_payload = inspect.signature(NatsServer).parameters["max_payload"].default
    assert max_payload == NATS_MAX_PAYLOAD == 16 << 20
    assert f"**16 MiB** ({max_payload:,} bytes" in FLAT and "`NATS_MAX_PAYLOAD`" in FLAT
    # Room for a message at the readers' limit and its headers, within what nats-server
    # accepts (64 MiB).
    assert DEFAULT_MAX_BYTES < max_payload <= 64 << 20
    for conf in ("nats-site.conf", "nats-hub.conf"):
        assert "max_payload: 16MB" in (ROOT / "deploy" / conf).read_text(encoding="utf-8")
        assert f"`deploy/{conf}`" in FLAT
    assert "max_payload: 16MB" in (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert DEAD_LETTER_MAX_DATA == 1 << 20 and "the first 1 MiB of the bytes" in FLAT
    assert "`nats.errors.MaxPayloadError`" in FLAT
    assert f"limit of {DEFAULT_MAX_BYTES}`" in FLAT


def test_the_documented_pixel_room_of_each_form_is_the_codes() -> None:
    assert MESSAGE_OVERHEAD_BYTES == 16 * 1024 and "at most 16 KiB" in FLAT
    msgpack_room, json_room = max_pixel_bytes(), max_pixel_bytes(json=True)
    assert (msgpack_room, json_room) == (8_372_224, 6_279_168)
    rows = _first_table("works it out for any limit):")
    assert len(rows) == 4
    for row in rows:
        assert row[2:] == [f"{msgpack_room:,} bytes", f"{json_room:,} bytes"], row
    assert json_room >= RAW_1080P_RGB_BYTES and f"{RAW_1080P_RGB_BYTES:,}" in FLAT
    assert f"{json_room:,} bytes of pixels, against {msgpack_room:,} in msgpack" in FLAT
    # What the page says of the edge's decoder.
    from pipeline.inference.images import MAX_PIXELS

    assert MAX_PIXELS == 4096 * 4096 and "more than 4096 x 4096 pixels" in FLAT


def test_nats_py_buffers_at_most_pending_size_while_reconnecting_as_documented() -> None:
    import nats.aio.client
    import nats.errors

    assert nats.aio.client.DEFAULT_PENDING_SIZE == 2 << 20 < RAW_1080P_RGB_BYTES // 3 * 2
    source = inspect.getsource(nats.aio.client.Client.publish)
    assert "raise errors.OutboundBufferLimitError" in source
    assert "self._max_pending_size" in source and "if not self.is_connected" in source
    message = str(nats.errors.OutboundBufferLimitError())
    assert message == "nats: outbound buffer limit exceeded" and f'("{message}")' in FLAT
    assert "`pending_size`" in FLAT and "2 MiB by default" in FLAT


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
    assert isinstance(frame.image, np.ndarray)
    assert frame.site == "site1" and frame.image.shape == (8, 8) and frame.colour is Colour.GRAY
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
        assert isinstance(frame.image, np.ndarray) and isinstance(example.image, np.ndarray)
        assert np.array_equal(frame.image, example.image)
        assert frame.regions == example.regions


def test_documented_result_decodes_and_answers_the_frame() -> None:
    (block,) = _fenced(_section("result-example"), "json")
    result = from_json(InferenceResult, block.encode())
    assert result.source is Source.EDGE and result.reason is Reason.CONFIDENT
    assert result.labels == (0,) and result.scores.shape == (1, 10)
    assert result.path == ("edge",)
    # A classifier's answer names its label in a detection per region.
    (detection,) = result.detections
    assert (detection.label, detection.label_index, detection.score) == (
        "0",
        0,
        result.confidence,
    )
    assert result.lines == ()
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
    for cls in [*KINDS, Detection, TextLine, Encoded]:
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in DOC, f"{cls.__name__}.{field.name} is not documented"


def test_the_changes_from_version_2_name_every_new_key_and_value() -> None:
    changes = DOC[DOC.index("## Changes from version 2") : DOC.index("## Changes from version 1")]
    for name in ["colour", "detections", "lines", "encoding", "jpeg", "png", "gray", "rgb",
                 "bgr", "[0, 0]", "8 MiB", "16 MiB"]:  # fmt: skip
        assert f"{name}" in changes, name
    assert "What a version 2 client must change:" in " ".join(changes.split())
