"""schemas.codec: round trips keep every field; every way a message can be wrong is refused.

Each refusal asserts ``SchemaError`` *and* a fragment of its message, so the message
keeps saying which field is wrong and why.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import (
    DEFAULT_MAX_BYTES,
    MAX_REGIONS,
    SCHEMA_VERSION,
    decode_dead_letter,
    decode_escalation,
    decode_frame,
    decode_result,
    encode,
)
from schemas.errors import HybridfleetError, SchemaError
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

Message = Frame | InferenceResult | Escalation | DeadLetter
DELETE = object()  # sentinel for ``_patched``: remove the key

# ------------------------------------------------------------------ builders


def _image(h: int = 6, w: int = 8) -> np.ndarray:
    return (np.arange(h * w, dtype=np.uint16) * 7 % 256).astype(np.uint8).reshape(h, w)


def make_frame(**changes: Any) -> Frame:
    base: dict[str, Any] = {
        "frame_id": "site1/cam-1:000042",
        "site": "site1",
        "camera": "cam-1",
        "seq": 42,
        "captured_at": 1_700_000_000.125,
        "image": _image(),
        "regions": (Region(0, 0, 4, 3), Region(4, 3, 4, 3)),
        "priority": 3,
        "deadline_ms": 180,
        "threshold": 0.75,
        "privacy": PrivacyClass.FULL,
        "path": ("device",),
    }
    base.update(changes)
    return Frame(**base)


def make_result(**changes: Any) -> InferenceResult:
    base: dict[str, Any] = {
        "frame_id": "f-1",
        "site": "site1",
        "camera": "cam-1",
        "seq": 7,
        "labels": (3, 9),
        "scores": np.array([[0.1, 0.2, 0.7], [0.25, 0.5, 0.25]], dtype=np.float32),
        "confidence": 0.5,
        "source": Source.CLOUD,
        "model": "digits-mlp",
        "model_version": "2024.06.1",
        "latency_ms": 12.5,
        "reason": Reason.CLOUD_ANSWER,
        "degraded": True,
        "edge_labels": (3, 8),
        "path": ("device", "edge", "cloud"),
    }
    base.update(changes)
    return InferenceResult(**base)


def _embedding(rows: int = 2, width: int = 4) -> np.ndarray:
    return (np.arange(rows * width, dtype=np.float32) / 8 - 0.5).reshape(rows, width)


def make_escalation(privacy: PrivacyClass = PrivacyClass.CROP, **changes: Any) -> Escalation:
    image = _image()
    regions = (Region(0, 0, 4, 3), Region(2, 1, 5, 5))
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
        "crops": tuple(r.crop(image) for r in regions) if privacy is PrivacyClass.CROP else (),
        "image": image if privacy is PrivacyClass.FULL else None,
        "reply_to": "replies.site1.edge-1",
        "edge_labels": (1, 2),
        "edge_confidence": 0.4,
        "embedding": _embedding() if privacy is PrivacyClass.EMBEDDING else None,
    }
    base.update(changes)
    return Escalation(**base)


def make_dead_letter(**changes: Any) -> DeadLetter:
    base: dict[str, Any] = {
        "stage": "cloud",
        "site": "site1",
        "subject": "escalations.site1.cam-1",
        "reason": "escalation.seq: expected an integer, got str",
        "data": bytes(range(256)),
        "at": 1_700_000_001.0,
    }
    base.update(changes)
    return DeadLetter(**base)


def _patched(msg: Message | bytes, **changes: Any) -> bytes:
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


def _with_array(msg: Message, key: str, **changes: Any) -> bytes:
    """The wire form of ``msg`` with keys of its array map ``key`` replaced."""
    raw = msgpack.unpackb(encode(msg), raw=False)
    raw[key].update(changes)
    out = msgpack.packb(raw, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def _refused(decode: Callable[[bytes], Any], data: bytes, fragment: str) -> SchemaError:
    with pytest.raises(SchemaError, match=re.escape(fragment)) as info:
        decode(data)
    return info.value


# ------------------------------------------------------------------ round trips


def _assert_same(got: Message, want: Message) -> None:
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
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        else:
            assert a == b, field.name
            assert type(a) is type(b), field.name


def _shares_received_bytes(array: np.ndarray) -> bool:
    """A read-only view whose memory is a ``bytes`` object: no copy was made after unpacking."""
    base: Any = array
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return isinstance(base, bytes) and np.shares_memory(array, np.frombuffer(base, np.uint8))


@pytest.mark.parametrize(
    "frame",
    [
        make_frame(),
        make_frame(threshold=None, priority=1, privacy=PrivacyClass.LOCAL_ONLY, seq=0),
        make_frame(regions=(), image=np.zeros((0, 0), np.uint8), deadline_ms=3_600_000),
        make_frame(threshold=0.0, captured_at=0.0, seq=2**63 - 1),
        make_frame(threshold=1.0),
        make_frame(path=(), privacy=PrivacyClass.EMBEDDING),
    ],
    ids=["full", "local-only-no-threshold", "empty-image", "low-bounds", "threshold-1", "no-path"],
)
def test_frame_round_trip(frame: Frame) -> None:
    got = decode_frame(encode(frame))
    _assert_same(got, frame)
    assert isinstance(got.privacy, PrivacyClass)
    assert all(type(r) is Region for r in got.regions)
    assert got.deadline_at == frame.deadline_at
    assert all(type(t) is Source for t in got.path)


def test_frame_image_is_read_only_view_of_received_bytes() -> None:
    got = decode_frame(encode(make_frame()))
    assert got.image.flags.writeable is False
    assert got.image.flags.owndata is False
    assert _shares_received_bytes(got.image)
    with pytest.raises(ValueError, match="read-only"):
        got.image[0, 0] = 1
    # crops are views of that same memory
    assert all(np.shares_memory(c, got.image) for c in got.crops())


def test_frame_non_contiguous_image_round_trips() -> None:
    big = _image(12, 16)
    strided = big[::2, 1::2]
    fortran = np.asfortranarray(_image())
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    for image in (strided, fortran):
        got = decode_frame(encode(make_frame(image=image)))
        assert np.array_equal(got.image, image)


@pytest.mark.parametrize(
    "result",
    [
        make_result(),
        make_result(
            edge_labels=None,
            degraded=False,
            source=Source.EDGE,
            reason=Reason.CONFIDENT,
            path=("device", "edge"),
        ),
        make_result(
            labels=(), scores=np.zeros((0, 10), np.float32), edge_labels=(), reason=Reason.SHED
        ),
        make_result(labels=(0, 999), confidence=1.0, latency_ms=0.0, path=()),
        make_result(
            edge_labels=None,
            degraded=False,
            source=Source.DEVICE,
            reason=Reason.UNCHANGED,
            path=("device",),
        ),
        make_result(path=("edge", "cloud")),
        make_result(path=("cloud",)),
    ],
    ids=[
        "cloud",
        "edge-no-edge-labels",
        "no-labels",
        "bounds-no-path",
        "device-unchanged",
        "edge-cloud",
        "cloud-only",
    ],
)
def test_result_round_trip(result: InferenceResult) -> None:
    got = decode_result(encode(result))
    _assert_same(got, result)
    assert got.label == result.label
    assert isinstance(got.source, Source) and isinstance(got.reason, Reason)
    assert all(type(t) is Source for t in got.path)


def test_result_scores_read_only_and_big_endian_is_normalised() -> None:
    scores = np.array([[0.125, 0.875]], dtype=">f4")
    got = decode_result(encode(make_result(labels=(1,), scores=scores, edge_labels=None)))
    assert got.scores.dtype == np.dtype("<f4")
    assert got.scores.tolist() == [[0.125, 0.875]]
    assert got.scores.flags.writeable is False
    assert _shares_received_bytes(got.scores)


def test_escalation_crop_round_trip() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    got = decode_escalation(encode(esc))
    _assert_same(got, esc)
    assert got.image is None
    assert len(got.crops) == 2
    for crop in got.crops:
        assert crop.flags.writeable is False
        assert _shares_received_bytes(crop)
    pixels = got.region_pixels()
    assert [p.tolist() for p in pixels] == [c.tolist() for c in esc.crops]


def test_escalation_full_round_trip() -> None:
    esc = make_escalation(PrivacyClass.FULL)
    got = decode_escalation(encode(esc))
    _assert_same(got, esc)
    assert got.crops == ()
    assert got.image is not None
    assert got.image.flags.writeable is False
    assert _shares_received_bytes(got.image)
    want = [r.crop(esc.image).tolist() for r in esc.regions]  # type: ignore[arg-type]
    assert [p.tolist() for p in got.region_pixels()] == want


@pytest.mark.parametrize(
    "embedding",
    [_embedding(2, 4), _embedding(1, 16)[0], _embedding(2, 1)],
    ids=["per-region", "one-vector", "width-1"],
)
def test_escalation_embedding_round_trip(embedding: np.ndarray) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    got = decode_escalation(encode(esc))
    _assert_same(got, esc)
    assert got.crops == () and got.image is None
    assert got.embedding is not None
    assert got.embedding.dtype == np.dtype("<f4")
    assert got.embedding.flags.writeable is False
    assert _shares_received_bytes(got.embedding)


def test_escalation_embedding_with_no_regions_round_trips() -> None:
    esc = make_escalation(
        PrivacyClass.EMBEDDING, regions=(), edge_labels=(), embedding=np.zeros((0, 4), np.float32)
    )
    _assert_same(decode_escalation(encode(esc)), esc)


def test_embedding_escalation_has_no_region_pixels() -> None:
    with pytest.raises(SchemaError, match="privacy 'embedding' carries no pixels"):
        make_escalation(PrivacyClass.EMBEDDING).region_pixels()


def test_escalation_with_no_regions_round_trips() -> None:
    esc = make_escalation(regions=(), crops=(), edge_labels=())
    _assert_same(decode_escalation(encode(esc)), esc)


# ------------------------------------------------------------------ Escalation.of_frame


def test_of_frame_sends_what_privacy_allows() -> None:
    frame = make_frame()
    crop = Escalation.of_frame(frame, PrivacyClass.CROP, "replies.site1.e", (1, 2), 0.5)
    assert crop.image is None and crop.embedding is None
    assert [c.tolist() for c in crop.crops] == [c.tolist() for c in frame.crops()]
    full = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1, 2), 0.5)
    assert full.image is frame.image and full.crops == () and full.embedding is None
    embedding = _embedding()
    emb = Escalation.of_frame(
        frame, PrivacyClass.EMBEDDING, "replies.site1.e", (1, 2), 0.5, embedding=embedding
    )
    assert emb.embedding is embedding and emb.crops == () and emb.image is None
    assert (emb.privacy, emb.regions, emb.deadline_at) == (
        PrivacyClass.EMBEDDING,
        frame.regions,
        frame.deadline_at,
    )
    for esc in (crop, full, emb):
        _assert_same(decode_escalation(encode(esc)), esc)


@pytest.mark.parametrize(
    ("send", "embedding", "fragment"),
    [
        (PrivacyClass.EMBEDDING, None, "escalation.embedding: privacy 'embedding' needs an"),
        (PrivacyClass.CROP, _embedding(), "escalation.embedding: privacy 'crop' carries no"),
        (PrivacyClass.FULL, _embedding(), "escalation.embedding: privacy 'full' carries no"),
        (PrivacyClass.LOCAL_ONLY, None, "escalation.privacy: a local_only frame must never"),
    ],
)
def test_of_frame_refuses_what_privacy_does_not_allow(
    send: PrivacyClass, embedding: np.ndarray | None, fragment: str
) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        Escalation.of_frame(make_frame(), send, "replies.site1.e", (1, 2), 0.5, embedding=embedding)


def test_dead_letter_round_trip() -> None:
    dead = make_dead_letter()
    got = decode_dead_letter(encode(dead))
    assert got == dead  # a plain frozen dataclass: == compares every field
    assert type(got.data) is bytes


def test_dead_letter_may_hold_a_max_size_message() -> None:
    dead = make_dead_letter(data=b"\x00" * DEFAULT_MAX_BYTES)
    assert decode_dead_letter(encode(dead)).data == dead.data


def test_max_bytes_is_inclusive() -> None:
    data = encode(make_frame())
    assert decode_frame(data, max_bytes=len(data)).seq == 42
    _refused(
        lambda d: decode_frame(d, max_bytes=len(data) - 1),
        data,
        f"frame: {len(data)} bytes is over the limit of {len(data) - 1}",
    )


def test_decoders_accept_bytearray_and_memoryview() -> None:
    data = encode(make_frame())
    assert decode_frame(bytearray(data)).seq == 42  # type: ignore[arg-type]
    assert decode_frame(memoryview(data)).seq == 42  # type: ignore[arg-type]


def test_schema_error_is_a_non_retriable_value_error() -> None:
    err = _refused(decode_frame, b"\xc1", "frame: not valid msgpack")
    assert isinstance(err, HybridfleetError) and isinstance(err, ValueError)
    assert err.retriable is False


# ------------------------------------------------------------------ encode refusals


def test_encode_refuses_float64_image() -> None:
    with pytest.raises(SchemaError, match=r"array dtype float64 cannot be sent.*'float32'"):
        encode(make_frame(image=np.zeros((2, 2), np.float64)))


@pytest.mark.parametrize("dtype", ["int16", "bool", "float16", "uint16"])
def test_encode_refuses_other_dtypes(dtype: str) -> None:
    with pytest.raises(SchemaError, match=f"array dtype {dtype} cannot be sent"):
        encode(make_result(labels=(1,), scores=np.zeros((1, 2), dtype)))


def test_encode_refuses_a_non_message() -> None:
    with pytest.raises(TypeError, match="cannot encode Region"):
        encode(Region(0, 0, 1, 1))  # type: ignore[arg-type]


# ------------------------------------------------------------------ envelope refusals

DECODERS: list[tuple[str, Callable[..., Any], Callable[[], Message]]] = [
    ("frame", decode_frame, make_frame),
    ("result", decode_result, make_result),
    ("escalation", decode_escalation, make_escalation),
    ("dead_letter", decode_dead_letter, make_dead_letter),
]
DECODER_IDS = [k for k, _, _ in DECODERS]


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_not_msgpack(kind: str, decode: Callable[..., Any], make: Callable[[], Message]) -> None:
    _refused(decode, b"\xc1", f"{kind}: not valid msgpack")
    _refused(decode, encode(make())[:-3], f"{kind}: not valid msgpack")  # truncated
    _refused(decode, encode(make()) + b"\x00", f"{kind}: not valid msgpack")  # trailing data
    _refused(decode, b"", f"{kind}: not valid msgpack")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_not_bytes(kind: str, decode: Callable[..., Any], make: Callable[[], Message]) -> None:
    _refused(decode, "not bytes", f"{kind}: expected bytes, got str")  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    ("payload", "got"), [([1, 2], "list"), ("frame", "str"), (None, "NoneType"), (7, "int")]
)
def test_not_a_map(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], payload: Any, got: str
) -> None:
    _refused(decode, msgpack.packb(payload), f"{kind}: expected a map, got {got}")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize("version", [1, 3, 0, -2, 2**64 - 1], ids=["v1", "v3", "v0", "neg", "u64"])
def test_unknown_schema_version(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], version: int
) -> None:
    _refused(
        decode,
        _patched(make(), v=version),
        f"{kind}.v: schema version {version} is not supported; this reader speaks {SCHEMA_VERSION}",
    )


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_missing_schema_version_says_v_is_missing(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    err = _refused(decode, _patched(make(), v=DELETE), f"{kind}.v: missing;")
    assert "None" not in str(err) and "not supported" not in str(err)
    assert f"this reader speaks {SCHEMA_VERSION}" in str(err)


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize(
    ("version", "got"),
    [(2.0, "float"), (True, "bool"), (False, "bool"), ("2", "str"), (None, "NoneType")],
    ids=["float", "true", "false", "str", "nil"],
)
def test_schema_version_of_another_type_is_a_type_error(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message], version: Any, got: str
) -> None:
    err = _refused(decode, _patched(make(), v=version), f"{kind}.v: expected an integer, got {got}")
    assert "not supported" not in str(err)


def test_this_is_version_2() -> None:
    # A bump is a contract change: docs/wire-format.md and the vectors move with it.
    assert SCHEMA_VERSION == 2
    assert msgpack.unpackb(encode(make_frame()))["v"] == 2


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_wrong_message_type(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    other = make_result() if kind != "result" else make_frame()
    other_kind = "result" if kind != "result" else "frame"
    _refused(decode, encode(other), f"{kind}.type: {other_kind!r}, expected {kind!r}")
    _refused(decode, _patched(make(), type=DELETE), f"{kind}.type: None, expected {kind!r}")


@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS, ids=DECODER_IDS)
def test_oversized_payload(
    kind: str, decode: Callable[..., Any], make: Callable[[], Message]
) -> None:
    data = encode(make())
    _refused(
        lambda d: decode(d, max_bytes=100),
        data,
        f"{kind}: {len(data)} bytes is over the limit of 100",
    )


def test_default_frame_size_limit() -> None:
    image = np.zeros((2048, 2049), np.uint8)  # just over 4 MiB of pixels
    data = encode(make_frame(image=image))
    _refused(decode_frame, data, f"frame: {len(data)} bytes is over the limit of 4194304")


# ------------------------------------------------------------------ frame fields

FRAME_FIELDS = [
    "frame_id",
    "site",
    "camera",
    "seq",
    "captured_at",
    "image",
    "regions",
    "priority",
    "deadline_ms",
    "threshold",
    "privacy",
    "path",
]


def test_frame_field_list_is_complete() -> None:
    assert set(FRAME_FIELDS) == {f.name for f in dataclasses.fields(Frame)}
    assert set(msgpack.unpackb(encode(make_frame()))) == {*FRAME_FIELDS, "v", "type"}


@pytest.mark.parametrize("field", FRAME_FIELDS)
def test_frame_missing_field(field: str) -> None:
    _refused(decode_frame, _patched(make_frame(), **{field: DELETE}), f"frame.{field}: missing")


@pytest.mark.parametrize("field", sorted({f.name for f in dataclasses.fields(InferenceResult)}))
def test_result_missing_field(field: str) -> None:
    _refused(decode_result, _patched(make_result(), **{field: DELETE}), f"result.{field}: missing")


@pytest.mark.parametrize("field", sorted({f.name for f in dataclasses.fields(Escalation)}))
def test_escalation_missing_field(field: str) -> None:
    _refused(
        decode_escalation,
        _patched(make_escalation(), **{field: DELETE}),
        f"escalation.{field}: missing",
    )


@pytest.mark.parametrize("field", sorted({f.name for f in dataclasses.fields(DeadLetter)}))
def test_dead_letter_missing_field(field: str) -> None:
    _refused(
        decode_dead_letter,
        _patched(make_dead_letter(), **{field: DELETE}),
        f"dead_letter.{field}: missing",
    )


@pytest.mark.parametrize("field", ["dtype", "shape", "data"])
def test_frame_image_missing_array_field(field: str) -> None:
    raw = msgpack.unpackb(encode(make_frame()))
    del raw["image"][field]
    _refused(decode_frame, msgpack.packb(raw), f"frame.image.{field}: missing")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("frame_id", 5, "frame.frame_id: expected a string, got int"),
        ("frame_id", b"f-1", "frame.frame_id: expected a string, got bytes"),
        ("site", None, "frame.site: expected a string, got NoneType"),
        ("camera", ["cam"], "frame.camera: expected a string, got list"),
        ("seq", "42", "frame.seq: expected an integer, got str"),
        ("seq", 42.0, "frame.seq: expected an integer, got float"),
        ("captured_at", "now", "frame.captured_at: expected a number, got str"),
        ("image", b"\x00" * 48, "frame.image: expected an array map {dtype, shape, data}"),
        ("image", None, "frame.image: expected an array map"),
        ("regions", {"x": 0}, "frame.regions: expected a list, got dict"),
        ("regions", [[0, 0, 1]], "frame.regions[0]: expected [x, y, width, height] integers"),
        ("regions", [[0, 0, 1.0, 1]], "frame.regions[0]: expected [x, y, width, height]"),
        ("regions", [(0, 0)], "frame.regions[0]: expected [x, y, width, height]"),
        ("regions", ["0,0,1,1"], "frame.regions[0]: expected [x, y, width, height]"),
        ("priority", "high", "frame.priority: expected an integer, got str"),
        ("deadline_ms", 250.0, "frame.deadline_ms: expected an integer, got float"),
        ("threshold", "0.5", "frame.threshold: expected a number, got str"),
        (
            "privacy",
            "public",
            "frame.privacy: 'public' is not one of local_only, embedding, crop, full",
        ),
        ("privacy", None, "frame.privacy: None is not one of"),
        ("privacy", ["crop"], "frame.privacy: ['crop'] is not one of"),
    ],
)
def test_frame_wrong_type(field: str, value: Any, fragment: str) -> None:
    _refused(decode_frame, _patched(make_frame(), **{field: value}), fragment)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("seq", True, "frame.seq: expected an integer, got bool"),
        ("priority", True, "frame.priority: expected an integer, got bool"),
        ("deadline_ms", False, "frame.deadline_ms: expected an integer, got bool"),
        ("captured_at", True, "frame.captured_at: expected a number, got bool"),
        ("threshold", False, "frame.threshold: expected a number, got bool"),
        ("regions", [[True, 0, 1, 1]], "frame.regions[0]: expected [x, y, width, height]"),
        ("regions", [[0, 0, 1, True]], "frame.regions[0]: expected [x, y, width, height]"),
    ],
)
def test_frame_bool_where_int_required(field: str, value: Any, fragment: str) -> None:
    _refused(decode_frame, _patched(make_frame(), **{field: value}), fragment)


def test_image_shape_with_bool_refused() -> None:
    data = _with_array(make_frame(image=_image(1, 1)), "image", shape=[True, True])
    _refused(decode_frame, data, "frame.image.shape: [True, True] is not 2 sizes in 0..65536")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("frame_id", "", "frame.frame_id: '' does not match"),
        ("frame_id", "a b", "frame.frame_id: 'a b' does not match"),
        ("frame_id", "x" * 129, "frame.frame_id: 'xxxx"),
        ("frame_id", "x" * 1025, "frame.frame_id: longer than 1024 characters"),
        ("seq", -1, "frame.seq: -1 is outside 0..9223372036854775807"),
        ("seq", 2**63, "frame.seq: 9223372036854775808 is outside 0..9223372036854775807"),
        ("captured_at", -0.5, "frame.captured_at: -0.5 is outside 0.0..4102444800.0"),
        ("priority", 0, "frame.priority: 0 is outside 1..3"),
        ("priority", 4, "frame.priority: 4 is outside 1..3"),
        ("priority", -1, "frame.priority: -1 is outside 1..3"),
        ("deadline_ms", 0, "frame.deadline_ms: 0 is outside 1..3600000"),
        ("deadline_ms", 3_600_001, "frame.deadline_ms: 3600001 is outside 1..3600000"),
        ("threshold", 1.5, "frame.threshold: 1.5 is outside 0.0..1.0"),
        ("threshold", -0.1, "frame.threshold: -0.1 is outside 0.0..1.0"),
        ("threshold", 2, "frame.threshold: 2.0 is outside 0.0..1.0"),
    ],
)
def test_frame_out_of_range(field: str, value: Any, fragment: str) -> None:
    _refused(decode_frame, _patched(make_frame(), **{field: value}), fragment)


@pytest.mark.parametrize(
    ("decode", "make", "field"),
    [
        (decode_frame, make_frame, "captured_at"),
        (decode_frame, make_frame, "threshold"),
        (decode_result, make_result, "confidence"),
        (decode_result, make_result, "latency_ms"),
        (decode_escalation, make_escalation, "captured_at"),
        (decode_escalation, make_escalation, "deadline_at"),
        (decode_escalation, make_escalation, "edge_confidence"),
        (decode_dead_letter, make_dead_letter, "at"),
    ],
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_refused(
    decode: Callable[..., Any], make: Callable[[], Message], field: str, value: float
) -> None:
    kind = {decode_frame: "frame", decode_result: "result"}.get(decode)
    kind = kind or ("escalation" if decode is decode_escalation else "dead_letter")
    _refused(decode, _patched(make(), **{field: value}), f"{kind}.{field}: {value} is not a finite")


def test_frame_float32_image_refused() -> None:
    data = encode(make_frame(image=_image().astype(np.float32)))
    _refused(decode_frame, data, "frame.image.dtype: 'float32', expected 'uint8'")


@pytest.mark.parametrize(
    ("dtype", "fragment"),
    [
        ("float64", "frame.image.dtype: 'float64', expected 'uint8'"),
        ("UINT8", "frame.image.dtype: 'UINT8', expected 'uint8'"),
        (8, "frame.image.dtype: expected a string, got int"),
        ("u" * 17, "frame.image.dtype: longer than 16 characters"),
    ],
)
def test_frame_image_bad_dtype(dtype: Any, fragment: str) -> None:
    _refused(decode_frame, _with_array(make_frame(), "image", dtype=dtype), fragment)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([6, 9], "frame.image: shape [6, 9] of uint8 needs 54 bytes, got 48"),
        ([4, 8], "frame.image: shape [4, 8] of uint8 needs 32 bytes, got 48"),
        ([0, 8], "frame.image: shape [0, 8] of uint8 needs 0 bytes, got 48"),
    ],
)
def test_frame_image_shape_does_not_match_data(shape: list[int], fragment: str) -> None:
    _refused(decode_frame, _with_array(make_frame(), "image", shape=shape), fragment)


def test_frame_image_data_not_binary() -> None:
    data = _with_array(make_frame(), "image", data="x" * 48)
    _refused(decode_frame, data, "frame.image.data: expected binary data, got str")


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([48], "frame.image.shape: [48] is not 2 sizes in 0..65536"),
        ([2, 4, 6], "frame.image.shape: [2, 4, 6] is not 2 sizes"),
        ([], "frame.image.shape: [] is not 2 sizes"),
        ([-6, -8], "frame.image.shape: [-6, -8] is not 2 sizes"),
        ([65537, 0], "frame.image.shape: [65537, 0] is not 2 sizes in 0..65536"),
        ([6.0, 8], "frame.image.shape: [6.0, 8] is not 2 sizes"),
        ([1] * 9, "frame.image.shape: 9 items, at most 8 allowed"),
    ],
)
def test_frame_image_wrong_ndim_or_sizes(shape: list[Any], fragment: str) -> None:
    _refused(decode_frame, _with_array(make_frame(), "image", shape=shape), fragment)


@pytest.mark.parametrize(
    ("regions", "fragment"),
    [
        ([[5, 0, 4, 1]], "frame.regions[0]: [5, 0, 4, 1] reaches outside the 8x6 image"),
        ([[0, 4, 1, 3]], "frame.regions[0]: [0, 4, 1, 3] reaches outside the 8x6 image"),
        ([[0, 0, 8, 6], [8, 0, 1, 1]], "frame.regions[1]: [8, 0, 1, 1] reaches outside"),
        ([[2**40, 0, 1, 1]], "reaches outside the 8x6 image"),
    ],
)
def test_frame_region_outside_image(regions: list[list[int]], fragment: str) -> None:
    _refused(decode_frame, _patched(make_frame(), regions=regions), fragment)


@pytest.mark.parametrize(
    "region", [[0, 0, 0, 1], [0, 0, 1, 0], [-1, 0, 1, 1], [0, -1, 1, 1], [0, 0, -2, 1]]
)
def test_frame_degenerate_region(region: list[int]) -> None:
    _refused(
        decode_frame,
        _patched(make_frame(), regions=[region]),
        f"frame.regions[0]: {region} needs x, y >= 0 and width, height >= 1",
    )


def test_region_filling_the_image_is_accepted() -> None:
    got = decode_frame(_patched(make_frame(), regions=[[0, 0, 8, 6], [7, 5, 1, 1]]))
    assert got.regions == (Region(0, 0, 8, 6), Region(7, 5, 1, 1))


def test_too_many_regions() -> None:
    at_limit = [[0, 0, 1, 1]] * MAX_REGIONS
    assert len(decode_frame(_patched(make_frame(), regions=at_limit)).regions) == MAX_REGIONS
    _refused(
        decode_frame,
        _patched(make_frame(), regions=[*at_limit, [0, 0, 1, 1]]),
        f"frame.regions: {MAX_REGIONS + 1} items, at most {MAX_REGIONS} allowed",
    )


# ------------------------------------------------------------------ paths (frame and result)

PATH_CASES: list[tuple[Any, str]] = [
    (["fog"], "path[0]: 'fog' is not one of device, edge, cloud"),
    (["device", "Edge"], "path[1]: 'Edge' is not one of device, edge, cloud"),
    (["edge", 1], "path[1]: 1 is not one of device, edge, cloud"),
    ([None], "path[0]: None is not one of device, edge, cloud"),
    ([b"edge"], "path[0]: b'edge' is not one of device, edge, cloud"),
    (["device", "device"], "path: 'device' appears twice; each tier at most once"),
    (["device", "edge", "edge"], "path: 'edge' appears twice"),
    (["cloud", "edge"], "path: ['cloud', 'edge'] is out of order; tiers go device, edge, cloud"),
    (["edge", "device"], "path: ['edge', 'device'] is out of order"),
    (["device", "cloud", "edge"], "path: ['device', 'cloud', 'edge'] is out of order"),
    (["device", "edge", "cloud", "cloud"], "path: 4 items, at most 3 allowed"),
    ("device", "path: expected a list, got str"),
    (None, "path: expected a list, got NoneType"),
]


@pytest.mark.parametrize(("path", "fragment"), PATH_CASES)
def test_frame_bad_path(path: Any, fragment: str) -> None:
    _refused(decode_frame, _patched(make_frame(), path=path), f"frame.{fragment}")


@pytest.mark.parametrize(("path", "fragment"), PATH_CASES)
def test_result_bad_path(path: Any, fragment: str) -> None:
    # A cloud answer, so that a path that ends in "cloud" fails only for the fault shown.
    _refused(decode_result, _patched(make_result(), path=path), f"result.{fragment}")


@pytest.mark.parametrize(
    "path",
    [
        [],
        ["device"],
        ["edge"],
        ["cloud"],
        ["device", "edge"],
        ["device", "cloud"],
        ["edge", "cloud"],
        ["device", "edge", "cloud"],
    ],
)
def test_every_ordered_path_is_accepted_on_a_frame(path: list[str]) -> None:
    assert decode_frame(_patched(make_frame(), path=path)).path == tuple(path)


@pytest.mark.parametrize(
    ("source", "path"),
    [("edge", ["device", "edge", "cloud"]), ("cloud", ["device", "edge"]), ("device", ["edge"])],
)
def test_result_path_ends_with_its_source(source: str, path: list[str]) -> None:
    _refused(
        decode_result,
        _patched(make_result(), source=source, path=path),
        f"result.path: ends with {path[-1]!r} but source is {source!r}; the path ends with "
        "the tier that answered",
    )


# ------------------------------------------------------------------ subject injection

BAD_TOKENS = ["a.b", "*", ">", "site 1", "a\tb", "", "x" * 65, "caf\u00e9", "a\n", "$SYS"]


@pytest.mark.parametrize("token", BAD_TOKENS)
@pytest.mark.parametrize(("kind", "decode", "make"), DECODERS[:3], ids=DECODER_IDS[:3])
@pytest.mark.parametrize("field", ["site", "camera"])
def test_site_and_camera_must_be_tokens(
    token: str, kind: str, decode: Callable[..., Any], make: Callable[[], Message], field: str
) -> None:
    _refused(
        decode,
        _patched(make(), **{field: token}),
        f"{kind}.{field}: {token!r} is not a valid name; use 1-64 letters, digits",
    )


def test_longest_valid_token_is_accepted() -> None:
    token = "A-z_9" * 12 + "abcd"
    assert len(token) == 64
    assert decode_frame(_patched(make_frame(), site=token, camera=token)).site == token


# ------------------------------------------------------------------ result fields


def test_result_scores_rows_must_match_labels() -> None:
    data = encode(make_result(labels=(1,)))  # two score rows
    _refused(decode_result, data, "result.scores: 2 rows for 1 labels; need one per label")
    data = encode(make_result(labels=(1, 2, 3)))
    _refused(decode_result, data, "result.scores: 2 rows for 3 labels")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_result_scores_must_be_finite(bad: float) -> None:
    scores = np.array([[0.5, 0.5], [0.2, bad]], dtype=np.float32)
    _refused(decode_result, encode(make_result(scores=scores)), "result.scores: contains NaN")


def test_result_scores_must_be_float32() -> None:
    data = encode(make_result(scores=np.zeros((2, 3), np.uint8)))
    _refused(decode_result, data, "result.scores.dtype: 'uint8', expected 'float32'")


def test_result_scores_must_be_2d() -> None:
    data = encode(make_result(labels=(1, 2, 3, 4, 5, 6), scores=np.zeros(6, np.float32)))
    _refused(decode_result, data, "result.scores.shape: [6] is not 2 sizes")


def test_result_scores_data_length() -> None:
    data = _with_array(make_result(), "scores", data=b"\x00" * 23)
    _refused(decode_result, data, "result.scores: shape [2, 3] of float32 needs 24 bytes, got 23")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("labels", [1, "2"], "result.labels: expected a list of integers"),
        ("labels", [True, 1], "result.labels: expected a list of integers"),
        ("labels", [1.0, 2.0], "result.labels: expected a list of integers"),
        ("labels", [-1, 2], "result.labels: labels must be in 0..999"),
        ("labels", [1, 1000], "result.labels: labels must be in 0..999"),
        ("labels", 3, "result.labels: expected a list, got int"),
        ("labels", [0] * 65, "result.labels: 65 items, at most 64 allowed"),
        ("edge_labels", [True], "result.edge_labels: expected a list of integers"),
        ("edge_labels", [5000], "result.edge_labels: labels must be in 0..999"),
        ("edge_labels", "3,8", "result.edge_labels: expected a list, got str"),
        ("seq", False, "result.seq: expected an integer, got bool"),
        ("confidence", True, "result.confidence: expected a number, got bool"),
        ("confidence", 1.01, "result.confidence: 1.01 is outside 0.0..1.0"),
        ("confidence", -0.01, "result.confidence: -0.01 is outside 0.0..1.0"),
        ("latency_ms", None, "result.latency_ms: expected a number, got NoneType"),
        ("source", "fog", "result.source: 'fog' is not one of device, edge, cloud"),
        ("source", "EDGE", "result.source: 'EDGE' is not one of device, edge, cloud"),
        ("reason", "because", "result.reason: 'because' is not one of confident, priority_local"),
        ("degraded", 1, "result.degraded: expected true or false, got int"),
        ("degraded", None, "result.degraded: expected true or false, got NoneType"),
        ("model", 3, "result.model: expected a string, got int"),
        ("model", "m" * 129, "result.model: longer than 128 characters"),
        ("model_version", "v" * 65, "result.model_version: longer than 64 characters"),
        ("frame_id", "f 1", "result.frame_id: 'f 1' does not match"),
        ("scores", [[0.5]], "result.scores: expected an array map"),
    ],
)
def test_result_bad_field(field: str, value: Any, fragment: str) -> None:
    _refused(decode_result, _patched(make_result(), **{field: value}), fragment)


# ------------------------------------------------------------------ escalation fields


def test_escalation_local_only_refused() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    _refused(
        decode_escalation,
        _patched(esc, privacy="local_only"),
        "escalation.privacy: a local_only frame must never be escalated",
    )


def test_escalation_crop_with_an_image_refused() -> None:
    esc = make_escalation(PrivacyClass.CROP, image=_image())
    _refused(
        decode_escalation,
        encode(esc),
        "escalation: privacy 'crop' carries one crop per region and no image, "
        "got 2 crops for 2 regions and an image",
    )


def test_escalation_crop_count_must_match_regions() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    fewer = dataclasses.replace(esc, crops=esc.crops[:1])
    _refused(decode_escalation, encode(fewer), "got 1 crops for 2 regions")
    none = dataclasses.replace(esc, crops=())
    _refused(decode_escalation, encode(none), "got 0 crops for 2 regions")
    more = dataclasses.replace(esc, crops=(*esc.crops, esc.crops[0]))
    _refused(decode_escalation, encode(more), "got 3 crops for 2 regions")


def test_escalation_crop_shape_must_match_its_region() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    swapped = dataclasses.replace(esc, crops=(esc.crops[1], esc.crops[0]))
    _refused(
        decode_escalation,
        encode(swapped),
        "escalation.crops[0]: shape [5, 5] does not match region [0, 0, 4, 3]",
    )
    empty = dataclasses.replace(esc, crops=(esc.crops[0], np.zeros((0, 0), np.uint8)))
    _refused(
        decode_escalation,
        encode(empty),
        "escalation.crops[1]: shape [0, 0] does not match region [2, 1, 5, 5]",
    )


def test_escalation_full_without_image_refused() -> None:
    esc = make_escalation(PrivacyClass.FULL, image=None)
    _refused(
        decode_escalation, encode(esc), "escalation: privacy 'full' carries the image and no crops"
    )


def test_escalation_full_with_crops_refused() -> None:
    full = make_escalation(PrivacyClass.FULL)
    crops = make_escalation(PrivacyClass.CROP).crops
    _refused(
        decode_escalation,
        encode(dataclasses.replace(full, crops=crops)),
        "escalation: privacy 'full' carries the image and no crops",
    )


def test_escalation_full_region_outside_image() -> None:
    esc = make_escalation(PrivacyClass.FULL, regions=(Region(0, 0, 1, 1), Region(7, 5, 2, 1)))
    _refused(decode_escalation, encode(esc), "escalation.regions[1]: reaches outside the image")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("privacy", "secret", "escalation.privacy: 'secret' is not one of local_only, embedding"),
        ("crops", {"0": 1}, "escalation.crops: expected a list, got dict"),
        ("crops", [b"\x00"], "escalation.crops[0]: expected an array map"),
        ("image", "pixels", "escalation.image: expected an array map"),
        ("priority", 5, "escalation.priority: 5 is outside 1..3"),
        ("priority", True, "escalation.priority: expected an integer, got bool"),
        ("reply_to", "replies.site1.edge 1", "escalation.reply_to: 'replies.site1.edge 1' does"),
        ("reply_to", "replies.*.>", "escalation.reply_to: 'replies.*.>' does not match"),
        ("reply_to", "", "escalation.reply_to: '' does not match"),
        ("edge_labels", None, "escalation.edge_labels: expected a list, got NoneType"),
        ("edge_labels", [False], "escalation.edge_labels: expected a list of integers"),
        ("edge_confidence", 1.5, "escalation.edge_confidence: 1.5 is outside 0.0..1.0"),
        ("deadline_at", -1, "escalation.deadline_at: -1.0 is outside 0.0..4102444800.0"),
        ("regions", [[0, 0, 0, 3], [2, 1, 5, 5]], "escalation.regions[0]: [0, 0, 0, 3] needs"),
    ],
)
def test_escalation_bad_field(field: str, value: Any, fragment: str) -> None:
    _refused(decode_escalation, _patched(make_escalation(), **{field: value}), fragment)


def test_escalation_embedding_without_an_embedding_refused() -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=None)
    _refused(
        decode_escalation,
        encode(esc),
        "escalation.embedding: privacy 'embedding' needs an embedding, got nil",
    )


@pytest.mark.parametrize(
    ("changes", "got"),
    [
        ({"crops": make_escalation(PrivacyClass.CROP).crops}, "got 2 crops"),
        ({"image": _image()}, "got an image"),
        (
            {"crops": make_escalation(PrivacyClass.CROP).crops, "image": _image()},
            "got 2 crops and an image",
        ),
    ],
    ids=["crops", "image", "both"],
)
def test_escalation_embedding_with_pixels_refused(changes: dict[str, Any], got: str) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, **changes)
    _refused(
        decode_escalation,
        encode(esc),
        f"escalation: privacy 'embedding' carries the embedding and no crops or image, {got}",
    )


@pytest.mark.parametrize("privacy", [PrivacyClass.CROP, PrivacyClass.FULL])
def test_escalation_with_pixels_and_an_embedding_refused(privacy: PrivacyClass) -> None:
    esc = make_escalation(privacy, embedding=_embedding())
    _refused(
        decode_escalation,
        encode(esc),
        f"escalation.embedding: privacy {privacy.value!r} carries no embedding",
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_escalation_embedding_must_be_finite(bad: float) -> None:
    embedding = _embedding()
    embedding[1, 2] = bad
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    _refused(decode_escalation, encode(esc), "escalation.embedding: contains NaN or infinity")


@pytest.mark.parametrize(
    ("embedding", "fragment"),
    [
        (np.zeros((2, 4), np.uint8), "escalation.embedding.dtype: 'uint8', expected 'float32'"),
        (np.zeros((2, 2, 2), np.float32), "escalation.embedding.shape: [2, 2, 2] is not 1 or 2"),
        (np.zeros((), np.float32), "escalation.embedding.shape: [] is not 1 or 2 sizes"),
        (np.zeros(0, np.float32), "escalation.embedding: shape [0] has no values per embedding"),
        (np.zeros((2, 0), np.float32), "escalation.embedding: shape [2, 0] has no values"),
        (_embedding(3, 4), "escalation.embedding: 3 rows for 2 regions; a 2-D embedding has"),
        (_embedding(1, 4), "escalation.embedding: 1 rows for 2 regions"),
    ],
    ids=["uint8", "3-d", "0-d", "empty-vector", "empty-rows", "too-many-rows", "too-few-rows"],
)
def test_escalation_bad_embedding(embedding: np.ndarray, fragment: str) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    _refused(decode_escalation, encode(esc), fragment)


def test_escalation_embedding_not_an_array_map() -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING)
    _refused(
        decode_escalation,
        _patched(esc, embedding=[0.5, 0.25]),
        "escalation.embedding: expected an array map {dtype, shape, data}",
    )


def test_escalation_crop_dtype_checked() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    floats = dataclasses.replace(esc, crops=tuple(c.astype(np.float32) for c in esc.crops))
    _refused(
        decode_escalation, encode(floats), "escalation.crops[0].dtype: 'float32', expected 'uint8'"
    )


def test_escalation_too_many_crops() -> None:
    raw = msgpack.unpackb(encode(make_escalation()))
    raw["crops"] = [raw["crops"][0]] * (MAX_REGIONS + 1)
    _refused(
        decode_escalation, msgpack.packb(raw), f"escalation.crops: {MAX_REGIONS + 1} items, at most"
    )


# ------------------------------------------------------------------ dead-letter fields


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("data", "text", "dead_letter.data: expected binary data, got str"),
        ("data", None, "dead_letter.data: expected binary data, got NoneType"),
        ("stage", "s" * 65, "dead_letter.stage: longer than 64 characters"),
        ("site", b"site1", "dead_letter.site: expected a string, got bytes"),
        ("subject", "s" * 257, "dead_letter.subject: longer than 256 characters"),
        ("reason", "r" * 4097, "dead_letter.reason: longer than 4096 characters"),
        ("at", -1.0, "dead_letter.at: -1.0 is outside 0.0..inf"),
        ("at", "yesterday", "dead_letter.at: expected a number, got str"),
    ],
)
def test_dead_letter_bad_field(field: str, value: Any, fragment: str) -> None:
    _refused(decode_dead_letter, _patched(make_dead_letter(), **{field: value}), fragment)


def test_map_keys_must_be_strings() -> None:
    _refused(decode_frame, msgpack.packb({1: 1, "v": 1}), "frame: not valid msgpack")
