"""The bounds of the wire contract: schema version, sizes, counts, times.

Pure. docs/wire-format.md states each of these numbers; the readers and writers of
both wire forms (msgpack in ``schemas.codec``, JSON in ``schemas.jsonform``) apply
them, and ``check_size`` is the one size check of a received payload.
"""

from __future__ import annotations

from typing import Any

from schemas.errors import SchemaError
from schemas.messages import DeadLetter

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "DEFAULT_MAX_BYTES",
    "MAX_CLASSES",
    "MAX_DEADLINE_MS",
    "MAX_DEADLINE_S",
    "MAX_REGIONS",
    "MAX_SEQ",
    "MAX_UNIX_TIME",
    "SCHEMA_VERSION",
    "check_size",
    "default_max_bytes",
]

SCHEMA_VERSION = 2
# A 1920x1080 grayscale frame is 2 MB; anything far beyond is a mistake or an attack.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
# A dead letter keeps a whole refused message (and why), so it may be twice as large.
DEAD_LETTER_MAX_BYTES = 2 * DEFAULT_MAX_BYTES
MAX_REGIONS = 64
MAX_CLASSES = 1000
MAX_SEQ = 2**63 - 1
# Every time on the wire (captured_at, deadline_at) is Unix seconds in
# [0, MAX_UNIX_TIME]: 4102444800 is 2100-01-01T00:00:00Z. Anything later is nonsense a
# reader could never act on (a frame "captured" in 1e308 would wait forever).
MAX_UNIX_TIME = 4_102_444_800.0
# The longest a final result may be due after capture: an escalation's deadline_at is
# within [captured_at, captured_at + MAX_DEADLINE_S], a frame's deadline_ms at most
# MAX_DEADLINE_MS.
MAX_DEADLINE_S = 3600.0
MAX_DEADLINE_MS = 3_600_000


def default_max_bytes(kind: type[Any]) -> int:
    """The size limit a reader applies to a message of type ``kind`` unless told otherwise."""
    return DEAD_LETTER_MAX_BYTES if kind is DeadLetter else DEFAULT_MAX_BYTES


def check_size(data: Any, kind: str, max_bytes: int) -> None:
    """Refuse a received payload that is not bytes or is over ``max_bytes`` long.

    ``kind`` is the message's wire name, for the ``SchemaError``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(f"{kind}: expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise SchemaError(f"{kind}: {len(data)} bytes is over the limit of {max_bytes}")
