"""Messages to wire maps: ``to_map``, the one definition both wire forms write.

The map is what msgpack sends as it is and what JSON sends with base64 text for
bytes. Keys come in the order docs/wire-format.md lists them, float fields are always
Python floats (so msgpack writes float 64 and JSON ``0.0``, never ``0``) and int fields
Python ints. Arrays go as ``{dtype, shape, data}`` maps of little-endian, C-order
bytes, encoded images as ``{encoding, data}`` maps of the file's bytes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from schemas.errors import SchemaError
from schemas.fields import DTYPES, Fields, bytes_value, check_colour, check_signature
from schemas.limits import SCHEMA_VERSION
from schemas.messages import (
    KINDS,
    Colour,
    DeadLetter,
    Detection,
    Encoded,
    Encoding,
    Escalation,
    Frame,
    InferenceResult,
    Message,
    Region,
    Source,
    TextLine,
)
from schemas.scalars import SCALARS

__all__ = ["to_map"]

E = TypeVar("E", bound=StrEnum)


def to_map(msg: Message) -> dict[str, Any]:
    """The map a message is on the wire, in key order; binary values are ``bytes``.

    Both wire forms carry this map: msgpack as it is, JSON with base64 text for bytes.
    Float fields are always Python floats and int fields Python ints. The scalar fields
    (numbers and times), a result's detections and lines, a frame's colour against its
    image and the first bytes of every encoded image are checked against the rules the
    readers apply, so a writer cannot produce a message its readers refuse for them: a
    ``SchemaError`` names the field, with the decoder's own words. (Arrays, regions and
    the other text are not re-checked here: that would cost a full decode.)
    """
    kind = KINDS.get(type(msg))
    if kind is None:
        raise TypeError(f"cannot encode {type(msg).__name__}")
    raw = _map(msg, kind)
    SCALARS[type(msg)](Fields(raw, kind, bytes_value))
    return raw


def _array(a: np.ndarray) -> dict[str, Any]:
    dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    name = next((k for k, v in DTYPES.items() if v == dtype), None)
    if name is None:
        raise SchemaError(f"array dtype {a.dtype} cannot be sent; use one of {sorted(DTYPES)}")
    # tobytes() copies once into the message; C order is what the reader assumes.
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(dtype, copy=False).tobytes()}


def _member(kind: type[E], value: Any, path: str) -> E:
    """``value`` as a member of the enum ``kind`` (its plain string will do)."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise SchemaError(f"{path}: {value!r} is not one of {allowed}") from None


def _encoded(image: Encoded, path: str) -> dict[str, Any]:
    encoding = _member(Encoding, image.encoding, f"{path}.encoding")
    data = bytes(image.data)
    check_signature(f"{path}.data", data, encoding)
    return {"encoding": encoding.value, "data": data}


def _pixels(image: Any, path: str) -> dict[str, Any]:
    """An image as it is written: an array map, or an encoded image map."""
    if isinstance(image, Encoded):
        return _encoded(image, path)
    if isinstance(image, np.ndarray):
        return _array(image)
    raise SchemaError(f"{path}: expected a numpy array or Encoded, got {type(image).__name__}")


def _box(r: Region, path: str) -> list[int]:
    return [_int(r.x, path), _int(r.y, path), _int(r.w, path), _int(r.h, path)]


def _regions(regions: tuple[Region, ...], path: str) -> list[list[int]]:
    return [_box(r, f"{path}[{i}]") for i, r in enumerate(regions)]


def _detection(d: Detection, path: str) -> dict[str, Any]:
    return {
        "box": _box(d.box, f"{path}.box"),
        "label": d.label,
        "label_index": _int(d.label_index, f"{path}.label_index"),
        "score": _float(d.score, f"{path}.score"),
        "source": _member(Source, d.source, f"{path}.source").value,
    }


def _line(line: TextLine, path: str) -> dict[str, Any]:
    return {
        "box": _box(line.box, f"{path}.box"),
        "text": line.text,
        "confidence": _float(line.confidence, f"{path}.confidence"),
        "source": _member(Source, line.source, f"{path}.source").value,
    }


def _float(value: Any, path: str) -> float:
    """A float field as written: always a Python float, so msgpack writes float 64.

    (A generic encoder would write ``0.0`` given as ``0`` as an integer.) numpy scalars
    are accepted; anything that is not a real number raises ``SchemaError``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SchemaError(f"{path}: expected a number, got {type(value).__name__}")
    return float(value)


def _int(value: Any, path: str) -> int:
    """An int field as written: a Python int (numpy integers too), never a bool or float."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise SchemaError(f"{path}: expected an integer, got {type(value).__name__}")
    return int(value)


def _frame_head(msg: Frame | InferenceResult | Escalation, kind: str) -> dict[str, Any]:
    """The keys every message about one frame starts with: envelope, frame and sequence."""
    return {
        "v": SCHEMA_VERSION,
        "type": kind,
        "frame_id": msg.frame_id,
        "site": msg.site,
        "camera": msg.camera,
        "seq": _int(msg.seq, f"{kind}.seq"),
    }


def _map(msg: Message, kind: str) -> dict[str, Any]:
    if isinstance(msg, Frame):
        threshold = msg.threshold
        image = _pixels(msg.image, "frame.image")
        colour = _member(Colour, msg.colour, "frame.colour")
        check_colour("frame.colour", msg.image, colour)
        return {
            **_frame_head(msg, kind),
            "captured_at": _float(msg.captured_at, "frame.captured_at"),
            "image": image,
            "regions": _regions(msg.regions, "frame.regions"),
            "priority": _int(msg.priority, "frame.priority"),
            "deadline_ms": _int(msg.deadline_ms, "frame.deadline_ms"),
            "threshold": None if threshold is None else _float(threshold, "frame.threshold"),
            "privacy": msg.privacy.value,
            "path": list(msg.path),
            "colour": colour.value,
        }
    if isinstance(msg, InferenceResult):
        return {
            **_frame_head(msg, kind),
            "labels": list(msg.labels),
            "scores": _array(msg.scores),
            "confidence": _float(msg.confidence, "result.confidence"),
            "source": msg.source.value,
            "model": msg.model,
            "model_version": msg.model_version,
            "latency_ms": _float(msg.latency_ms, "result.latency_ms"),
            "reason": msg.reason.value,
            "degraded": msg.degraded,
            "edge_labels": None if msg.edge_labels is None else list(msg.edge_labels),
            "path": list(msg.path),
            "detections": [
                _detection(d, f"result.detections[{i}]") for i, d in enumerate(msg.detections)
            ],
            "lines": [_line(t, f"result.lines[{i}]") for i, t in enumerate(msg.lines)],
        }
    if isinstance(msg, Escalation):
        return {
            **_frame_head(msg, kind),
            "captured_at": _float(msg.captured_at, "escalation.captured_at"),
            "deadline_at": _float(msg.deadline_at, "escalation.deadline_at"),
            "priority": _int(msg.priority, "escalation.priority"),
            "privacy": msg.privacy.value,
            "regions": _regions(msg.regions, "escalation.regions"),
            "crops": [_pixels(c, f"escalation.crops[{i}]") for i, c in enumerate(msg.crops)],
            "image": None if msg.image is None else _pixels(msg.image, "escalation.image"),
            "embedding": None if msg.embedding is None else _array(msg.embedding),
            "reply_to": msg.reply_to,
            "edge_labels": list(msg.edge_labels),
            "edge_confidence": _float(msg.edge_confidence, "escalation.edge_confidence"),
        }
    assert isinstance(msg, DeadLetter)
    return {
        "v": SCHEMA_VERSION,
        "type": kind,
        "stage": msg.stage,
        "site": msg.site,
        "subject": msg.subject,
        "reason": msg.reason,
        "data": msg.data,
        "at": _float(msg.at, "dead_letter.at"),
    }
