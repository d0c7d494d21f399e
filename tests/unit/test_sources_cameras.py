"""``VideoCameras`` without a server: the frames it builds, its lifecycle, its counts.

The codec is replaced by one that keeps the ``Frame`` objects, so these checks do not
depend on the wire form; tests/integration/test_video_sources.py sends real bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from pipeline.camera.sources import VideoCamera
from pipeline.camera.sources import cameras as cameras_module
from pipeline.camera.sources.cameras import VideoCameras, run_cameras
from pipeline.camera.sources.testpattern import write_video
from schemas.errors import ConfigError
from schemas.messages import Colour, Encoded, Encoding, Frame, PrivacyClass
from tests.helpers import wait_until


class FakeClient:
    """Keeps what is published; refuses every ``refuse``-th frame as too large."""

    def __init__(self, refuse: int = 0) -> None:
        self.sent: list[tuple[str, Frame]] = []
        self.refuse = refuse
        self.offered = 0

    async def publish(self, subject: str, payload: Any) -> None:
        self.offered += 1
        if self.refuse and self.offered % self.refuse == 0:
            raise nats.errors.MaxPayloadError
        self.sent.append((subject, payload))

    async def flush(self, timeout: float = 2) -> None:
        pass


@pytest.fixture(autouse=True)
def frames_as_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cameras_module, "encode", lambda frame: frame)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "pattern.mp4"
    write_video(path, 25)
    return path


async def test_each_camera_publishes_jpeg_frames_on_its_subject(video: Path) -> None:
    nc = FakeClient()
    door = VideoCamera("door", str(video), rate_hz=5.0, privacy=PrivacyClass.FULL, priority=1)
    shelf = VideoCamera("shelf", str(video), rate_hz=25.0, realtime=False, deadline_ms=900)
    counts = await asyncio.wait_for(run_cameras(nc, [door, shelf], "site1"), 15)  # type: ignore[arg-type]
    by_camera: dict[str, list[Frame]] = {"door": [], "shelf": []}
    for subject, frame in nc.sent:
        assert subject == f"frames.site1.{frame.camera}"
        by_camera[frame.camera].append(frame)
    door_counts = counts.cameras["door"]
    assert door_counts.published == len(by_camera["door"])
    assert door_counts.published + door_counts.dropped == 5  # 1 s at 5 a second
    assert counts.published + counts.dropped == 5 + 25
    first = by_camera["door"][0]
    assert isinstance(first.image, Encoded) and first.image.encoding is Encoding.JPEG
    assert first.image.data[:3] == b"\xff\xd8\xff"
    assert first.colour is Colour.RGB and first.regions == ()
    assert (first.site, first.privacy, first.priority, first.deadline_ms) == (
        "site1",
        PrivacyClass.FULL,
        1,
        250,
    )
    assert [f.seq for f in by_camera["door"]] == list(range(door_counts.published))
    assert len({f.frame_id for _, f in nc.sent}) == len(nc.sent)
    assert by_camera["shelf"][0].deadline_ms == 900


async def test_a_refused_frame_is_dropped_and_the_camera_goes_on(video: Path) -> None:
    nc = FakeClient(refuse=2)
    service = VideoCameras(nc, [VideoCamera("door", str(video), rate_hz=25.0)], "site1")  # type: ignore[arg-type]
    async with service:
        await asyncio.wait_for(service.wait(), 15)
    counts = service.counts().cameras["door"]
    assert counts.published == len(nc.sent) >= 12
    assert counts.dropped >= nc.offered - len(nc.sent)
    assert service.metrics.value(
        "hybridfleet_camera_dropped_frames_total", camera="door", reason="publish_refused"
    ) == nc.offered - len(nc.sent)


async def test_stop_ends_a_looping_camera(video: Path) -> None:
    nc = FakeClient()
    stop = asyncio.Event()
    camera = VideoCamera("door", str(video), rate_hz=25.0, loop=True)
    task = asyncio.create_task(run_cameras(nc, [camera], "site1", stop=stop))  # type: ignore[arg-type]
    await wait_until(lambda: len(nc.sent) >= 30, 10, "frames past the file's end")
    stop.set()
    counts = await asyncio.wait_for(task, 10)
    assert counts.published == len(nc.sent) >= 30


async def test_a_missing_file_fails_at_start(tmp_path: Path) -> None:
    camera = VideoCamera("door", str(tmp_path / "none.mp4"))
    with pytest.raises(ConfigError, match=r"camera door: source: video file .* does not exist"):
        await run_cameras(FakeClient(), [camera], "site1")  # type: ignore[arg-type]


def test_settings_are_checked_when_made(video: Path) -> None:
    camera = VideoCamera("door", str(video))
    with pytest.raises(ConfigError, match="two cameras are named 'door'"):
        VideoCameras(FakeClient(), [camera, camera], "site1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"site: 'a\.b' is not a valid name"):
        VideoCameras(FakeClient(), [camera], "a.b")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no cameras"):
        VideoCameras(FakeClient(), [], "site1")  # type: ignore[arg-type]
