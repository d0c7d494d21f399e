"""The numbered test pattern survives H.264, resizing and JPEG; the camera's encoder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.camera.sources import open_source
from pipeline.camera.sources.image import resize
from pipeline.camera.sources.testpattern import BITS, number_of, pattern, write_video
from pipeline.inference.images import encode_jpeg


def decode(jpeg: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a JPEG"
    return bgr


@pytest.mark.parametrize("number", [0, 1, 5, 1000, 2**BITS - 1])
def test_a_number_reads_back_after_resizing_and_jpeg(number: int) -> None:
    picture = resize(pattern(number, 640, 360), 160, None)
    assert picture.shape == (90, 160, 3)
    jpeg = encode_jpeg(picture, 30).data
    assert jpeg[:3] == b"\xff\xd8\xff"
    assert number_of(cv2.cvtColor(decode(jpeg), cv2.COLOR_BGR2RGB)) == number


def test_a_picture_without_the_pattern_reads_as_none() -> None:
    assert number_of(np.full((240, 320, 3), 128, np.uint8)) is None
    assert number_of(np.zeros((240, 320), np.uint8)) is None


def test_jpeg_keeps_red_red() -> None:
    # RGB in, and a decoder that reads BGR sees blue last: the channels are not swapped.
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    bgr = decode(encode_jpeg(red, 95).data)
    assert bgr[8, 8, 2] > 200 and bgr[8, 8, 0] < 50


def test_a_written_video_holds_its_frames_in_order(tmp_path: Path) -> None:
    path = tmp_path / "p.ts"
    write_video(path, 30, width=640, height=360, start=100)
    with open_source(str(path)) as source:
        frames = list(source.frames())
    assert [number_of(f.image) for f in frames] == list(range(100, 130))
    assert {f.image.shape for f in frames} == {(360, 640, 3)}
