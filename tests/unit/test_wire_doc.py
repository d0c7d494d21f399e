"""docs/wire-format.md says exactly what the encoder writes.

A client in another language is written from that page, so its tables are checked
against the code: the key order of every message table against ``to_map``, the float
fields against the bytes of the golden vectors, and the bounds and size limits against
the constants the code uses.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pipeline.messaging.natsio import DEAD_LETTER_MAX_DATA
from pipeline.messaging.server import NatsServer
from schemas.codec import (
    DEFAULT_MAX_BYTES,
    KINDS,
    MAX_DEADLINE_MS,
    MAX_DEADLINE_S,
    MAX_UNIX_TIME,
    to_map,
)
from schemas.messages import DeadLetter, Escalation, Frame, InferenceResult
from schemas.vectors import make

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
FLAT = " ".join(DOC.split())  # for phrases that a line break may split
SECTIONS = {
    Frame: '### Frame (`type: "frame"`)',
    InferenceResult: '### Result (`type: "result"`)',
    Escalation: '### Escalation (`type: "escalation"`)',
    DeadLetter: '### DeadLetter (`type: "dead_letter"`)',
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


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: KINDS[c])
def test_each_message_table_lists_the_keys_in_the_order_they_are_written(
    cls: type[Any],
) -> None:
    written = list(to_map(_example(cls)))
    assert written[:2] == ["v", "type"]
    assert _keys(_first_table(SECTIONS[cls])) == written[2:]


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
