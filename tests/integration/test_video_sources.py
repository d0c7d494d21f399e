"""Real video sources end to end, on loopback: an RTSP stream cut and restarted, a
stream served over HTTP, and cameras publishing to a real nats-server.

The RTSP publisher runs in a process of its own, as a camera would (PyAV cannot push
and listen in one process: pipeline/camera/sources/pyav.py). Every check counts
frames; none times them.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.camera.feed import Backoff, CameraImage, Feed
from pipeline.camera.sources import VideoCamera, open_source
from pipeline.camera.sources.cameras import run_cameras
from pipeline.camera.sources.testpattern import number_of, pattern, write_video
from pipeline.inference.images import encode_jpeg
from schemas import subjects
from schemas.codec import decode_frame, encode
from schemas.errors import SchemaError
from schemas.messages import Colour, Encoded, Encoding, Frame
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def _codec_sends_jpeg() -> bool:
    """Whether ``schemas.codec`` carries a frame with an ``Encoded`` JPEG image."""
    jpeg = encode_jpeg(pattern(0, 16, 16), 80).data
    image = Encoded(jpeg, Encoding.JPEG)
    frame = Frame("probe", "site1", "cam", 0, time.time(), image, colour=Colour.RGB)
    try:
        back = decode_frame(encode(frame)).image
    except (SchemaError, TypeError, AttributeError, KeyError):
        return False
    return isinstance(back, Encoded) and back.data == jpeg


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _picture(jpeg: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a JPEG"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _number(jpeg: bytes) -> int:
    found = number_of(_picture(jpeg))
    assert found is not None, "the frame shows no pattern"
    return found


class Publisher:
    """A process pushing the numbered pattern to ``url`` from frame ``start``, 25 fps."""

    def __init__(self, url: str, start: int) -> None:
        command = [sys.executable, "-m", "pipeline.camera.sources.testpattern", url]
        self._process = subprocess.Popen(
            [*command, "--start", str(start), "--frames", "750"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def cut(self) -> None:
        """Kill it mid-stream, as a camera losing power."""
        self._process.kill()
        self._process.wait(timeout=10)


async def test_a_cut_rtsp_stream_is_reconnected_and_frames_flow_again() -> None:
    url = f"rtsp://127.0.0.1:{_free_port()}/cam"
    # The camera's source is the RTSP server: it listens, the publisher pushes.
    listen = (("rtsp_flags", "listen"), ("listen_timeout", "5"))
    camera = VideoCamera("door", url, rate_hz=1000.0, timeout_s=8.0, options=listen)
    feed = Feed(camera, backoff=Backoff(0.1, 0.5))
    numbers: list[int] = []

    async def consume(image: CameraImage) -> bool:
        numbers.append(_number(image.jpeg))
        return True

    publishers = [Publisher(url, start=0)]
    reading = asyncio.create_task(feed.run(consume))
    try:
        await wait_until(lambda: len(numbers) >= 20, 12, "frames from the first publisher")
        publishers[0].cut()
        await wait_until(lambda: feed.counts.reconnects >= 1, 8, "a reconnect")
        publishers.append(Publisher(url, start=1000))
        await wait_until(
            lambda: sum(n >= 1000 for n in numbers) >= 20, 12, "frames after the restart"
        )
    finally:
        feed.stop()
        for publisher in publishers:
            publisher.cut()
        await asyncio.wait_for(reading, 10)
    before = [n for n in numbers if n < 1000]
    again = [n for n in numbers if n >= 1000]
    assert before == sorted(before) and len(before) >= 20 and before[0] < 10
    assert again == sorted(again) and len(again) >= 20
    assert feed.counts.reconnects >= 1


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on loopback serving ``tmp_path``; its URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_stream_served_over_http_is_read_in_order(tmp_path: Path, http_root: str) -> None:
    write_video(tmp_path / "live.ts", 30)
    with open_source(f"{http_root}/live.ts", timeout_s=5.0) as source:
        numbers = [number_of(f.image) for f in source.frames()]
    assert numbers == list(range(30))


@pytest.mark.skipif(
    not _codec_sends_jpeg(),
    reason="schemas.codec cannot encode a Frame with an Encoded JPEG image yet "
    "(wire codec rewrite pending); remove this skip when it lands",
)
async def test_cameras_publish_jpeg_frames_to_the_site(nc: Client, tmp_path: Path) -> None:
    write_video(tmp_path / "door.mp4", 25)
    write_video(tmp_path / "shelf.mp4", 25, width=640, height=360, start=500)
    received: list[tuple[str, Frame]] = []

    async def on_frame(msg: Msg) -> None:
        received.append((msg.subject, decode_frame(msg.data)))

    await nc.subscribe(subjects.frames("site1"), cb=on_frame)
    cameras = [
        VideoCamera("door", str(tmp_path / "door.mp4"), rate_hz=25.0),
        VideoCamera("shelf", str(tmp_path / "shelf.mp4"), rate_hz=5.0, width=320),
    ]
    counts = await asyncio.wait_for(run_cameras(nc, cameras, "site1"), 15)
    await wait_until(lambda: len(received) >= counts.published, 5, "every frame")
    door, shelf = counts.cameras["door"], counts.cameras["shelf"]
    # In real time a frame is dropped only if the loop stalls for a frame's time.
    assert (door.published + door.dropped, shelf.published + shelf.dropped) == (25, 5)
    assert len(received) == counts.published
    numbers: dict[str, list[int]] = {"door": [], "shelf": []}
    for subject, frame in received:
        assert subject == subjects.frames("site1", frame.camera)
        assert isinstance(frame.image, Encoded) and frame.image.encoding is Encoding.JPEG
        assert frame.colour is Colour.RGB and frame.regions == ()
        numbers[frame.camera].append(_number(frame.image.data))
    # In order, up to the last frame (the newest is never dropped).
    assert numbers["door"] == sorted(set(numbers["door"])) and numbers["door"][-1] == 24
    assert numbers["shelf"] == sorted(set(numbers["shelf"])) and numbers["shelf"][-1] == 520
    assert set(numbers["shelf"]) <= set(range(500, 525, 5))
    first_shelf = next(f for _, f in received if f.camera == "shelf")
    assert isinstance(first_shelf.image, Encoded)
    assert _picture(first_shelf.image.data).shape == (180, 320, 3)
