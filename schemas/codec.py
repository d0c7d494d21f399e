"""Bytes <-> messages in msgpack, the default wire form: ``encode`` and the decoders.

Every message is a msgpack map with a version. What the map holds, and every check
on it, is shared with the JSON form (``schemas.jsonform``): ``to_map``
(``schemas.writer``) builds it and ``from_map`` (``schemas.reader``) checks it, so
decoding is strict here too: any deviation from docs/wire-format.md raises one
``SchemaError`` that names the field and what is wrong with it, and encoding refuses
the numbers and times a reader would refuse. Arrays share memory with the ``bytes``
msgpack unpacks (read-only; msgpack copies each binary payload once out of the
received buffer).
"""

from __future__ import annotations

from typing import Any

import msgpack

from schemas.errors import SchemaError
from schemas.limits import (
    DEAD_LETTER_MAX_BYTES,
    DEFAULT_MAX_BYTES,
    check_size,
    default_max_bytes,
)
from schemas.messages import KINDS, DeadLetter, Escalation, Frame, InferenceResult, M, Message
from schemas.reader import from_map
from schemas.writer import to_map

__all__ = [
    "decode",
    "decode_dead_letter",
    "decode_escalation",
    "decode_frame",
    "decode_result",
    "encode",
]


def encode(msg: Message) -> bytes:
    """Serialise a message to its msgpack wire form.

    Raises ``SchemaError`` for a message whose numbers or times break the contract
    (see ``to_map``), and ``TypeError`` for an object that is not a message.
    """
    out = msgpack.packb(to_map(msg), use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def decode(kind: type[M], data: bytes, *, max_bytes: int | None = None) -> M:
    """Parse and validate a message of type ``kind`` (``Frame``, ...) from msgpack.

    ``max_bytes`` limits the payload; by default ``default_max_bytes(kind)``. Raises
    ``SchemaError`` saying what is wrong.
    """
    name = KINDS[kind]
    limit = default_max_bytes(kind) if max_bytes is None else max_bytes
    return from_map(kind, _unpack(data, name, limit))


def _unpack(data: bytes, kind: str, max_bytes: int) -> Any:
    check_size(data, kind, max_bytes)
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=max_bytes)
    except Exception as exc:  # msgpack raises many types; all mean the same here
        raise SchemaError(f"{kind}: not valid msgpack ({type(exc).__name__}: {exc})") from None


def decode_frame(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Frame:
    """Parse and validate a frame; raise ``SchemaError`` saying what is wrong."""
    return decode(Frame, data, max_bytes=max_bytes)


def decode_result(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> InferenceResult:
    """Parse and validate an inference result; raise ``SchemaError`` saying what is wrong."""
    return decode(InferenceResult, data, max_bytes=max_bytes)


def decode_escalation(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Escalation:
    """Parse and validate an escalation; raise ``SchemaError`` saying what is wrong."""
    return decode(Escalation, data, max_bytes=max_bytes)


def decode_dead_letter(data: bytes, *, max_bytes: int = DEAD_LETTER_MAX_BYTES) -> DeadLetter:
    """Parse and validate a dead-letter record."""
    return decode(DeadLetter, data, max_bytes=max_bytes)
