"""schemas.codec: every way a frame's fields can be wrong is refused.

Its image and regions, its numbers, the tiers of its ``path`` (a result's path too)
and the site and camera names that become subject tokens. Each refusal asserts
``SchemaError`` *and* a fragment of its message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest

from schemas.codec import decode_frame, decode_result, encode
from schemas.limits import MAX_REGIONS
from schemas.messages import Message, Region
from tests.unit.wire_samples import (
    DECODER_IDS,
    DECODERS,
    make_frame,
    make_result,
    patched,
    refused,
    sample_image,
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
    refused(decode_frame, data, "frame.image.shape: [True, True] is not 2 sizes in 0..65536")


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
