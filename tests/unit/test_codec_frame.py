"""schemas.codec: every way a frame's fields can be wrong is refused.

Its image and regions, its numbers, the tiers of its ``path`` (a result's path too)
and the site and camera names that become subject tokens. Each refusal asserts
``SchemaError`` *and* a fragment of its message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import decode_frame, decode_result, encode
from schemas.errors import SchemaError
from schemas.jsonform import to_json
from schemas.limits import MAX_REGIONS
from schemas.messages import Colour, Encoded, Encoding, Message, Region
from tests.unit.wire_samples import (
    DECODER_IDS,
    DECODERS,
    DELETE,
    make_frame,
    make_result,
    patched,
    refused,
    sample_colour,
    sample_image,
    sample_jpeg,
    sample_png,
    with_array,
)

# ------------------------------------------------------------------ frame fields


@pytest.mark.parametrize("field", ["dtype", "shape", "data"])
def test_frame_image_missing_array_field(field: str) -> None:
    raw = msgpack.unpackb(encode(make_frame()))
    del raw["image"][field]
    refused(decode_frame, msgpack.packb(raw), f"frame.image.{field}: missing")


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
    refused(decode_frame, patched(make_frame(), **{field: value}), fragment)


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
    refused(decode_frame, patched(make_frame(), **{field: value}), fragment)


def test_image_shape_with_bool_refused() -> None:
    data = with_array(make_frame(image=sample_image(1, 1)), "image", shape=[True, True])
    refused(decode_frame, data, "frame.image.shape: [True, True] is not 2 or 3 sizes in 0..65536")


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
    refused(decode_frame, patched(make_frame(), **{field: value}), fragment)


def test_frame_float32_image_refused() -> None:
    data = encode(make_frame(image=sample_image().astype(np.float32)))
    refused(decode_frame, data, "frame.image.dtype: 'float32', expected 'uint8'")


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
    refused(decode_frame, with_array(make_frame(), "image", dtype=dtype), fragment)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([6, 9], "frame.image: shape [6, 9] of uint8 needs 54 bytes, got 48"),
        ([4, 8], "frame.image: shape [4, 8] of uint8 needs 32 bytes, got 48"),
        ([0, 8], "frame.image: shape [0, 8] of uint8 needs 0 bytes, got 48"),
    ],
)
def test_frame_image_shape_does_not_match_data(shape: list[int], fragment: str) -> None:
    refused(decode_frame, with_array(make_frame(), "image", shape=shape), fragment)


def test_frame_image_data_not_binary() -> None:
    data = with_array(make_frame(), "image", data="x" * 48)
    refused(decode_frame, data, "frame.image.data: expected binary data, got str")


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([48], "frame.image.shape: [48] is not 2 or 3 sizes in 0..65536"),
        ([2, 4, 6], "frame.image.shape: [2, 4, 6] has 6 channels; a colour image is [rows, "),
        ([2, 4, 3, 2], "frame.image.shape: [2, 4, 3, 2] is not 2 or 3 sizes"),
        ([], "frame.image.shape: [] is not 2 or 3 sizes"),
        ([-6, -8], "frame.image.shape: [-6, -8] is not 2 or 3 sizes"),
        ([65537, 0], "frame.image.shape: [65537, 0] is not 2 or 3 sizes in 0..65536"),
        ([6.0, 8], "frame.image.shape: [6.0, 8] is not 2 or 3 sizes"),
        ([1] * 9, "frame.image.shape: 9 items, at most 8 allowed"),
    ],
)
def test_frame_image_wrong_ndim_or_sizes(shape: list[Any], fragment: str) -> None:
    refused(decode_frame, with_array(make_frame(), "image", shape=shape), fragment)


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
    refused(decode_frame, patched(make_frame(), regions=regions), fragment)


@pytest.mark.parametrize(
    "region", [[0, 0, 0, 1], [0, 0, 1, 0], [-1, 0, 1, 1], [0, -1, 1, 1], [0, 0, -2, 1]]
)
def test_frame_degenerate_region(region: list[int]) -> None:
    refused(
        decode_frame,
        patched(make_frame(), regions=[region]),
        f"frame.regions[0]: {region} needs x, y >= 0 and width, height >= 1",
    )


def test_region_filling_the_image_is_accepted() -> None:
    got = decode_frame(patched(make_frame(), regions=[[0, 0, 8, 6], [7, 5, 1, 1]]))
    assert got.regions == (Region(0, 0, 8, 6), Region(7, 5, 1, 1))


def test_too_many_regions() -> None:
    at_limit = [[0, 0, 1, 1]] * MAX_REGIONS
    assert len(decode_frame(patched(make_frame(), regions=at_limit)).regions) == MAX_REGIONS
    refused(
        decode_frame,
        patched(make_frame(), regions=[*at_limit, [0, 0, 1, 1]]),
        f"frame.regions: {MAX_REGIONS + 1} items, at most {MAX_REGIONS} allowed",
    )


# ------------------------------------------------------------------ colour and encoded images

JPEG = sample_jpeg().data
PNG = sample_png().data


def _colour_frame(colour: Colour = Colour.RGB) -> bytes:
    return encode(make_frame(image=sample_colour(), colour=colour))


def _jpeg_frame(**changes: Any) -> bytes:
    return encode(make_frame(image=sample_jpeg(), colour=Colour.RGB, regions=(), **changes))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            patched(_colour_frame(), colour="gray"),
            "frame.colour: 'gray' does not fit a 3-D image [rows, columns, 3]; it is 'rgb' or "
            "'bgr'",
        ),
        (
            patched(make_frame(), colour="rgb"),
            "frame.colour: 'rgb' does not fit a 2-D image [rows, columns]; it is 'gray'",
        ),
        (patched(make_frame(), colour="bgr"), "frame.colour: 'bgr' does not fit a 2-D image"),
        (
            patched(_jpeg_frame(), colour="bgr"),
            "frame.colour: 'bgr' does not fit an encoded image; an encoded image is 'rgb'",
        ),
        (patched(_jpeg_frame(), colour="gray"), "frame.colour: 'gray' does not fit an encoded"),
        (patched(make_frame(), colour="yuv"), "frame.colour: 'yuv' is not one of gray, rgb, bgr"),
        (patched(_colour_frame(), colour="RGB"), "frame.colour: 'RGB' is not one of gray, rgb"),
        (patched(make_frame(), colour=None), "frame.colour: None is not one of gray, rgb, bgr"),
        (patched(make_frame(), colour=DELETE), "frame.colour: missing"),
    ],
    ids=["3d-gray", "2d-rgb", "2d-bgr", "jpeg-bgr", "jpeg-gray", "yuv", "upper", "nil", "missing"],
)
def test_colour_must_fit_the_image(data: bytes, fragment: str) -> None:
    refused(decode_frame, data, fragment)


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        (
            [6, 8, 4],
            "frame.image.shape: [6, 8, 4] has 4 channels; a colour image is [rows, columns, 3]",
        ),
        ([6, 8, 1], "frame.image.shape: [6, 8, 1] has 1 channel;"),
        ([6, 8, 0], "frame.image.shape: [6, 8, 0] has 0 channels"),
        ([6, 8, 3, 1], "frame.image.shape: [6, 8, 3, 1] is not 2 or 3 sizes"),
    ],
)
def test_a_colour_image_has_three_channels(shape: list[int], fragment: str) -> None:
    refused(
        decode_frame,
        with_array(make_frame(image=sample_colour(), colour=Colour.RGB), "image", shape=shape),
        fragment,
    )


def test_a_four_channel_image_is_refused_as_sent() -> None:
    # RGBA as a writer would send it: the data fits the shape, the channels do not.
    rgba = make_frame(image=np.zeros((6, 8, 4), np.uint8), colour=Colour.RGB)
    refused(decode_frame, encode(rgba), "frame.image.shape: [6, 8, 4] has 4 channels")


def test_colour_image_regions_are_checked_against_rows_and_columns() -> None:
    frame = make_frame(image=sample_colour(), colour=Colour.BGR)
    refused(
        decode_frame,
        patched(frame, regions=[[5, 0, 4, 1]]),
        "frame.regions[0]: [5, 0, 4, 1] reaches outside the 8x6 image",
    )
    assert decode_frame(patched(frame, regions=[[0, 0, 8, 6]])).regions == (Region(0, 0, 8, 6),)


def _with_image(frame: bytes, image: Any) -> bytes:
    return patched(frame, image=image)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        ({"encoding": "gif", "data": JPEG}, "frame.image.encoding: 'gif' is not one of jpeg, png"),
        ({"encoding": "JPEG", "data": JPEG}, "frame.image.encoding: 'JPEG' is not one of jpeg"),
        ({"encoding": None, "data": JPEG}, "frame.image.encoding: None is not one of jpeg, png"),
        ({"encoding": "jpeg"}, "frame.image.data: missing"),
        (
            {"encoding": "jpeg", "data": "/9j/4AAQ"},
            "frame.image.data: expected binary data, got str",
        ),
        (
            {"encoding": "jpeg", "data": PNG},
            "frame.image.data: starts with 89 50 4E, not the jpeg signature FF D8 FF",
        ),
        (
            {"encoding": "png", "data": JPEG},
            "frame.image.data: starts with FF D8 FF E0 00 10 4A 46, not the png signature "
            "89 50 4E 47 0D 0A 1A 0A",
        ),
        (
            {"encoding": "jpeg", "data": b""},
            "frame.image.data: starts with nothing (empty), not the jpeg signature FF D8 FF",
        ),
        ({"encoding": "jpeg", "data": b"\xff\xd8"}, "frame.image.data: starts with FF D8, not the"),
        (
            {"encoding": "png", "data": PNG[:7]},
            "frame.image.data: starts with 89 50 4E 47 0D 0A 1A,",
        ),
        (
            [JPEG],
            "frame.image: expected an array map {dtype, shape, data} or an encoded image "
            "{encoding, data}",
        ),
        (JPEG, "frame.image: expected an array map {dtype, shape, data} or an encoded image"),
    ],
    ids=[
        "gif",
        "upper",
        "nil",
        "no-data",
        "str-data",
        "png-as-jpeg",
        "jpeg-as-png",
        "empty",
        "short-jpeg",
        "short-png",
        "list",
        "bare-bytes",
    ],
)
def test_encoded_image_refused(image: Any, fragment: str) -> None:
    refused(decode_frame, _with_image(_jpeg_frame(), image), fragment)


def test_an_encoded_map_is_told_apart_by_its_encoding_key() -> None:
    # An array map that also names an encoding is read as an encoded image.
    array = msgpack.unpackb(encode(make_frame()))["image"]
    refused(
        decode_frame,
        _with_image(_jpeg_frame(), {**array, "encoding": "png"}),
        "frame.image.data: starts with 00 07 0E 15 1C 23 2A 31, not the png signature",
    )
    # Keys a reader does not know are ignored, in an encoded map as anywhere.
    extra = {"encoding": "jpeg", "data": JPEG, "quality": 75}
    assert decode_frame(_with_image(_jpeg_frame(), extra)).image == sample_jpeg()


def test_regions_of_an_encoded_image_are_left_to_the_edge() -> None:
    # Its size is known only once decoded: the edge checks its regions then.
    far = (Region(0, 0, 16, 8), Region(1000, 2000, 30, 40))
    for image in (sample_jpeg(), sample_png()):
        frame = make_frame(image=image, colour=Colour.RGB, regions=far)
        assert decode_frame(encode(frame)).regions == far


def test_writers_refuse_a_colour_that_does_not_fit_with_the_readers_words() -> None:
    cases = [
        (make_frame(image=sample_colour()), "frame.colour: 'gray' does not fit a 3-D image"),
        (make_frame(colour=Colour.RGB), "frame.colour: 'rgb' does not fit a 2-D image"),
        (
            make_frame(image=sample_jpeg(), regions=()),
            "frame.colour: 'gray' does not fit an encoded image; an encoded image is 'rgb'",
        ),
    ]
    for frame, fragment in cases:
        for write in (encode, to_json):
            with pytest.raises(SchemaError, match=re.escape(fragment)):
                write(frame)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (Encoded(PNG, Encoding.JPEG), "frame.image.data: starts with 89 50 4E, not the jpeg"),
        (Encoded(b"", Encoding.PNG), "frame.image.data: starts with nothing (empty), not the png"),
        (Encoded(JPEG, "gif"), "frame.image.encoding: 'gif' is not one of jpeg, png"),  # type: ignore[arg-type]
        ([[0, 1]], "frame.image: expected a numpy array or Encoded, got list"),
    ],
    ids=["signature", "empty", "encoding", "list"],
)
def test_writers_refuse_an_image_readers_would(image: Any, fragment: str) -> None:
    frame = make_frame(image=image, colour=Colour.RGB, regions=())
    for write in (encode, to_json):
        with pytest.raises(SchemaError, match=re.escape(fragment)):
            write(frame)


def test_encoding_and_colour_given_as_plain_strings_are_written() -> None:
    frame = make_frame(image=Encoded(JPEG, "jpeg"), colour="rgb", regions=())  # type: ignore[arg-type]
    got = decode_frame(encode(frame))
    assert got.image == sample_jpeg() and got.colour is Colour.RGB
    for write in (encode, to_json):
        with pytest.raises(SchemaError, match=r"frame\.colour: 'yuv' is not one of gray, rgb, bgr"):
            write(make_frame(colour="yuv"))


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
    refused(decode_frame, patched(make_frame(), path=path), f"frame.{fragment}")


@pytest.mark.parametrize(("path", "fragment"), PATH_CASES)
def test_result_bad_path(path: Any, fragment: str) -> None:
    # A cloud answer, so that a path that ends in "cloud" fails only for the fault shown.
    refused(decode_result, patched(make_result(), path=path), f"result.{fragment}")


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
    assert decode_frame(patched(make_frame(), path=path)).path == tuple(path)


@pytest.mark.parametrize(
    ("source", "path"),
    [("edge", ["device", "edge", "cloud"]), ("cloud", ["device", "edge"]), ("device", ["edge"])],
)
def test_result_path_ends_with_its_source(source: str, path: list[str]) -> None:
    refused(
        decode_result,
        patched(make_result(), source=source, path=path),
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
    refused(
        decode,
        patched(make(), **{field: token}),
        f"{kind}.{field}: {token!r} is not a valid name; use 1-64 letters, digits",
    )


def test_longest_valid_token_is_accepted() -> None:
    token = "A-z_9" * 12 + "abcd"
    assert len(token) == 64
    assert decode_frame(patched(make_frame(), site=token, camera=token)).site == token
