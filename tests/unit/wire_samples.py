"""Sample wire messages and the helpers the schema tests share.

``make_frame``, ``make_result``, ``make_escalation`` and ``make_dead_letter`` build a
valid message, with any field changed; ``sample_colour``, ``sample_jpeg`` and
``sample_png`` give the other kinds of pixels, ``make_detection`` and ``make_line`` the
parts of a result; ``patched`` and ``with_array`` give a message's msgpack form with
keys replaced or removed, the way a faulty or hostile writer would send it; ``refused``
asserts a decoder's ``SchemaError`` and a fragment of its message.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas import messages
from schemas.codec import decode_dead_letter, decode_escalation, decode_frame, decode_result, encode
from schemas.errors import SchemaError
from schemas.vectors.make import JPEG_CROP_0, JPEG_CROP_1, JPEG_FRAME

DELETE = object()  # sentinel for ``patched``: remove the key

# ------------------------------------------------------------------ builders


def sample_image(h: int = 6, w: int = 8) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint16) * 7 % 256).astype(np.uint8).reshape(h, w)


def sample_colour(h: int = 6, w: int = 8) -> np.ndarray:
    """An H x W x 3 uint8 image whose three channels differ."""
    return sample_image(h, w * 3).reshape(h, w, 3)


def sample_jpeg(which: int = -1) -> messages.Encoded:
    """A real JPEG file: the vectors' 16 x 8 frame, or (``which`` 0 or 1) one of its
    8 x 8 and 6 x 5 crops."""
    data = JPEG_FRAME if which < 0 else (JPEG_CROP_0, JPEG_CROP_1)[which]
    return messages.Encoded(data, messages.Encoding.JPEG)


def sample_png(h: int = 2, w: int = 3) -> messages.Encoded:
    """A real, tiny grey PNG file of ``sample_image(h, w)``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + row.tobytes() for row in sample_image(h, w))  # filter 0
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return messages.Encoded(data, messages.Encoding.PNG)


def raw(pixels: messages.Pixels | None) -> np.ndarray:
    """``pixels`` as the raw array they must be (a test's own narrowing of the type)."""
    assert isinstance(pixels, np.ndarray), type(pixels).__name__
    return pixels


def raws(pixels: tuple[messages.Pixels, ...] | list[messages.Pixels]) -> list[np.ndarray]:
    return [raw(p) for p in pixels]


def make_detection(**changes: Any) -> messages.Detection:
    base: dict[str, Any] = {
        "box": messages.Region(1, 2, 3, 4),
        "label": "person",
        "label_index": 0,
        "score": 0.875,
        "source": messages.Source.EDGE,
    }
    base.update(changes)
    return messages.Detection(**base)


def make_line(**changes: Any) -> messages.TextLine:
    base: dict[str, Any] = {
        "box": messages.Region(0, 1, 8, 2),
        "text": "HF-2024",
        "confidence": 0.75,
        "source": messages.Source.EDGE,
    }
    base.update(changes)
    return messages.TextLine(**base)


def make_frame(**changes: Any) -> messages.Frame:
    base: dict[str, Any] = {
        "frame_id": "site1/cam-1:000042",
        "site": "site1",
        "camera": "cam-1",
        "seq": 42,
        "captured_at": 1_700_000_000.125,
        "image": sample_image(),
        "regions": (messages.Region(0, 0, 4, 3), messages.Region(4, 3, 4, 3)),
        "priority": 3,
        "deadline_ms": 180,
        "threshold": 0.75,
        "privacy": messages.PrivacyClass.FULL,
        "path": ("device",),
    }
    base.update(changes)
    return messages.Frame(**base)


def make_result(**changes: Any) -> messages.InferenceResult:
    base: dict[str, Any] = {
        "frame_id": "f-1",
        "site": "site1",
        "camera": "cam-1",
        "seq": 7,
        "labels": (3, 9),
        "scores": np.array([[0.1, 0.2, 0.7], [0.25, 0.5, 0.25]], dtype=np.float32),
        "confidence": 0.5,
        "source": messages.Source.CLOUD,
        "model": "digits-mlp",
        "model_version": "2024.06.1",
        "latency_ms": 12.5,
        "reason": messages.Reason.CLOUD_ANSWER,
        "degraded": True,
        "edge_labels": (3, 8),
        "path": ("device", "edge", "cloud"),
    }
    base.update(changes)
    return messages.InferenceResult(**base)


def sample_embedding(rows: int = 2, width: int = 4) -> np.ndarray:
    return (np.arange(rows * width, dtype=np.float32) / 8 - 0.5).reshape(rows, width)


def make_escalation(
    privacy: messages.PrivacyClass = messages.PrivacyClass.CROP, **changes: Any
) -> messages.Escalation:
    image = sample_image()
    regions = (messages.Region(0, 0, 4, 3), messages.Region(2, 1, 5, 5))
    base: dict[str, Any] = {
        "frame_id": "f-2",
        "site": "site1",
        "camera": "cam-1",
        "seq": 8,
        "captured_at": 1_700_000_000.5,
        "deadline_at": 1_700_000_000.75,
        "priority": 2,
        "privacy": privacy,
        "regions": regions,
        "crops": tuple(r.crop(image) for r in regions)
        if privacy is messages.PrivacyClass.CROP
        else (),
        "image": image if privacy is messages.PrivacyClass.FULL else None,
        "reply_to": "replies.site1.edge-1",
        "edge_labels": (1, 2),
        "edge_confidence": 0.4,
        "embedding": sample_embedding() if privacy is messages.PrivacyClass.EMBEDDING else None,
    }
    base.update(changes)
    return messages.Escalation(**base)


def make_dead_letter(**changes: Any) -> messages.DeadLetter:
    base: dict[str, Any] = {
        "stage": "cloud",
        "site": "site1",
        "subject": "escalations.site1.cam-1",
        "reason": "escalation.seq: expected an integer, got str",
        "data": bytes(range(256)),
        "at": 1_700_000_001.0,
    }
    base.update(changes)
    return messages.DeadLetter(**base)


def patched(msg: messages.Message | bytes, **changes: Any) -> bytes:
    """The wire form of ``msg`` with top-level keys replaced (or removed with DELETE)."""
    raw = msgpack.unpackb(msg if isinstance(msg, bytes) else encode(msg), raw=False)
    for key, value in changes.items():
        if value is DELETE:
            del raw[key]
        else:
            raw[key] = value
    out = msgpack.packb(raw, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def with_array(msg: messages.Message, key: str, **changes: Any) -> bytes:
    """The wire form of ``msg`` with keys of its array map ``key`` replaced."""
    raw = msgpack.unpackb(encode(msg), raw=False)
    raw[key].update(changes)
    out = msgpack.packb(raw, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def refused(decode: Callable[[bytes], Any], data: bytes, fragment: str) -> SchemaError:
    with pytest.raises(SchemaError, match=re.escape(fragment)) as info:
        decode(data)
    return info.value


def assert_same(got: messages.Message, want: messages.Message) -> None:
    assert type(got) is type(want)
    for field in dataclasses.fields(want):
        a, b = getattr(got, field.name), getattr(want, field.name)
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray), field.name
            assert a.dtype == b.dtype, field.name
            assert a.shape == b.shape, field.name
            assert np.array_equal(a, b), field.name
        elif field.name == "crops":
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                assert type(x) is type(y)
                if isinstance(y, np.ndarray):
                    assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
                else:
                    assert x == y and type(x.data) is bytes and type(x.encoding) is type(y.encoding)
        else:
            assert a == b, field.name
            assert type(a) is type(b), field.name
            for x, y in zip(a, b, strict=True) if isinstance(b, tuple) else ():
                if dataclasses.is_dataclass(y):  # a region, detection or line: every part typed
                    assert type(x) is type(y), field.name
                    for part in dataclasses.fields(y):
                        assert type(getattr(x, part.name)) is type(getattr(y, part.name))


def shares_received_bytes(array: np.ndarray) -> bool:
    """A read-only view whose memory is a ``bytes`` object: no copy was made after unpacking."""
    base: Any = array
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return isinstance(base, bytes) and np.shares_memory(array, np.frombuffer(base, np.uint8))


DECODERS: list[tuple[str, Callable[..., Any], Callable[[], messages.Message]]] = [
    ("frame", decode_frame, make_frame),
    ("result", decode_result, make_result),
    ("escalation", decode_escalation, make_escalation),
    ("dead_letter", decode_dead_letter, make_dead_letter),
]
DECODER_IDS = [k for k, _, _ in DECODERS]
