"""schemas.codec: every way a result's or an escalation's fields can be wrong is refused.

A result's scores against its labels; an escalation's payload against its privacy
class (crops, the image or an embedding, never more than that class allows). Each
refusal asserts ``SchemaError`` *and* a fragment of its message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import decode_escalation, decode_result, encode
from schemas.limits import MAX_REGIONS
from schemas.messages import PrivacyClass, Region
from tests.unit.wire_samples import (
    make_escalation,
    make_result,
    patched,
    refused,
    sample_embedding,
    sample_image,
    with_array,
)

# ------------------------------------------------------------------ result fields


def test_result_scores_rows_must_match_labels() -> None:
    data = encode(make_result(labels=(1,)))  # two score rows
    refused(decode_result, data, "result.scores: 2 rows for 1 labels; need one per label")
    data = encode(make_result(labels=(1, 2, 3)))
    refused(decode_result, data, "result.scores: 2 rows for 3 labels")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_result_scores_must_be_finite(bad: float) -> None:
    scores = np.array([[0.5, 0.5], [0.2, bad]], dtype=np.float32)
    refused(decode_result, encode(make_result(scores=scores)), "result.scores: contains NaN")


def test_result_scores_must_be_float32() -> None:
    data = encode(make_result(scores=np.zeros((2, 3), np.uint8)))
    refused(decode_result, data, "result.scores.dtype: 'uint8', expected 'float32'")


def test_result_scores_must_be_2d() -> None:
    data = encode(make_result(labels=(1, 2, 3, 4, 5, 6), scores=np.zeros(6, np.float32)))
    refused(decode_result, data, "result.scores.shape: [6] is not 2 sizes")


def test_result_scores_data_length() -> None:
    data = with_array(make_result(), "scores", data=b"\x00" * 23)
    refused(decode_result, data, "result.scores: shape [2, 3] of float32 needs 24 bytes, got 23")


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
    refused(decode_result, patched(make_result(), **{field: value}), fragment)


# ------------------------------------------------------------------ escalation fields


def test_escalation_local_only_refused() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    refused(
        decode_escalation,
        patched(esc, privacy="local_only"),
        "escalation.privacy: a local_only frame must never be escalated",
    )


def test_escalation_crop_with_an_image_refused() -> None:
    esc = make_escalation(PrivacyClass.CROP, image=sample_image())
    refused(
        decode_escalation,
        encode(esc),
        "escalation: privacy 'crop' carries one crop per region and no image, "
        "got 2 crops for 2 regions and an image",
    )


def test_escalation_crop_count_must_match_regions() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    fewer = dataclasses.replace(esc, crops=esc.crops[:1])
    refused(decode_escalation, encode(fewer), "got 1 crops for 2 regions")
    none = dataclasses.replace(esc, crops=())
    refused(decode_escalation, encode(none), "got 0 crops for 2 regions")
    more = dataclasses.replace(esc, crops=(*esc.crops, esc.crops[0]))
    refused(decode_escalation, encode(more), "got 3 crops for 2 regions")


def test_escalation_crop_shape_must_match_its_region() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    swapped = dataclasses.replace(esc, crops=(esc.crops[1], esc.crops[0]))
    refused(
        decode_escalation,
        encode(swapped),
        "escalation.crops[0]: shape [5, 5] does not match region [0, 0, 4, 3]",
    )
    empty = dataclasses.replace(esc, crops=(esc.crops[0], np.zeros((0, 0), np.uint8)))
    refused(
        decode_escalation,
        encode(empty),
        "escalation.crops[1]: shape [0, 0] does not match region [2, 1, 5, 5]",
    )


def test_escalation_full_without_image_refused() -> None:
    esc = make_escalation(PrivacyClass.FULL, image=None)
    refused(
        decode_escalation, encode(esc), "escalation: privacy 'full' carries the image and no crops"
    )


def test_escalation_full_with_crops_refused() -> None:
    full = make_escalation(PrivacyClass.FULL)
    crops = make_escalation(PrivacyClass.CROP).crops
    refused(
        decode_escalation,
        encode(dataclasses.replace(full, crops=crops)),
        "escalation: privacy 'full' carries the image and no crops",
    )


def test_escalation_full_region_outside_image() -> None:
    esc = make_escalation(PrivacyClass.FULL, regions=(Region(0, 0, 1, 1), Region(7, 5, 2, 1)))
    refused(decode_escalation, encode(esc), "escalation.regions[1]: reaches outside the image")


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
    refused(decode_escalation, patched(make_escalation(), **{field: value}), fragment)


def test_escalation_embedding_without_an_embedding_refused() -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=None)
    refused(
        decode_escalation,
        encode(esc),
        "escalation.embedding: privacy 'embedding' needs an embedding, got nil",
    )


@pytest.mark.parametrize(
    ("changes", "got"),
    [
        ({"crops": make_escalation(PrivacyClass.CROP).crops}, "got 2 crops"),
        ({"image": sample_image()}, "got an image"),
        (
            {"crops": make_escalation(PrivacyClass.CROP).crops, "image": sample_image()},
            "got 2 crops and an image",
        ),
    ],
    ids=["crops", "image", "both"],
)
def test_escalation_embedding_with_pixels_refused(changes: dict[str, Any], got: str) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, **changes)
    refused(
        decode_escalation,
        encode(esc),
        f"escalation: privacy 'embedding' carries the embedding and no crops or image, {got}",
    )


@pytest.mark.parametrize("privacy", [PrivacyClass.CROP, PrivacyClass.FULL])
def test_escalation_with_pixels_and_an_embedding_refused(privacy: PrivacyClass) -> None:
    esc = make_escalation(privacy, embedding=sample_embedding())
    refused(
        decode_escalation,
        encode(esc),
        f"escalation.embedding: privacy {privacy.value!r} carries no embedding",
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_escalation_embedding_must_be_finite(bad: float) -> None:
    embedding = sample_embedding()
    embedding[1, 2] = bad
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    refused(decode_escalation, encode(esc), "escalation.embedding: contains NaN or infinity")


@pytest.mark.parametrize(
    ("embedding", "fragment"),
    [
        (np.zeros((2, 4), np.uint8), "escalation.embedding.dtype: 'uint8', expected 'float32'"),
        (np.zeros((2, 2, 2), np.float32), "escalation.embedding.shape: [2, 2, 2] is not 1 or 2"),
        (np.zeros((), np.float32), "escalation.embedding.shape: [] is not 1 or 2 sizes"),
        (np.zeros(0, np.float32), "escalation.embedding: shape [0] has no values per embedding"),
        (np.zeros((2, 0), np.float32), "escalation.embedding: shape [2, 0] has no values"),
        (sample_embedding(3, 4), "escalation.embedding: 3 rows for 2 regions; a 2-D embedding has"),
        (sample_embedding(1, 4), "escalation.embedding: 1 rows for 2 regions"),
    ],
    ids=["uint8", "3-d", "0-d", "empty-vector", "empty-rows", "too-many-rows", "too-few-rows"],
)
def test_escalation_bad_embedding(embedding: np.ndarray, fragment: str) -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING, embedding=embedding)
    refused(decode_escalation, encode(esc), fragment)


def test_escalation_embedding_not_an_array_map() -> None:
    esc = make_escalation(PrivacyClass.EMBEDDING)
    refused(
        decode_escalation,
        patched(esc, embedding=[0.5, 0.25]),
        "escalation.embedding: expected an array map {dtype, shape, data}",
    )


def test_escalation_crop_dtype_checked() -> None:
    esc = make_escalation(PrivacyClass.CROP)
    floats = dataclasses.replace(esc, crops=tuple(c.astype(np.float32) for c in esc.crops))
    refused(
        decode_escalation, encode(floats), "escalation.crops[0].dtype: 'float32', expected 'uint8'"
    )


def test_escalation_too_many_crops() -> None:
    raw = msgpack.unpackb(encode(make_escalation()))
    raw["crops"] = [raw["crops"][0]] * (MAX_REGIONS + 1)
    refused(
        decode_escalation, msgpack.packb(raw), f"escalation.crops: {MAX_REGIONS + 1} items, at most"
    )
