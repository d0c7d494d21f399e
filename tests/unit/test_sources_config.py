"""Per-camera settings and the [[cameras]] file: typed errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.camera.sources import VideoCamera, load_cameras
from schemas.errors import ConfigError
from schemas.messages import PrivacyClass

EXAMPLE = """
[[cameras]]
name = "door"
source = "rtsp://admin:secret@10.0.0.5:554/stream1"
rate_hz = 5
width = 1280
jpeg_quality = 70
privacy = "full"
priority = 1
deadline_ms = 500
timeout_s = 5

[[cameras]]
name = "shelf"
source = "/srv/video/shelf.mp4"
loop = true
realtime = false
options = { threads = 2, skip_frame = "NONKEY" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cameras.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_loads(tmp_path: Path) -> None:
    door, shelf = load_cameras(write(tmp_path, EXAMPLE))
    assert door == VideoCamera(
        name="door",
        source="rtsp://admin:secret@10.0.0.5:554/stream1",
        rate_hz=5.0,
        width=1280,
        jpeg_quality=70,
        privacy=PrivacyClass.FULL,
        priority=1,
        deadline_ms=500,
        timeout_s=5.0,
    )
    assert door.live and not shelf.live
    assert shelf.loop and not shelf.realtime
    assert shelf.backend_options == {"threads": "2", "skip_frame": "NONKEY"}
    assert (shelf.rate_hz, shelf.jpeg_quality, shelf.privacy) == (5.0, 80, PrivacyClass.CROP)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            "rat_hz = 5",
            r"cameras\[1\]\.rat_hz: unknown key; did you mean 'rate_hz'\? \(allowed: deadline_ms,",
        ),
        ("rate_hz = 0", r"cameras\[1\]\.rate_hz must be a number in \(0, 1000\], got 0\.0$"),
        ("rate_hz = true", r"cameras\[1\]\.rate_hz must be a number, got True \(bool\)"),
        ("width = 0", r"cameras\[1\]\.width must be a number in \[1, 16384\], got 0"),
        ("height = 2.5", r"cameras\[1\]\.height must be an integer, got 2\.5"),
        ("jpeg_quality = 101", r"jpeg_quality must be a number in \[1, 100\], got 101"),
        (
            'privacy = "ful"',
            "privacy must be one of local_only, embedding, crop, full, got 'ful'; "
            "did you mean 'full'",
        ),
        ("priority = 4", r"priority must be a number in \[1, 3\], got 4"),
        ("deadline_ms = 0", r"deadline_ms must be a number in \[1, "),
        ('loop = "yes"', "loop must be true or false, got 'yes'"),
        ("timeout_s = -1", r"timeout_s must be a number in \(0, 3600\], got -1\.0"),
        ('source = ""', "source must be a URL or a path"),
        ('options = "listen"', r"cameras\[1\]\.options must be a table, e\.g\. options = "),
        ("options = { flags = [1] }", r"options\.flags must be a string or a number, got \[1\]"),
    ],
)
def test_a_wrong_value_names_the_table_and_key(tmp_path: Path, line: str, words: str) -> None:
    text = f'[[cameras]]\nname = "a"\nsource = "a.mp4"\n[[cameras]]\nname = "b"\n{line}\n'
    if not line.startswith("source"):
        text += 'source = "b.mp4"\n'
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=words) as caught:
        load_cameras(path)
    assert str(caught.value).startswith(f"{path}: cameras[1].")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('site = "x"\n[[cameras]]\nname = "a"\nsource = "a.mp4"\n', "unknown key 'site'"),
        ("", "no cameras; add at least one"),
        ('[[cameras]]\nname = "a"\n', r"cameras\[0\]\.source: required key is missing"),
        ('[[cameras]]\nname = "a.b"\nsource = "a.mp4"\n', "'a.b' is not a valid name"),
        ('[[cameras]]\nname = "a"\nsource = "rtmp://x/y"\n', "source: no video source for"),
        (
            '[[cameras]]\nname = "a"\nsource = "rtsp://x/y"\nloop = true\n',
            r"cameras\[0\]: camera a: loop applies to files",
        ),
        (
            '[[cameras]]\nname = "a"\nsource = "a.mp4"\n'
            '[[cameras]]\nname = "a"\nsource = "b.mp4"\n',
            "two cameras are named 'a'",
        ),
    ],
)
def test_a_wrong_file_says_what_to_fix(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_cameras(write(tmp_path, text))


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"rate_hz": 0.0}, r"^camera a: rate_hz must be a number in \(0, 1000\], got 0\.0$"),
        ({"rate_hz": float("nan")}, r"rate_hz must be a number in \(0, 1000\], got nan"),
        ({"width": 0}, r"^camera a: width must be a number in \[1, 16384\], got 0$"),
        ({"priority": 0}, r"priority must be a number in \[1, 3\]"),
        ({"timeout_s": 4000.0}, r"timeout_s must be a number in \(0, 3600\]"),
        ({"source": ""}, "^camera a: source must be a URL or a path"),
        ({"name": "a b"}, "camera name: 'a b' is not a valid name"),
    ],
)
def test_a_camera_made_in_code_is_held_to_the_same_rules(
    fields: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        VideoCamera(**{"name": "a", "source": "a.mp4", **fields})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"camera file .* does not exist"):
        load_cameras(tmp_path / "none.toml")


def test_one_side_alone_keeps_the_aspect_ratio() -> None:
    from pipeline.camera.sources.image import output_size

    assert output_size(1280, 720, 640, None) == (640, 360)
    assert output_size(1280, 720, None, 360) == (640, 360)
    assert output_size(1280, 720, 320, 320) == (320, 320)
    assert output_size(1280, 720, None, None) == (1280, 720)
