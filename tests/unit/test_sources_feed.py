"""One camera's feed without NATS: rate, order, size, dropping, looping, reconnecting.

Sources are real files written with PyAV, or fakes for a live stream that fails.
Every check counts frames; none times them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.camera.feed import Backoff, CameraImage, Feed
from pipeline.camera.sources import DecodedFrame, SourceError, VideoCamera, VideoSource
from pipeline.camera.sources.metrics import CameraMetrics
from pipeline.camera.sources.testpattern import number_of, pattern, write_video
from tests.helpers import wait_until

FRAMES = 50  # 2 s at 25 fps
FAST = Backoff(0.01, 0.04)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "pattern.mp4"
    write_video(path, FRAMES, width=320, height=240, fps=25)
    return path


def picture(image: CameraImage) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(image.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a JPEG"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def number(image: CameraImage) -> int:
    """The pattern's number in a frame the feed handed over."""
    found = number_of(picture(image))
    assert found is not None, "the frame shows no pattern"
    return found


async def collect(feed: Feed, *, limit: int | None = None) -> list[CameraImage]:
    """Every frame the feed hands over (stopping it after ``limit``), within 15 s."""
    got: list[CameraImage] = []

    async def consume(image: CameraImage) -> bool:
        got.append(image)
        if limit is not None and len(got) >= limit:
            feed.stop()
        return True

    await asyncio.wait_for(feed.run(consume), 15)
    return got


async def test_a_file_gives_its_frames_in_order_and_accounts_for_each(video: Path) -> None:
    feed = Feed(VideoCamera("cam1", str(video), rate_hz=25.0))
    got = await collect(feed)
    numbers = [number(i) for i in got]
    # Played in real time, a frame is dropped only if the loop stalls for a frame's
    # time, and the last never is (the slot keeps the newest).
    assert numbers == sorted(set(numbers)) and numbers[-1] == FRAMES - 1
    assert {(i.width, i.height) for i in got} == {(320, 240)}
    assert [i.time_s for i in got] == [pytest.approx(n / 25) for n in numbers]
    counts = feed.counts
    assert (counts.decoded, counts.skipped, counts.reconnects) == (FRAMES, 0, 0)
    assert counts.published == len(got) == FRAMES - counts.dropped


async def test_a_lower_rate_skips_frames_by_count(video: Path) -> None:
    metrics = CameraMetrics()
    camera = VideoCamera("cam1", f"file://{video}", rate_hz=5.0, realtime=False)
    feed = Feed(camera, metrics=metrics)
    numbers = [number(i) for i in await collect(feed)]
    # 2 s at 5 a second: frames 0, 5, ..., 45 are sent, whatever the consumer's pace.
    assert set(numbers) <= set(range(0, FRAMES, 5)) and numbers == sorted(numbers)
    assert (feed.counts.skipped, feed.counts.published + feed.counts.dropped) == (40, 10)
    assert metrics.value("hybridfleet_camera_skipped_frames_total", camera="cam1") == 40
    assert metrics.value("hybridfleet_camera_published_frames_total", camera="cam1") == len(numbers)


async def test_frames_are_resized_before_encoding(video: Path) -> None:
    camera = VideoCamera("cam1", str(video), rate_hz=5.0, realtime=False, width=160)
    got = await collect(Feed(camera))
    assert {(i.width, i.height) for i in got} == {(160, 120)}
    assert picture(got[0]).shape == (120, 160, 3)
    assert {number(i) for i in got} <= set(range(0, FRAMES, 5))


async def test_a_busy_consumer_gets_the_newest_frame_and_the_rest_are_dropped(
    video: Path,
) -> None:
    metrics = CameraMetrics()
    camera = VideoCamera("cam1", str(video), rate_hz=25.0, realtime=False)
    feed = Feed(camera, metrics=metrics)
    got: list[int] = []

    async def consume(image: CameraImage) -> bool:
        got.append(number(image))
        if len(got) == 1:  # busy until every frame is read
            await wait_until(lambda: feed.counts.decoded >= FRAMES, 10, "every frame read")
        return True

    await asyncio.wait_for(feed.run(consume), 15)
    # One frame in hand, one waiting: every frame in between was superseded.
    assert len(got) == 2 and got[1] == FRAMES - 1
    assert feed.counts.dropped == FRAMES - 2
    dropped = metrics.value(
        "hybridfleet_camera_dropped_frames_total", camera="cam1", reason="superseded"
    )
    assert dropped == FRAMES - 2


async def test_a_looped_file_plays_again(video: Path) -> None:
    camera = VideoCamera("cam1", str(video), rate_hz=5.0, realtime=False, loop=True)
    feed = Feed(camera)
    numbers = [number(i) for i in await collect(feed, limit=25)]
    assert set(numbers) <= set(range(0, FRAMES, 5))  # 5 a second, every pass alike
    passes = 1 + sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    assert passes >= 2 and feed.counts.decoded > FRAMES
    assert feed.counts.reconnects == 0


async def test_a_file_that_cannot_be_read_ends_the_feed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    feed = Feed(VideoCamera("cam1", str(broken)))
    with pytest.raises(SourceError, match="cannot open"):
        await collect(feed)
    assert feed.counts.reconnects == 0


class FlakyStream(VideoSource):
    """A live stream that shows ``frames`` pictures, each once the one before was
    taken (``taken``: so that none is superseded), then fails or ends."""

    backend = "fake"

    def __init__(self, start: int, frames: int, *, fail: bool, taken: threading.Semaphore) -> None:
        self._start, self._frames, self._fail, self._taken = start, frames, fail, taken

    def frames(self) -> Iterator[DecodedFrame]:
        for i in range(self._start, self._start + self._frames):
            yield DecodedFrame(pattern(i, 64, 48), i / 25)
            assert self._taken.acquire(timeout=5)
        if self._fail:
            raise SourceError("reading rtsp://cam/x failed: connection reset", retriable=True)

    def close(self) -> None:
        pass


async def test_a_lost_live_stream_is_reopened_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = CameraMetrics()
    opened: list[int] = []
    taken = threading.Semaphore(0)

    def opener(camera: VideoCamera) -> VideoSource:
        attempt = len(opened)
        opened.append(attempt)
        if attempt in (1, 2):  # down for two attempts after the first loss
            raise SourceError("rtsp://cam/x: connection refused", retriable=True)
        return FlakyStream(attempt * 100, 5, fail=attempt == 0, taken=taken)

    camera = VideoCamera("door", "rtsp://cam/x", rate_hz=1000.0)
    feed = Feed(camera, metrics=metrics, backoff=FAST, opener=opener)
    numbers: list[int] = []

    async def consume(image: CameraImage) -> bool:
        numbers.append(number(image))
        if len(numbers) == 12:
            feed.stop()
        taken.release()
        return True

    with caplog.at_level(logging.WARNING, logger="pipeline.camera.feed"):
        await asyncio.wait_for(feed.run(consume), 15)
    assert numbers[:5] == [0, 1, 2, 3, 4]
    assert numbers[5:10] == [300, 301, 302, 303, 304]  # after the failure, two refusals
    assert numbers[10:12] == [400, 401]  # the stream ended: reopened again
    assert feed.counts.reconnects == 4
    assert metrics.value("hybridfleet_camera_reconnects_total", camera="door") == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[:4] == [
        "camera door: reading rtsp://cam/x failed: connection reset; reconnecting in 0.0 s",
        "camera door: rtsp://cam/x: connection refused; reconnecting in 0.0 s",
        "camera door: rtsp://cam/x: connection refused; reconnecting in 0.0 s",
        "camera door: the stream ended; reconnecting in 0.0 s",
    ]


def test_the_backoff_doubles_up_to_its_cap() -> None:
    delays = Backoff().delays()
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


async def test_stopping_a_camera_whose_stream_is_down() -> None:
    def refused(camera: VideoCamera) -> VideoSource:
        raise SourceError("rtsp://cam/x: connection refused", retriable=True)

    feed = Feed(VideoCamera("door", "rtsp://cam/x"), backoff=Backoff(0.01, 0.02), opener=refused)
    task = asyncio.create_task(collect(feed))
    await wait_until(lambda: feed.counts.reconnects >= 3, 10, "three reconnects")
    feed.stop()
    assert await task == []
