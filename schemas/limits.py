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
    "COLOUR_CHANNELS",
    "DEAD_LETTER_MAX_BYTES",
    "DEFAULT_MAX_BYTES",
    "MAX_CLASSES",
    "MAX_DEADLINE_MS",
    "MAX_DEADLINE_S",
    "MAX_DETECTIONS",
    "MAX_LABEL_CHARS",
    "MAX_LINES",
    "MAX_REGIONS",
    "MAX_SEQ",
    "MAX_TEXT_CHARS",
    "MAX_UNIX_TIME",
    "MESSAGE_OVERHEAD_BYTES",
    "NATS_MAX_PAYLOAD",
    "RAW_1080P_RGB_BYTES",
    "SCHEMA_VERSION",
    "check_size",
    "default_max_bytes",
    "max_pixel_bytes",
]

SCHEMA_VERSION = 3
# A raw 1920x1080 RGB frame is 6,220,800 bytes (RAW_1080P_RGB_BYTES), a grey one a
# third of that, a JPEG of it a few hundred kB. The limit lets the raw RGB frame through
# in both forms (JSON too, as base64: see max_pixel_bytes); anything far beyond is a
# mistake or an attack.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
# A dead letter keeps a whole refused message (and why), so it may be twice as large.
DEAD_LETTER_MAX_BYTES = 2 * DEFAULT_MAX_BYTES
# The max_payload of every nats-server hybridfleet starts (pipeline/messaging/server.py,
# deploy/nats-*.conf): a message at the reader's limit plus its headers, with room to
# raise max_message_bytes. nats-server allows up to 64 MiB.
NATS_MAX_PAYLOAD = 16 * 1024 * 1024
RAW_1080P_RGB_BYTES = 1920 * 1080 * 3
# The most room everything but the pixels takes in a frame or an escalation, in either
# form: envelope, names, 64 regions, the headers of the image or of 64 crops, reply_to.
MESSAGE_OVERHEAD_BYTES = 16 * 1024
# A raw colour image is H x W x COLOUR_CHANNELS uint8.
COLOUR_CHANNELS = 3
MAX_REGIONS = 64
MAX_CLASSES = 1000
# A result lists at most MAX_DETECTIONS detections and MAX_LINES text lines. A
# detection's label is 1..MAX_LABEL_CHARS characters, a line's text 0..MAX_TEXT_CHARS
# (Unicode code points, as Python's len counts them).
MAX_DETECTIONS = 300
MAX_LINES = 300
MAX_LABEL_CHARS = 128
MAX_TEXT_CHARS = 256
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


def max_pixel_bytes(max_bytes: int = DEFAULT_MAX_BYTES, *, json: bool = False) -> int:
    """The bytes of pixels one frame or escalation can carry under ``max_bytes``.

    Pixels are what the binary ``data`` of its images hold: a raw image's
    ``H * W * channels`` bytes, an encoded image's file, or the sum of an escalation's
    crops, each counted the same way. The size limit counts the whole payload, so
    ``MESSAGE_OVERHEAD_BYTES`` is kept for the other keys; JSON carries binary data as
    base64, 4 characters for 3 bytes. Under the defaults: 8,372,224 bytes in msgpack,
    6,279,168 in JSON; a raw 1080p RGB frame (6,220,800) fits in both.
    """
    room = max(0, max_bytes - MESSAGE_OVERHEAD_BYTES)
    return room // 4 * 3 if json else room


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
