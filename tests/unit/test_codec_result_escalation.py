"""schemas.codec: every way a result's or an escalation's fields can be wrong is refused.

A result's scores against its labels; an escalation's payload against its privacy
class (crops, the image or an embedding, never more than that class allows). Each
refusal asserts ``SchemaError`` *and* a fragment of its message.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import decode_escalation, decode_result, encode
from schemas.errors import SchemaError
from schemas.jsonform import from_json, to_json
from schemas.limits import MAX_DETECTIONS, MAX_LINES, MAX_REGIONS
from schemas.messages import Encoded, Encoding, InferenceResult, PrivacyClass, Region
from tests.unit.wire_samples import (
    DELETE,
    make_detection,
    make_escalation,
    make_line,
    make_result,
    patched,
    raws,
    refused,
    sample_colour,
    sample_embedding,
    sample_image,
    sample_jpeg,
    sample_png,
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


def test_result_scores_of_no_classifier_rows_may_be_0_by_0() -> None:
    # A detector's or a text reader's result: no labels, scores of shape (0, 0).
    result = make_result(
        labels=(), scores=np.zeros((0, 0), np.float32), edge_labels=None, path=("cloud",)
    )
    got = decode_result(encode(result))
    assert got.labels == () and got.scores.shape == (0, 0) and got.label is None
    assert from_json(InferenceResult, to_json(result)).scores.shape == (0, 0)
    refused(decode_result, with_array(result, "scores", shape=[1, 0]), "1 rows for 0 labels")


# ------------------------------------------------------------------ detections and lines


def _detections(*items: Any) -> bytes:
    return patched(make_result(), detections=list(items))


def _lines(*items: Any) -> bytes:
    return patched(make_result(), lines=list(items))


DETECTION = {"box": [1, 2, 3, 4], "label": "person", "label_index": 0, "score": 0.875,
             "source": "edge"}  # fmt: skip
LINE = {"box": [0, 1, 8, 2], "text": "HF-2024", "confidence": 0.75, "source": "edge"}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"score": 1.5}, "result.detections[0].score: 1.5 is outside 0.0..1.0"),
        ({"score": -0.125}, "result.detections[0].score: -0.125 is outside 0.0..1.0"),
        ({"score": math.nan}, "result.detections[0].score: nan is not a finite number"),
        ({"score": math.inf}, "result.detections[0].score: inf is not a finite number"),
        ({"score": "0.5"}, "result.detections[0].score: expected a number, got str"),
        ({"score": True}, "result.detections[0].score: expected a number, got bool"),
        ({"label_index": 1000}, "result.detections[0].label_index: 1000 is outside 0..999"),
        ({"label_index": -1}, "result.detections[0].label_index: -1 is outside 0..999"),
        ({"label_index": 1.0}, "result.detections[0].label_index: expected an integer, got float"),
        ({"label_index": True}, "result.detections[0].label_index: expected an integer, got bool"),
        ({"label": ""}, "result.detections[0].label: shorter than 1 character"),
        ({"label": "x" * 129}, "result.detections[0].label: longer than 128 characters"),
        ({"label": b"car"}, "result.detections[0].label: expected a string, got bytes"),
        ({"label": None}, "result.detections[0].label: expected a string, got NoneType"),
        ({"source": "fog"}, "result.detections[0].source: 'fog' is not one of device, edge"),
        ({"box": [1, 2, 3]}, "result.detections[0].box: expected [x, y, width, height] integers"),
        ({"box": [1, 2, 0, 4]}, "result.detections[0].box: [1, 2, 0, 4] needs x, y >= 0 and"),
        ({"box": [-1, 2, 3, 4]}, "result.detections[0].box: [-1, 2, 3, 4] needs x, y >= 0"),
        ({"box": [1.0, 2, 3, 4]}, "result.detections[0].box: expected [x, y, width, height]"),
        ({"box": DELETE}, "result.detections[0].box: missing"),
        ({"score": DELETE}, "result.detections[0].score: missing"),
        ({"label_index": DELETE}, "result.detections[0].label_index: missing"),
    ],
)
def test_detection_refused(changes: dict[str, Any], fragment: str) -> None:
    detection = {k: v for k, v in {**DETECTION, **changes}.items() if v is not DELETE}
    refused(decode_result, _detections(DETECTION, detection), fragment.replace("[0]", "[1]"))


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"text": "x" * 257}, "result.lines[0].text: longer than 256 characters"),
        ({"text": None}, "result.lines[0].text: expected a string, got NoneType"),
        ({"text": b"HF"}, "result.lines[0].text: expected a string, got bytes"),
        ({"confidence": 1.0000001}, "result.lines[0].confidence: 1.0000001 is outside 0.0..1.0"),
        ({"confidence": math.nan}, "result.lines[0].confidence: nan is not a finite number"),
        ({"source": "EDGE"}, "result.lines[0].source: 'EDGE' is not one of device, edge, cloud"),
        ({"box": [0, 0, 1, 0]}, "result.lines[0].box: [0, 0, 1, 0] needs x, y >= 0 and"),
        ({"box": "0,1,8,2"}, "result.lines[0].box: expected [x, y, width, height] integers"),
        ({"text": DELETE}, "result.lines[0].text: missing"),
        ({"confidence": DELETE}, "result.lines[0].confidence: missing"),
    ],
)
def test_text_line_refused(changes: dict[str, Any], fragment: str) -> None:
    line = {k: v for k, v in {**LINE, **changes}.items() if v is not DELETE}
    refused(decode_result, _lines(line), fragment)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_detections([DETECTION]), "result.detections[0]: expected a map, got list"),
        (_detections("person"), "result.detections[0]: expected a map, got str"),
        (patched(make_result(), detections=DETECTION), "result.detections: expected a list, got"),
        (patched(make_result(), detections=None), "result.detections: expected a list, got None"),
        (patched(make_result(), detections=DELETE), "result.detections: missing"),
        (_lines(None), "result.lines[0]: expected a map, got NoneType"),
        (patched(make_result(), lines="HF-2024"), "result.lines: expected a list, got str"),
        (patched(make_result(), lines=DELETE), "result.lines: missing"),
    ],
    ids=[
        "det-list",
        "det-str",
        "det-map",
        "det-nil",
        "det-missing",
        "line-nil",
        "lines-str",
        "lines-missing",
    ],
)
def test_detections_and_lines_are_lists_of_maps(data: bytes, fragment: str) -> None:
    refused(decode_result, data, fragment)


def test_too_many_detections_or_lines() -> None:
    full = patched(make_result(), detections=[DETECTION] * MAX_DETECTIONS, lines=[LINE] * MAX_LINES)
    got = decode_result(full)
    assert (len(got.detections), len(got.lines)) == (300, 300) == (MAX_DETECTIONS, MAX_LINES)
    refused(
        decode_result,
        _detections(*[DETECTION] * (MAX_DETECTIONS + 1)),
        "result.detections: 301 items, at most 300 allowed",
    )
    refused(
        decode_result, _lines(*[LINE] * (MAX_LINES + 1)), "result.lines: 301 items, at most 300"
    )


def test_text_of_any_unicode_up_to_256_characters_is_accepted() -> None:
    texts = ["", " ", "Straße 12", "東京都 1-2", "🚗 AB-123", "x" * 256, "é" * 256, "a\tb\n"]
    got = decode_result(_lines(*[{**LINE, "text": t} for t in texts]))
    assert [line.text for line in got.lines] == texts
    labels = ["x", "traffic light", "café", "y" * 128]
    got = decode_result(_detections(*[{**DETECTION, "label": t} for t in labels]))
    assert [d.label for d in got.detections] == labels


@pytest.mark.parametrize(
    ("result", "fragment"),
    [
        (
            make_result(detections=(make_detection(score=1.5),)),
            "result.detections[0].score: 1.5 is outside 0.0..1.0",
        ),
        (
            make_result(detections=(make_detection(), make_detection(score=math.nan))),
            "result.detections[1].score: nan is not a finite number",
        ),
        (
            make_result(detections=(make_detection(label_index=1000),)),
            "result.detections[0].label_index: 1000 is outside 0..999",
        ),
        (make_result(detections=(make_detection(label=""),)), "label: shorter than 1 character"),
        (
            make_result(lines=(make_line(text="x" * 257),)),
            "result.lines[0].text: longer than 256 characters",
        ),
        (
            make_result(lines=(make_line(confidence=-0.5),)),
            "result.lines[0].confidence: -0.5 is outside 0.0..1.0",
        ),
        (
            make_result(detections=(make_detection(),) * (MAX_DETECTIONS + 1)),
            "result.detections: 301 items, at most 300 allowed",
        ),
        (
            make_result(detections=(make_detection(score="high"),)),
            "result.detections[0].score: expected a number, got str",
        ),
        (
            make_result(detections=(make_detection(box=Region(0, 0, 0, 1)),)),
            "result.detections[0].box: [0, 0, 0, 1] needs x, y >= 0 and width, height >= 1",
        ),
    ],
)
def test_writers_refuse_detections_and_lines_readers_would(
    result: InferenceResult, fragment: str
) -> None:
    for write in (encode, to_json):
        with pytest.raises(SchemaError, match=re.escape(fragment)):
            write(result)


def test_numpy_numbers_in_detections_are_written_as_python_numbers() -> None:
    detection = make_detection(
        box=Region(*(np.int64(v) for v in (1, 2, 3, 4))),  # type: ignore[arg-type]
        label_index=np.int32(7),
        score=np.float32(0.5),
    )
    got = decode_result(encode(make_result(detections=(detection,)))).detections[0]
    assert got == make_detection(label_index=7, score=0.5)
    assert type(got.score) is float and type(got.label_index) is int and type(got.box.x) is int


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
    refused(
        decode_escalation,
        encode(esc),
        "escalation.regions[1]: [7, 5, 2, 1] reaches outside the 8x6 image",
    )


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
    floats = dataclasses.replace(esc, crops=tuple(c.astype(np.float32) for c in raws(esc.crops)))
    refused(
        decode_escalation, encode(floats), "escalation.crops[0].dtype: 'float32', expected 'uint8'"
    )


def test_escalation_too_many_crops() -> None:
    raw = msgpack.unpackb(encode(make_escalation()))
    raw["crops"] = [raw["crops"][0]] * (MAX_REGIONS + 1)
    refused(
        decode_escalation, msgpack.packb(raw), f"escalation.crops: {MAX_REGIONS + 1} items, at most"
    )


# ------------------------------------------------------------------ escalation pixels


def test_escalation_crop_count_must_match_regions_with_encoded_crops() -> None:
    esc = make_escalation(PrivacyClass.CROP, crops=(sample_jpeg(0),))
    refused(decode_escalation, encode(esc), "got 1 crops for 2 regions")
    three = dataclasses.replace(esc, crops=(sample_jpeg(0), sample_jpeg(1), sample_png()))
    refused(decode_escalation, encode(three), "got 3 crops for 2 regions")


def test_escalation_colour_crops_must_match_their_regions() -> None:
    image = sample_colour()
    esc = make_escalation(PrivacyClass.CROP)
    crops = tuple(r.crop(image) for r in esc.regions)
    assert [c.shape for c in crops] == [(3, 4, 3), (5, 5, 3)]
    refused(
        decode_escalation,
        encode(dataclasses.replace(esc, crops=crops[::-1])),
        "escalation.crops[0]: shape [5, 5, 3] does not match region [0, 0, 4, 3]",
    )
    rgba = (crops[0], np.zeros((5, 5, 4), np.uint8))
    refused(
        decode_escalation,
        encode(dataclasses.replace(esc, crops=rgba)),
        "escalation.crops[1].shape: [5, 5, 4] has 4 channels",
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        (
            {"crops": (sample_jpeg(0), Encoded(sample_png().data, Encoding.JPEG))},
            "escalation.crops[1].data: starts with 89 50 4E, not the jpeg signature FF D8 FF",
        ),
    ],
)
def test_escalation_encoded_crop_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(fragment)):
        encode(make_escalation(PrivacyClass.CROP, **changes))


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("crops", [{"encoding": "bmp", "data": b"BM"}] * 2, "escalation.crops[0].encoding: 'bmp'"),
        (
            "crops",
            [{"encoding": "png", "data": b"\xff\xd8\xff"}] * 2,
            "escalation.crops[0].data: starts with FF D8 FF, not the png signature",
        ),
        ("image", {"encoding": "tiff", "data": b"II*"}, "escalation.image.encoding: 'tiff' is not"),
        ("image", {"encoding": "jpeg", "data": b""}, "escalation.image.data: starts with nothing"),
    ],
)
def test_escalation_encoded_pixels_refused_by_readers(
    field: str, value: Any, fragment: str
) -> None:
    privacy = PrivacyClass.CROP if field == "crops" else PrivacyClass.FULL
    refused(decode_escalation, patched(make_escalation(privacy), **{field: value}), fragment)


def test_escalation_encoded_pixels_are_checked_by_the_cloud_once_decoded() -> None:
    # Nothing tells the reader an encoded crop's or image's size; the cloud decodes it.
    crops = make_escalation(PrivacyClass.CROP, crops=(sample_png(7, 7), sample_jpeg(1)))
    assert decode_escalation(encode(crops)).crops == crops.crops
    far = (Region(0, 0, 4, 3), Region(500, 500, 9, 9))
    full = make_escalation(PrivacyClass.FULL, image=sample_jpeg(), regions=far)
    got = decode_escalation(encode(full))
    assert got.image == sample_jpeg() and got.regions == far
    with pytest.raises(SchemaError, match="decode an encoded image before cutting its regions"):
        got.region_pixels()
    assert crops.region_pixels() == list(crops.crops)
