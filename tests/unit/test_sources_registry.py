"""Source kinds by URL scheme, and the PyAV-then-OpenCV fallback, without a camera."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.camera.sources import SourceError, SourceUnavailable, Target, kind_for, open_source
from pipeline.camera.sources.base import redact
from pipeline.camera.sources.opencv import OpenCvSource
from pipeline.camera.sources.registry import open_with, scheme_of, schemes
from pipeline.camera.sources.testpattern import number_of, write_video
from schemas.errors import ConfigError


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "pattern.mp4"
    write_video(path, 20)
    return path


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("rtsp://10.0.0.5:554/stream1", "rtsp"),
        ("RTSPS://cam.example/live", "rtsps"),
        ("http://127.0.0.1:8080/feed.ts", "http"),
        ("https://example.org/live.m3u8", "https"),
        ("file:///var/video/a.mp4", "file"),
        ("videos/a.mp4", "file"),
        ("/var/video/a.mp4", "file"),
        ("/dev/video2", "device"),
        ("device:0", "device"),
        ("sim:static", "sim"),
    ],
)
def test_the_scheme_picks_the_kind(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme
    assert scheme in type(kind_for(url)).schemes


def test_every_kind_is_registered() -> None:
    assert schemes() == ("device", "file", "http", "https", "rtsp", "rtsps", "sim")


def test_an_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"scheme 'rtmp'.*rtsp:.*file path"):
        kind_for("rtmp://host/live")


@pytest.mark.parametrize(
    ("url", "location", "live", "fmt"),
    [
        ("file:///var/v/a%20b.mp4", "/var/v/a b.mp4", False, None),
        ("file:rel/a.mp4", "rel/a.mp4", False, None),
        ("a.mp4", "a.mp4", False, None),
        ("device:3", "/dev/video3", True, "v4l2"),
        ("/dev/video1", "/dev/video1", True, "v4l2"),
        ("http://127.0.0.1/a.ts", "http://127.0.0.1/a.ts", True, None),
    ],
)
def test_targets(url: str, location: str, live: bool, fmt: str | None) -> None:
    target = kind_for(url).target(url, {})
    assert (target.location, target.live, target.format) == (location, live, fmt)


def test_rtsp_reads_over_tcp_unless_told_otherwise() -> None:
    kind = kind_for("rtsp://cam/x")
    assert kind.target("rtsp://cam/x", {}).options == {"rtsp_transport": "tcp"}
    listen = {"rtsp_flags": "listen", "rtsp_transport": "udp"}
    assert kind.target("rtsp://cam/x", listen).options == listen


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("rtsp:///nohost", "names no host"),
        ("http://host:notaport/x", "not a valid URL"),
        ("file://otherhost/a.mp4", "names no host"),
        ("device:first", "device:<number>"),
        ("sim:cloudy", "scene must be one of"),
        ("sim:static?speed=2", "unknown parameter 'speed'"),
        ("sim:?fps=0", "fps must be"),
    ],
)
def test_a_malformed_url_is_a_config_error(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        kind_for(url).target(url, {})


def test_a_missing_file_is_refused_before_opening(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))


def test_passwords_stay_out_of_messages() -> None:
    assert redact("rtsp://admin:secret@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert redact("rtsp://10.0.0.5/s") == "rtsp://10.0.0.5/s"
    assert redact("rtsp://admin@10.0.0.5/s") == "rtsp://admin@10.0.0.5/s"
    assert redact("rtsp://a:b@[::1]:bad/s") == "rtsp://a:***@[::1]:bad/s"
    assert redact("/srv/video/a.mp4") == "/srv/video/a.mp4"


def test_pyav_decodes_a_file_to_rgb(video: Path) -> None:
    with open_source(f"file://{video}") as source:
        frames = list(source.frames())
    assert source.backend == "pyav"
    assert [number_of(f.image) for f in frames] == list(range(20))
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.dtype == np.uint8
    assert [f.time_s for f in frames[:3]] == pytest.approx([0.0, 0.04, 0.08])


def test_opencv_opens_what_pyav_cannot(video: Path, caplog: pytest.LogCaptureFixture) -> None:
    def refusing(target: Target, timeout_s: float) -> OpenCvSource:
        raise SourceError("PyAV cannot open it", retriable=False)

    target = kind_for(str(video)).target(str(video), {})
    with (
        caplog.at_level(logging.WARNING),
        open_with([("pyav", refusing), ("opencv", OpenCvSource)], target, 5.0) as source,
    ):
        frames = list(source.frames())
    assert source.backend == "opencv"
    assert "trying opencv" in caplog.text
    assert [number_of(f.image) for f in frames] == list(range(20))
    assert frames[1].time_s == pytest.approx(0.04)


def test_an_absent_source_is_not_handed_to_the_next_backend() -> None:
    tried: list[str] = []

    def absent(target: Target, timeout_s: float) -> OpenCvSource:
        tried.append("pyav")
        raise SourceUnavailable("connection refused", retriable=True)

    def never(target: Target, timeout_s: float) -> OpenCvSource:
        tried.append("opencv")
        raise AssertionError("not tried")

    with pytest.raises(SourceUnavailable):
        open_with([("pyav", absent), ("opencv", never)], Target("rtsp://x/y", live=True), 1.0)
    assert tried == ["pyav"]


def test_when_every_backend_refuses_the_error_says_why() -> None:
    target = Target("/nonexistent/dir/", live=False)

    def refusing(target: Target, timeout_s: float) -> OpenCvSource:
        raise SourceError("cannot decode it", retriable=False)

    with pytest.raises(SourceError, match="cannot decode it; cannot decode it") as caught:
        open_with([("a", refusing), ("b", refusing)], target, 1.0)
    assert caught.value.retriable is False


def test_pyav_says_a_missing_file_is_absent_and_final(tmp_path: Path) -> None:
    from pipeline.camera.sources.pyav import PyAvSource

    with pytest.raises(SourceUnavailable) as caught:
        PyAvSource(Target(str(tmp_path / "none.mp4"), live=False), 1.0)
    assert caught.value.retriable is False


def test_the_simulator_is_a_source() -> None:
    with open_source("sim:static?frames=3&seed=1") as source:
        frames = list(source.frames())
    assert source.backend == "sim"
    assert len(frames) == 3
    assert frames[0].image.shape == (480, 640, 3) and frames[0].image.dtype == np.uint8
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.04, 0.08])


def test_a_refused_connection_keeps_the_password_out_of_the_error() -> None:
    from pipeline.camera.sources.pyav import PyAvSource

    with pytest.raises(SourceUnavailable) as caught:
        PyAvSource(Target("rtsp://viewer:hunter2@127.0.0.1:1/x", live=True), 2.0)
    assert "hunter2" not in str(caught.value) and "viewer:***@" in str(caught.value)
    assert caught.value.retriable is True
