"""Bytes <-> messages. msgpack on the wire, every message a map with a version.

Decoding is strict: any deviation from docs/wire-format.md raises one
``SchemaError`` that names the field and what is wrong with it. Encoding checks the
numbers and times with the same rules (``to_map``), so no writer sends what its
readers refuse for them. Arrays are read
with ``numpy.frombuffer`` and so share memory with the ``bytes`` msgpack unpacks
(read-only; msgpack copies each binary payload once out of the received buffer).

The checks work on the decoded map, not on msgpack: ``to_map`` and ``from_map`` are
the one definition of every message that both wire forms share (``schemas.jsonform``
is the other form). Only how binary values are carried differs, and that is the
``binary`` reader ``from_map`` is given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgpack
import numpy as np

from schemas.errors import SchemaError
from schemas.messages import (
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Region,
    Source,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "MAX_DEADLINE_MS",
    "MAX_DEADLINE_S",
    "MAX_UNIX_TIME",
    "SCHEMA_VERSION",
    "BinaryReader",
    "Message",
    "check_token",
    "decode_dead_letter",
    "decode_escalation",
    "decode_frame",
    "decode_result",
    "encode",
    "from_map",
    "to_map",
]

SCHEMA_VERSION = 2
# A 1920x1080 grayscale frame is 2 MB; anything far beyond is a mistake or an attack.
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
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
# Tiers in the order a frame passes them (``Source`` lists them in that order).
_TIERS = tuple(Source)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FRAME_ID = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_SUBJECT = re.compile(r"[A-Za-z0-9_.$-]{1,256}")
_DTYPES: dict[str, np.dtype[Any]] = {"uint8": np.dtype(np.uint8), "float32": np.dtype("<f4")}

T = TypeVar("T")
Message = Frame | InferenceResult | Escalation | DeadLetter
M = TypeVar("M", bound=Message)
# The wire name (the ``type`` key) of each message type.
KINDS: Mapping[type[Any], str] = {
    Frame: "frame",
    InferenceResult: "result",
    Escalation: "escalation",
    DeadLetter: "dead_letter",
}
# Turns the value found at a binary position (and that position's path, for errors)
# into bytes, or raises SchemaError. Each wire form has its own.
BinaryReader = Callable[[Any, str], bytes]


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is a safe NATS subject token (letters, digits, ``_``, ``-``).

    Site and camera names become subject tokens; a ``.``, ``*`` or ``>`` in them
    would let a message reach another site's subjects.
    """
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise SchemaError(
            f"{what}: {value!r} is not a valid name; use 1-64 letters, digits, '_' or '-'"
        )
    return value


# ---------------------------------------------------------------- encoding


def _array(a: np.ndarray) -> dict[str, Any]:
    dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    name = next((k for k, v in _DTYPES.items() if v == dtype), None)
    if name is None:
        raise SchemaError(f"array dtype {a.dtype} cannot be sent; use one of {sorted(_DTYPES)}")
    # tobytes() copies once into the message; C order is what the reader assumes.
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(dtype, copy=False).tobytes()}


def _regions(regions: tuple[Region, ...]) -> list[list[int]]:
    return [[r.x, r.y, r.w, r.h] for r in regions]


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


def to_map(msg: Message) -> dict[str, Any]:
    """The map a message is on the wire, in key order; binary values are ``bytes``.

    Both wire forms carry this map: msgpack as it is, JSON with base64 text for bytes.
    Float fields are always Python floats and int fields Python ints. The scalar fields
    (numbers and times) are checked against the rules the readers apply, so a writer
    cannot produce a message its readers refuse for them: a ``SchemaError`` names the
    field, with the decoder's own words. (Arrays, regions and text are not re-checked
    here: that would cost a full decode.)
    """
    kind = KINDS.get(type(msg))
    if kind is None:
        raise TypeError(f"cannot encode {type(msg).__name__}")
    raw = _map(msg, kind)
    _SCALARS[type(msg)](_Fields(raw, kind, _msgpack_binary))
    return raw


def _map(msg: Message, kind: str) -> dict[str, Any]:
    if isinstance(msg, Frame):
        threshold = msg.threshold
        return {
            "v": SCHEMA_VERSION,
            "type": kind,
            "frame_id": msg.frame_id,
            "site": msg.site,
            "camera": msg.camera,
            "seq": _int(msg.seq, "frame.seq"),
            "captured_at": _float(msg.captured_at, "frame.captured_at"),
            "image": _array(msg.image),
            "regions": _regions(msg.regions),
            "priority": _int(msg.priority, "frame.priority"),
            "deadline_ms": _int(msg.deadline_ms, "frame.deadline_ms"),
            "threshold": None if threshold is None else _float(threshold, "frame.threshold"),
            "privacy": msg.privacy.value,
            "path": list(msg.path),
        }
    if isinstance(msg, InferenceResult):
        return {
            "v": SCHEMA_VERSION,
            "type": kind,
            "frame_id": msg.frame_id,
            "site": msg.site,
            "camera": msg.camera,
            "seq": _int(msg.seq, "result.seq"),
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
        }
    if isinstance(msg, Escalation):
        return {
            "v": SCHEMA_VERSION,
            "type": kind,
            "frame_id": msg.frame_id,
            "site": msg.site,
            "camera": msg.camera,
            "seq": _int(msg.seq, "escalation.seq"),
            "captured_at": _float(msg.captured_at, "escalation.captured_at"),
            "deadline_at": _float(msg.deadline_at, "escalation.deadline_at"),
            "priority": _int(msg.priority, "escalation.priority"),
            "privacy": msg.privacy.value,
            "regions": _regions(msg.regions),
            "crops": [_array(c) for c in msg.crops],
            "image": None if msg.image is None else _array(msg.image),
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


def encode(msg: Message) -> bytes:
    """Serialise a message to its msgpack wire form.

    Raises ``SchemaError`` for a message whose numbers or times break the contract
    (see ``to_map``), and ``TypeError`` for an object that is not a message.
    """
    out = msgpack.packb(to_map(msg), use_bin_type=True)
    assert isinstance(out, bytes)
    return out


# ---------------------------------------------------------------- decoding


def _msgpack_binary(value: Any, path: str) -> bytes:
    if not isinstance(value, bytes):
        raise SchemaError(f"{path}: expected binary data, got {type(value).__name__}")
    return value


class _Fields:
    """Typed, path-aware access to one decoded map."""

    def __init__(self, raw: Mapping[Any, Any], path: str, binary: BinaryReader) -> None:
        self.raw = raw
        self.path = path
        self._binary = binary

    def _get(self, key: str) -> Any:
        if key not in self.raw:
            raise SchemaError(f"{self.path}.{key}: missing")
        return self.raw[key]

    def fail(self, key: str, problem: str) -> SchemaError:
        return SchemaError(f"{self.path}.{key}: {problem}")

    def text(self, key: str, pattern: re.Pattern[str] | None = None, max_len: int = 1024) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        if len(value) > max_len:
            raise self.fail(key, f"longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"{value[:80]!r} does not match {pattern.pattern}")
        return value

    def integer(self, key: str, lo: int, hi: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is outside {lo}..{hi}")
        return value

    def number(self, key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {type(value).__name__}")
        value = float(value)
        if not math.isfinite(value):
            raise self.fail(key, f"{value} is not a finite number")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is outside {lo}..{hi}")
        return value

    def optional(self, key: str, read: Callable[[str], T]) -> T | None:
        return None if self._get(key) is None else read(key)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {type(value).__name__}")
        return value

    def binary(self, key: str) -> bytes:
        return self._binary(self._get(key), f"{self.path}.{key}")

    def enum(self, key: str, kind: type[Any]) -> Any:
        value = self._get(key)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self.fail(key, f"{value!r} is not one of {allowed}") from None

    def items(self, key: str, max_len: int) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        if len(value) > max_len:
            raise self.fail(key, f"{len(value)} items, at most {max_len} allowed")
        return value

    def labels(self, key: str) -> tuple[int, ...]:
        items = self.items(key, MAX_REGIONS)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise self.fail(key, "expected a list of integers")
        if any(not 0 <= v < MAX_CLASSES for v in items):
            raise self.fail(key, f"labels must be in 0..{MAX_CLASSES - 1}")
        return tuple(items)

    def tiers(self, key: str) -> tuple[Source, ...]:
        """A list of distinct tier names in tier order (device, edge, cloud)."""
        out: list[Source] = []
        for i, item in enumerate(self.items(key, len(_TIERS))):
            if not isinstance(item, str) or item not in _TIERS:
                allowed = ", ".join(_TIERS)
                raise self.fail(f"{key}[{i}]", f"{item!r} is not one of {allowed}")
            tier = Source(item)
            if tier in out:
                raise self.fail(key, f"{tier.value!r} appears twice; each tier at most once")
            out.append(tier)
        if out != sorted(out, key=_TIERS.index):
            raise self.fail(
                key, f"{[t.value for t in out]} is out of order; tiers go {', '.join(_TIERS)}"
            )
        return tuple(out)

    def array(self, key: str, dtype: str, ndim: int | tuple[int, ...]) -> np.ndarray:
        return self.array_at(self._get(key), f"{self.path}.{key}", dtype, ndim)

    def array_at(self, raw: Any, path: str, dtype: str, ndim: int | tuple[int, ...]) -> np.ndarray:
        """An array map found anywhere in this message (``path`` names it in errors).

        ``ndim`` is the number of dimensions, or a tuple of the numbers allowed.
        """
        ndims = (ndim,) if isinstance(ndim, int) else ndim
        if not isinstance(raw, dict):
            raise SchemaError(f"{path}: expected an array map {{dtype, shape, data}}")
        f = _Fields(raw, path, self._binary)
        got = f.text("dtype", max_len=16)
        if got != dtype:
            raise SchemaError(f"{path}.dtype: {got!r}, expected {dtype!r}")
        shape = f.items("shape", 8)
        if len(shape) not in ndims or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 16 for v in shape
        ):
            count = " or ".join(str(n) for n in ndims)
            raise SchemaError(f"{path}.shape: {shape} is not {count} sizes in 0..65536")
        data = f.binary("data")
        np_dtype = _DTYPES[dtype]
        expected = math.prod(shape) * np_dtype.itemsize
        if len(data) != expected:
            raise SchemaError(
                f"{path}: shape {shape} of {dtype} needs {expected} bytes, got {len(data)}"
            )
        array: np.ndarray = np.frombuffer(data, dtype=np_dtype).reshape(shape)
        if np_dtype.kind == "f" and not np.isfinite(array).all():
            raise SchemaError(f"{path}: contains NaN or infinity")
        return array

    def regions(self, key: str) -> tuple[Region, ...]:
        out = []
        for i, item in enumerate(self.items(key, MAX_REGIONS)):
            if (
                not isinstance(item, list)
                or len(item) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in item)
            ):
                raise self.fail(f"{key}[{i}]", "expected [x, y, width, height] integers")
            x, y, w, h = item
            if x < 0 or y < 0 or w < 1 or h < 1:
                raise self.fail(f"{key}[{i}]", f"{item} needs x, y >= 0 and width, height >= 1")
            out.append(Region(x, y, w, h))
        return tuple(out)


def _unpack(data: bytes, kind: str, max_bytes: int) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(f"{kind}: expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise SchemaError(f"{kind}: {len(data)} bytes is over the limit of {max_bytes}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=max_bytes)
    except Exception as exc:  # msgpack raises many types; all mean the same here
        raise SchemaError(f"{kind}: not valid msgpack ({type(exc).__name__}: {exc})") from None


def _envelope(raw: Any, kind: str, binary: BinaryReader) -> _Fields:
    if not isinstance(raw, dict):
        raise SchemaError(f"{kind}: expected a map, got {type(raw).__name__}")
    if "v" not in raw:
        raise SchemaError(
            f"{kind}.v: missing; every message carries its schema version as the integer "
            f"key 'v' (this reader speaks {SCHEMA_VERSION})"
        )
    version = raw["v"]
    if isinstance(version, bool) or not isinstance(version, int):  # True == 1, 2.0 == 2
        raise SchemaError(
            f"{kind}.v: expected an integer, got {type(version).__name__}; the schema "
            f"version is an integer (this reader speaks {SCHEMA_VERSION})"
        )
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{kind}.v: schema version {version} is not supported; this reader speaks "
            f"{SCHEMA_VERSION}"
        )
    got = raw.get("type")
    if got != kind:
        raise SchemaError(f"{kind}.type: {got!r}, expected {kind!r}")
    return _Fields(raw, kind, binary)


def from_map(kind: type[M], raw: Any, *, binary: BinaryReader = _msgpack_binary) -> M:
    """Check a decoded map against the contract and build the message ``kind`` from it.

    Every rule of docs/wire-format.md is checked here, whichever form the map came in;
    ``binary`` reads the values at binary positions (by default: msgpack ``bin``,
    i.e. ``bytes``). Raises ``SchemaError`` naming the field and what is wrong.
    """
    f = _envelope(raw, KINDS[kind], binary)
    message = _READERS[kind](f)
    assert isinstance(message, kind)
    return message


# ---------------------------------------------------------------- scalar rules
# The rules for numbers and times, shared by the decoders and by ``to_map`` (so a writer
# cannot produce what a reader refuses). Each returns the checked values by field name.


def _time(f: _Fields, key: str) -> float:
    """A Unix time in seconds: finite and in [0, MAX_UNIX_TIME]."""
    return f.number(key, 0.0, MAX_UNIX_TIME)


def _frame_scalars(f: _Fields) -> dict[str, Any]:
    captured_at = _time(f, "captured_at")
    deadline_ms = f.integer("deadline_ms", 1, MAX_DEADLINE_MS)
    # The same sum as Frame.deadline_at, so every accepted frame can be escalated.
    deadline_at = captured_at + deadline_ms / 1000.0
    if deadline_at > MAX_UNIX_TIME:
        raise f.fail(
            "deadline_ms",
            f"the deadline captured_at + deadline_ms / 1000 = {deadline_at} is after "
            f"{MAX_UNIX_TIME} (2100-01-01)",
        )
    return {
        "seq": f.integer("seq", 0, MAX_SEQ),
        "captured_at": captured_at,
        "priority": f.integer("priority", 1, 3),
        "deadline_ms": deadline_ms,
        "threshold": f.optional("threshold", lambda k: f.number(k, 0.0, 1.0)),
    }


def _result_scalars(f: _Fields) -> dict[str, Any]:
    return {
        "seq": f.integer("seq", 0, MAX_SEQ),
        "confidence": f.number("confidence", 0.0, 1.0),
        "latency_ms": f.number("latency_ms", 0.0),
    }


def _escalation_scalars(f: _Fields) -> dict[str, Any]:
    captured_at = _time(f, "captured_at")
    deadline_at = _time(f, "deadline_at")
    # Written as comparisons of IEEE 754 doubles, not as a difference: a frame's
    # captured_at + deadline_ms / 1000 is never above captured_at + MAX_DEADLINE_S.
    if not captured_at <= deadline_at <= captured_at + MAX_DEADLINE_S:
        raise f.fail(
            "deadline_at",
            f"{deadline_at} is {deadline_at - captured_at:.3f} s after captured_at "
            f"{captured_at}; it must be 0 to {MAX_DEADLINE_S:g} s after",
        )
    return {
        "seq": f.integer("seq", 0, MAX_SEQ),
        "captured_at": captured_at,
        "deadline_at": deadline_at,
        "priority": f.integer("priority", 1, 3),
        "edge_confidence": f.number("edge_confidence", 0.0, 1.0),
    }


def _dead_letter_scalars(f: _Fields) -> dict[str, Any]:
    return {"at": f.number("at", 0.0)}


_SCALARS: dict[type[Any], Callable[[_Fields], dict[str, Any]]] = {
    Frame: _frame_scalars,
    InferenceResult: _result_scalars,
    Escalation: _escalation_scalars,
    DeadLetter: _dead_letter_scalars,
}


def _frame(f: _Fields) -> Frame:
    image = f.array("image", "uint8", 2)
    regions = f.regions("regions")
    height, width = image.shape
    for i, r in enumerate(regions):
        if r.x + r.w > width or r.y + r.h > height:
            raise SchemaError(
                f"frame.regions[{i}]: {[r.x, r.y, r.w, r.h]} reaches outside the "
                f"{width}x{height} image"
            )
    return Frame(
        frame_id=f.text("frame_id", _FRAME_ID),
        site=check_token(f.text("site"), "frame.site"),
        camera=check_token(f.text("camera"), "frame.camera"),
        image=image,
        regions=regions,
        privacy=f.enum("privacy", PrivacyClass),
        path=f.tiers("path"),
        **_frame_scalars(f),
    )


def _result(f: _Fields) -> InferenceResult:
    labels = f.labels("labels")
    scores = f.array("scores", "float32", 2)
    if scores.shape[0] != len(labels):
        raise SchemaError(
            f"result.scores: {scores.shape[0]} rows for {len(labels)} labels; need one per label"
        )
    edge_labels = f.optional("edge_labels", f.labels)
    source = f.enum("source", Source)
    path = f.tiers("path")
    if path and path[-1] is not source:
        raise SchemaError(
            f"result.path: ends with {path[-1].value!r} but source is {source.value!r}; "
            "the path ends with the tier that answered"
        )
    return InferenceResult(
        frame_id=f.text("frame_id", _FRAME_ID),
        site=check_token(f.text("site"), "result.site"),
        camera=check_token(f.text("camera"), "result.camera"),
        labels=labels,
        scores=scores,
        source=source,
        model=f.text("model", max_len=128),
        model_version=f.text("model_version", max_len=64),
        reason=f.enum("reason", Reason),
        degraded=f.flag("degraded"),
        edge_labels=edge_labels,
        path=path,
        **_result_scalars(f),
    )


def _escalation(f: _Fields) -> Escalation:
    privacy = f.enum("privacy", PrivacyClass)
    regions = f.regions("regions")
    crops = tuple(
        f.array_at(c, f"escalation.crops[{i}]", "uint8", 2)
        for i, c in enumerate(f.items("crops", MAX_REGIONS))
    )
    image = f.optional("image", lambda k: f.array(k, "uint8", 2))
    embedding = f.optional("embedding", lambda k: f.array(k, "float32", (1, 2)))
    if privacy is PrivacyClass.LOCAL_ONLY:
        raise SchemaError("escalation.privacy: a local_only frame must never be escalated")
    if privacy is PrivacyClass.EMBEDDING:
        _check_embedding(embedding, len(regions), len(crops), image is not None)
    elif embedding is not None:
        raise SchemaError(f"escalation.embedding: privacy {privacy.value!r} carries no embedding")
    if privacy is PrivacyClass.CROP and (image is not None or len(crops) != len(regions)):
        raise SchemaError(
            "escalation: privacy 'crop' carries one crop per region and no image, got "
            f"{len(crops)} crops for {len(regions)} regions"
            + (" and an image" if image is not None else "")
        )
    if privacy is PrivacyClass.FULL and (image is None or crops):
        raise SchemaError("escalation: privacy 'full' carries the image and no crops")
    for i, (r, crop) in enumerate(zip(regions, crops, strict=False)):
        if crop.shape != (r.h, r.w):
            raise SchemaError(
                f"escalation.crops[{i}]: shape {list(crop.shape)} does not match region "
                f"{[r.x, r.y, r.w, r.h]} ({r.h} rows, {r.w} columns)"
            )
    if image is not None:
        height, width = image.shape
        for i, r in enumerate(regions):
            if r.x + r.w > width or r.y + r.h > height:
                raise SchemaError(f"escalation.regions[{i}]: reaches outside the image")
    return Escalation(
        frame_id=f.text("frame_id", _FRAME_ID),
        site=check_token(f.text("site"), "escalation.site"),
        camera=check_token(f.text("camera"), "escalation.camera"),
        privacy=privacy,
        regions=regions,
        crops=crops,
        image=image,
        reply_to=f.text("reply_to", _SUBJECT),
        edge_labels=f.labels("edge_labels"),
        embedding=embedding,
        **_escalation_scalars(f),
    )


def _check_embedding(
    embedding: np.ndarray | None, regions: int, crops: int, has_image: bool
) -> None:
    """The rules of privacy ``embedding``: an embedding, and not one pixel."""
    if crops or has_image:
        raise SchemaError(
            "escalation: privacy 'embedding' carries the embedding and no crops or image, got "
            + " and ".join(
                ([f"{crops} crops"] if crops else []) + (["an image"] if has_image else [])
            )
        )
    if embedding is None:
        raise SchemaError("escalation.embedding: privacy 'embedding' needs an embedding, got nil")
    shape = list(embedding.shape)
    if shape[-1] < 1:
        raise SchemaError(f"escalation.embedding: shape {shape} has no values per embedding")
    if embedding.ndim == 2 and shape[0] != regions:
        raise SchemaError(
            f"escalation.embedding: {shape[0]} rows for {regions} regions; "
            "a 2-D embedding has one row per region"
        )


def _dead_letter(f: _Fields) -> DeadLetter:
    return DeadLetter(
        stage=f.text("stage", max_len=64),
        site=f.text("site", max_len=64),
        subject=f.text("subject", max_len=256),
        reason=f.text("reason", max_len=4096),
        data=f.binary("data"),
        **_dead_letter_scalars(f),
    )


_READERS: dict[type[Any], Callable[[_Fields], Message]] = {
    Frame: _frame,
    InferenceResult: _result,
    Escalation: _escalation,
    DeadLetter: _dead_letter,
}


def decode_frame(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Frame:
    """Parse and validate a frame; raise ``SchemaError`` saying what is wrong."""
    return from_map(Frame, _unpack(data, "frame", max_bytes))


def decode_result(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> InferenceResult:
    """Parse and validate an inference result; raise ``SchemaError`` saying what is wrong."""
    return from_map(InferenceResult, _unpack(data, "result", max_bytes))


def decode_escalation(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Escalation:
    """Parse and validate an escalation; raise ``SchemaError`` saying what is wrong."""
    return from_map(Escalation, _unpack(data, "escalation", max_bytes))


def decode_dead_letter(data: bytes, *, max_bytes: int = 2 * DEFAULT_MAX_BYTES) -> DeadLetter:
    """Parse and validate a dead-letter record."""
    return from_map(DeadLetter, _unpack(data, "dead_letter", max_bytes))
