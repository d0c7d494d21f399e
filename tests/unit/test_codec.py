"""schemas.codec: round trips keep every field; the encoder refuses what it cannot send.

What every message must be to be read is in test_codec_envelope.py; every way a frame,
a result or an escalation can be wrong, in test_codec_frame.py and
test_codec_result_escalation.py. Each refusal asserts ``SchemaError`` *and* a fragment
of its message, so the message keeps saying which field is wrong and why.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from schemas.codec import decode_dead_letter, decode_escalation, decode_frame, decode_result, encode
from schemas.errors import HybridfleetError, SchemaError
from schemas.jsonform import from_json, to_json
from schemas.limits import (
    DEAD_LETTER_MAX_BYTES,
    DEFAULT_MAX_BYTES,
    MAX_CLASSES,
    MAX_REGIONS,
    RAW_1080P_RGB_BYTES,
    max_pixel_bytes,
)
from schemas.messages import (
    Colour,
    Encoded,
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Region,
    Source,
)
from tests.unit.wire_samples import (
    assert_same,
    make_dead_letter,
    make_detection,
    make_escalation,
    make_frame,
    make_line,
    make_result,
    patched,
    raw,
    raws,
    refused,
    sample_colour,
    sample_embedding,
    sample_image,
    sample_jpeg,
    sample_png,
    shares_received_bytes,
)

# ------------------------------------------------------------------ round trips


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
    assert_same(got, frame)
    assert isinstance(got.privacy, PrivacyClass)
    assert all(type(r) is Region for r in got.regions)
    assert got.deadline_at == frame.deadline_at
    assert all(type(t) is Source for t in got.path)


def test_frame_image_is_read_only_view_of_received_bytes() -> None:
    got = decode_frame(encode(make_frame()))
    image = raw(got.image)
    assert image.flags.writeable is False
    assert image.flags.owndata is False
    assert shares_received_bytes(image)
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0] = 1
    # crops are views of that same memory
    assert all(np.shares_memory(c, got.image) for c in got.crops())


def test_frame_non_contiguous_image_round_trips() -> None:
    big = sample_image(12, 16)
    strided = big[::2, 1::2]
    fortran = np.asfortranarray(sample_image())
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    for image in (strided, fortran):
        got = decode_frame(encode(make_frame(image=image)))
        assert np.array_equal(raw(got.image), image)


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
    assert_same(got, result)
    assert got.label == result.label
    assert isinstance(got.source, Source) and isinstance(got.reason, Reason)
    assert all(type(t) is Source for t in got.path)


def test_result_scores_read_only_and_big_endian_is_normalised() -> None:
    scores = np.array([[0.125, 0.875]], dtype=">f4")
    got = decode_result(encode(make_result(labels=(1,), scores=scores, edge_labels=None)))
    assert got.scores.dtype == np.dtype("<f4")
    assert got.scores.tolist() == [[0.125, 0.875]]
    assert got.scores.flags.writeable is False
    assert shares_received_bytes(got.scores)


def test_escalation_crop_round_trip() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    got = decode_escalation(encode(esc))
    assert_same(got, esc)
    assert got.image is None
    assert len(got.crops) == 2
    for crop in raws(got.crops):
        assert crop.flags.writeable is False
        assert shares_received_bytes(crop)
    pixels = raws(got.region_pixels())
    assert [p.tolist() for p in pixels] == [c.tolist() for c in raws(esc.crops)]


def test_escalation_full_round_trip() -> None:
    esc = make_escalation(PrivacyClass.FULL)
    got = decode_escalation(encode(esc))
    assert_same(got, esc)
    assert got.crops == ()
    assert got.image is not None
    assert raw(got.image).flags.writeable is False
    assert shares_received_bytes(raw(got.image))
    want = [r.crop(raw(esc.image)).tolist() for r in esc.regions]
    assert [p.tolist() for p in raws(got.region_pixels())] == want


@pytest.mark.parametrize(
    "embedding",
    [sample_embedding(2, 4), sample_embedding(1, 16)[0], sample_embedding(2, 1)],
    ids=["per-region", "one-vector", "width-1"],
)
def test_escalation_embedding_round_trip(embedding: np.ndarray) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    got = decode_escalation(encode(esc))
    assert_same(got, esc)
    assert got.crops == () and got.image is None
    assert got.embedding is not None
    assert got.embedding.dtype == np.dtype("<f4")
    assert got.embedding.flags.writeable is False
    assert shares_received_bytes(got.embedding)


def test_escalation_embedding_with_no_regions_round_trips() -> None:
    esc = make_escalation(
        PrivacyClass.EMBEDDING, regions=(), edge_labels=(), embedding=np.zeros((0, 4), np.float32)
    )
    assert_same(decode_escalation(encode(esc)), esc)


def test_embedding_escalation_has_no_region_pixels() -> None:
    with pytest.raises(SchemaError, match="privacy 'embedding' carries no pixels"):
        make_escalation(PrivacyClass.EMBEDDING).region_pixels()


def test_escalation_with_no_regions_round_trips() -> None:
    esc = make_escalation(regions=(), crops=(), edge_labels=())
    assert_same(decode_escalation(encode(esc)), esc)


# ------------------------------------------------------------------ colour, encoded, detections

V3_FRAMES = [
    make_frame(image=sample_colour(), colour=Colour.RGB),
    make_frame(image=sample_colour(), colour=Colour.BGR, regions=()),
    make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=()),
    make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=(Region(0, 0, 16, 8),)),
    make_frame(image=sample_png(), colour=Colour.RGB, privacy=PrivacyClass.CROP),
    make_frame(image=sample_image(), regions=()),
    make_frame(image=np.zeros((0, 0, 3), np.uint8), colour=Colour.RGB, regions=()),
]
V3_FRAME_IDS = ["rgb", "bgr-no-regions", "jpeg", "jpeg-region", "png", "gray-detector",
                "empty-rgb"]  # fmt: skip


@pytest.mark.parametrize("frame", V3_FRAMES, ids=V3_FRAME_IDS)
def test_v3_frame_round_trip_in_both_forms(frame: Frame) -> None:
    for got in (decode_frame(encode(frame)), from_json(Frame, to_json(frame))):
        assert_same(got, frame)
        assert type(got.colour) is Colour
        if isinstance(frame.image, Encoded):
            assert isinstance(got.image, Encoded)
            assert type(got.image.data) is bytes and got.image.encoding is frame.image.encoding
        elif raw(got.image).size:  # (an empty array shares no memory with anything)
            assert shares_received_bytes(raw(got.image))


def test_colour_frame_crops_keep_their_channels() -> None:
    got = decode_frame(encode(make_frame(image=sample_colour(), colour=Colour.RGB)))
    assert [c.shape for c in got.crops()] == [(3, 4, 3), (3, 4, 3)]
    with pytest.raises(SchemaError, match="an encoded image has no crops until it is decoded"):
        decode_frame(encode(V3_FRAMES[2])).crops()


def test_a_raw_1080p_rgb_frame_fits_the_default_limit_in_both_forms() -> None:
    # The largest frame the defaults promise to carry, with every region a frame may have.
    image = np.full((1080, 1920, 3), 0xFB, np.uint8)
    assert image.nbytes == RAW_1080P_RGB_BYTES <= max_pixel_bytes(json=True) < max_pixel_bytes()
    frame = make_frame(
        image=image,
        colour=Colour.RGB,
        regions=(Region(1919, 1079, 1, 1),) * MAX_REGIONS,
        frame_id="f" * 128,
        site="s" * 64,
        camera="c" * 64,
    )
    packed, text = encode(frame), to_json(frame)
    assert len(packed) < len(text) <= DEFAULT_MAX_BYTES
    assert raw(decode_frame(packed).image).shape == (1080, 1920, 3)
    assert raw(from_json(Frame, text).image).shape == (1080, 1920, 3)
    # What max_pixel_bytes promises, filled to the byte, still fits.
    for size, write in ((max_pixel_bytes(), encode), (max_pixel_bytes(json=True), to_json)):
        big = make_frame(image=np.zeros((1, size), np.uint8), regions=frame.regions)
        assert len(write(big)) <= DEFAULT_MAX_BYTES


@pytest.mark.parametrize(
    "result",
    [
        make_result(
            labels=(),
            scores=np.zeros((0, 0), np.float32),
            edge_labels=None,
            detections=(
                make_detection(),
                make_detection(
                    box=Region(0, 0, 1, 1),
                    label="traffic light",
                    label_index=MAX_CLASSES - 1,
                    score=1.0,
                    source=Source.CLOUD,
                ),
                make_detection(label="café", label_index=0, score=0.0, source=Source.DEVICE),
            ),
        ),
        make_result(
            labels=(),
            scores=np.zeros((0, 0), np.float32),
            lines=(
                make_line(),
                make_line(text="", confidence=0.0, source=Source.CLOUD),
                make_line(text="東京 1-2 🚗", confidence=1.0),
                make_line(text="x" * 256),
            ),
        ),
        # A classifier's answer, with a detection per region named by its label.
        make_result(
            detections=(
                make_detection(box=Region(0, 0, 4, 3), label="3", label_index=3, score=0.7),
                make_detection(box=Region(4, 3, 4, 3), label="9", label_index=9, score=0.5),
            ),
            lines=(make_line(),),
        ),
    ],
    ids=["detections", "lines", "classifier-and-both"],
)
def test_result_with_detections_and_lines_round_trips_in_both_forms(
    result: InferenceResult,
) -> None:
    for got in (decode_result(encode(result)), from_json(InferenceResult, to_json(result))):
        assert_same(got, result)
        assert all(type(d.source) is Source for d in got.detections)
        assert all(type(t.source) is Source for t in got.lines)


ENCODED_ESCALATIONS = [
    make_escalation(PrivacyClass.CROP, crops=(sample_jpeg(0), sample_jpeg(1))),
    make_escalation(PrivacyClass.CROP, crops=(sample_png(3, 4), sample_jpeg(1))),
    make_escalation(
        PrivacyClass.CROP,
        crops=(sample_colour()[0:3, 0:4], sample_jpeg(1)),
    ),
    make_escalation(
        PrivacyClass.CROP,
        crops=tuple(r.crop(sample_colour()) for r in make_escalation().regions),
    ),
    make_escalation(PrivacyClass.FULL, image=sample_jpeg()),
    make_escalation(PrivacyClass.FULL, image=sample_png(6, 8)),
    make_escalation(PrivacyClass.FULL, image=sample_colour()),
]


@pytest.mark.parametrize(
    "esc",
    ENCODED_ESCALATIONS,
    ids=[
        "jpeg-crops",
        "png-and-jpeg-crops",
        "raw-and-jpeg-crops",
        "rgb-crops",
        "full-jpeg",
        "full-png",
        "full-rgb",
    ],
)
def test_escalation_pixels_round_trip_in_both_forms(esc: Escalation) -> None:
    for got in (decode_escalation(encode(esc)), from_json(Escalation, to_json(esc))):
        assert_same(got, esc)
        if esc.privacy is PrivacyClass.CROP:
            assert len(got.region_pixels()) == len(got.regions)


# ------------------------------------------------------------------ Escalation.of_frame


def test_of_frame_sends_what_privacy_allows() -> None:
    frame = make_frame()
    crop = Escalation.of_frame(frame, PrivacyClass.CROP, "replies.site1.e", (1, 2), 0.5)
    assert crop.image is None and crop.embedding is None
    assert [c.tolist() for c in raws(crop.crops)] == [c.tolist() for c in frame.crops()]
    full = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1, 2), 0.5)
    assert full.image is frame.image and full.crops == () and full.embedding is None
    embedding = sample_embedding()
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
        assert_same(decode_escalation(encode(esc)), esc)


def test_of_frame_sends_the_pixels_of_a_bgr_frame_as_rgb() -> None:
    bgr = sample_colour()
    frame = make_frame(image=bgr, colour=Colour.BGR)
    full = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1, 2), 0.5)
    assert isinstance(full.image, np.ndarray) and np.shares_memory(full.image, bgr)
    assert np.array_equal(full.image, bgr[..., ::-1])
    crop = Escalation.of_frame(frame, PrivacyClass.CROP, "replies.site1.e", (1, 2), 0.5)
    assert [c.tolist() for c in raws(crop.crops)] == [
        r.crop(bgr[..., ::-1]).tolist() for r in frame.regions
    ]
    got = decode_escalation(encode(full))
    assert isinstance(got.image, np.ndarray)
    assert np.array_equal(got.image, bgr[..., ::-1])
    # An RGB frame is sent as it is.
    rgb = make_frame(image=bgr, colour=Colour.RGB)
    assert Escalation.of_frame(rgb, PrivacyClass.FULL, "replies.site1.e", (1,), 0.5).image is bgr


def test_of_frame_of_an_encoded_frame() -> None:
    frame = make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=(Region(0, 0, 8, 8),))
    full = Escalation.of_frame(frame, PrivacyClass.FULL, "replies.site1.e", (1,), 0.5)
    assert full.image == sample_jpeg() and full.crops == ()
    assert_same(decode_escalation(encode(full)), full)
    with pytest.raises(SchemaError, match="an encoded image has no crops until it is decoded"):
        Escalation.of_frame(frame, PrivacyClass.CROP, "replies.site1.e", (1,), 0.5)


@pytest.mark.parametrize(
    ("send", "embedding", "fragment"),
    [
        (PrivacyClass.EMBEDDING, None, "escalation.embedding: privacy 'embedding' needs an"),
        (PrivacyClass.CROP, sample_embedding(), "escalation.embedding: privacy 'crop' carries no"),
        (PrivacyClass.FULL, sample_embedding(), "escalation.embedding: privacy 'full' carries no"),
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
    assert DEAD_LETTER_MAX_BYTES == 2 * DEFAULT_MAX_BYTES == 16 << 20


def test_max_bytes_is_inclusive() -> None:
    data = encode(make_frame())
    assert decode_frame(data, max_bytes=len(data)).seq == 42
    refused(
        lambda d: decode_frame(d, max_bytes=len(data) - 1),
        data,
        f"frame: {len(data)} bytes is over the limit of {len(data) - 1}",
    )


def test_decoders_accept_bytearray_and_memoryview() -> None:
    data = encode(make_frame())
    assert decode_frame(bytearray(data)).seq == 42  # type: ignore[arg-type]
    assert decode_frame(memoryview(data)).seq == 42  # type: ignore[arg-type]


def test_schema_error_is_a_non_retriable_value_error() -> None:
    err = refused(decode_frame, b"\xc1", "frame: not valid msgpack")
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
    refused(decode_dead_letter, patched(make_dead_letter(), **{field: value}), fragment)
