"""The JSON form of the wire messages, for clients that do not speak msgpack.

A tool such as the ``nats`` CLI can publish a frame as JSON (header
``Content-Type: application/json``) and ask for its result as JSON (header
``Accept: application/json``). msgpack stays the default.

The JSON form is the msgpack map written as a JSON object: the same keys, the same
``v`` and ``type``, the same rules. The one difference is binary values (an array's
``data``, an encoded image's ``data``, a dead letter's ``data``): JSON has no bytes, so
they are base64 text. A
decoded JSON object goes through ``from_map`` (``schemas.reader``), the checks a
msgpack message goes through, so both forms are refused for exactly the same faults.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from schemas.codec import decode_frame, encode
from schemas.errors import SchemaError
from schemas.limits import check_size, default_max_bytes
from schemas.messages import KINDS, Frame, InferenceResult, M, Message
from schemas.reader import from_map
from schemas.writer import to_map

__all__ = [
    "JSON",
    "MSGPACK",
    "decode_frame_message",
    "encode_result_for",
    "from_json",
    "header",
    "to_json",
]

JSON = "application/json"
MSGPACK = "application/msgpack"


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name``, matched without regard to case; None if absent.

    NATS keeps header names as sent; a hand-typed ``content-type`` should still count.
    """
    if not headers:
        return None
    if name in headers:
        return headers[name]
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


# ---------------------------------------------------------------- encoding


def _json_value(value: Any) -> Any:
    # orjson calls this for what JSON has no type for.
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, np.generic):  # a numpy scalar in a float or int field
        return value.item()
    raise TypeError(f"{type(value).__name__} has no JSON form")


def to_json(message: Message) -> bytes:
    """The message as compact UTF-8 JSON: its wire map, bytes as base64 text.

    Raises ``SchemaError`` as ``encode`` does, from the same checks (``to_map``): for
    a number or time the readers would refuse, NaN and infinity among them (JSON has
    none; orjson would write ``null``, which reads back as a different message).
    Float fields are Python floats, so orjson writes ``0.0``, never ``0``.
    """
    return orjson.dumps(to_map(message), default=_json_value)


# ---------------------------------------------------------------- decoding


def _json_binary(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise SchemaError(f"{path}: expected base64 text, got {type(value).__name__}")
    try:
        # validate=True refuses anything outside the base64 alphabet, whitespace too.
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"{path}: not valid base64 ({exc})") from None


def from_json(kind: type[M], data: bytes, *, max_bytes: int | None = None) -> M:
    """Parse and validate a message of type ``kind`` (``Frame``, ...) from its JSON form.

    ``max_bytes`` limits the JSON text; by default it is the msgpack decoder's limit
    for that kind. Raises ``SchemaError`` saying what is wrong, as the msgpack
    decoders do.
    """
    name = KINDS[kind]
    check_size(data, name, default_max_bytes(kind) if max_bytes is None else max_bytes)
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"{name}: not valid JSON ({exc})") from None
    return from_map(kind, raw, binary=_json_binary)


# ---------------------------------------------------------------- over NATS


def _media_type(value: str) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``."""
    return value.split(";", 1)[0].strip().lower()


def decode_frame_message(
    data: bytes, headers: Mapping[str, str] | None, *, max_bytes: int
) -> Frame:
    """Decode a frame as it arrived over NATS, in the form its ``Content-Type`` names.

    No header, or ``application/msgpack``: msgpack. ``application/json``: JSON.
    Anything else raises ``SchemaError`` naming the header. Media-type parameters
    (``; charset=utf-8``) are ignored: JSON is always UTF-8.
    """
    content_type = header(headers, "Content-Type")
    if content_type is None or _media_type(content_type) == MSGPACK:
        return decode_frame(data, max_bytes=max_bytes)
    if _media_type(content_type) == JSON:
        return from_json(Frame, data, max_bytes=max_bytes)
    raise SchemaError(
        f"frame: header Content-Type {content_type[:80]!r} is not supported; "
        f"send {MSGPACK} (the default) or {JSON}"
    )


def _quality(params: list[str]) -> float:
    """The ``q`` weight among a media range's parameters: 1 if absent, 0 if unreadable."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _wants_json(accept: str | None) -> bool:
    # Of the two forms, the one listed with the highest weight wins; a tie goes to the
    # one listed first. Wildcards (*/*) and unknown types leave the default, msgpack.
    best, best_q = MSGPACK, 0.0
    for item in (accept or "").split(","):
        media, *params = item.split(";")
        q = _quality(params)
        if _media_type(media) in (JSON, MSGPACK) and q > best_q:
            best, best_q = _media_type(media), q
    return best == JSON


def encode_result_for(result: InferenceResult, accept: str | None) -> tuple[bytes, dict[str, str]]:
    """The result in the form a requester's ``Accept`` header asks for, and its headers.

    ``application/json`` gives JSON; anything else, or no header, gives msgpack (there
    is no "not acceptable" answer on NATS, and msgpack is the default). The headers
    always carry ``Content-Type``, so the requester can tell which form it got.
    """
    if _wants_json(accept):
        return to_json(result), {"Content-Type": JSON}
    return encode(result), {"Content-Type": MSGPACK}
