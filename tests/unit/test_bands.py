"""Choosing the upper end of a declared model's uncertainty band for a target share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from models.random.build import HERE as RANDOM_MODELS
from pipeline.camera.sources.photos import write_photo_video
from pipeline.cli.main import main
from pipeline.planning.bands import choose_high, escalated_share
from schemas.errors import ConfigError

FRAMES = [np.array([0.9, 0.5]), np.array([0.95]), np.array([0.7, 0.8]), np.array([])]


def test_a_frame_is_escalated_when_any_item_is_in_the_band() -> None:
    assert escalated_share(FRAMES, 0.3, 0.6) == 0.25  # only the 0.5
    assert escalated_share(FRAMES, 0.3, 0.75) == 0.5  # and the 0.7
    assert escalated_share(FRAMES, 0.3, 1.0) == 0.75  # every frame with an item
    assert escalated_share(FRAMES, 0.6, 0.7) == 0.0  # the band is half-open
    assert escalated_share([], 0.3, 0.6) == 0.0


def test_the_largest_high_within_the_target_is_chosen() -> None:
    choice = choose_high(FRAMES, 0.3, 0.5, steps=70)  # grid of 0.01
    assert choice.share == 0.5 and choice.frames == 4
    # The 0.9 is in a frame already asked about; the 0.95 alone would add a frame.
    assert choice.high == pytest.approx(0.95)
    assert escalated_share(FRAMES, 0.3, choice.high + 0.01) > 0.5


def test_a_target_nothing_meets_asks_about_nothing() -> None:
    choice = choose_high([np.array([0.31])], 0.3, 0.0)
    assert choice.share == 0.0 and 0.3 <= choice.high <= 0.31


def test_bad_targets_are_refused() -> None:
    with pytest.raises(ConfigError, match="share"):
        choose_high(FRAMES, 0.3, 1.5)
    with pytest.raises(ConfigError, match="low"):
        choose_high(FRAMES, 1.0, 0.5)
    with pytest.raises(ConfigError, match="no frames"):
        choose_high([], 0.3, 0.5)


def test_tune_band_for_a_declared_detector_on_a_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "pan.mp4"
    write_photo_video(video, 20, width=320, height=180)
    manifest = RANDOM_MODELS / "manifest.json"
    args = ["tune", "--band-for", "detect", "--manifest", str(manifest)]
    assert main([*args, "--source", str(video), "--max-escalation", "0.25"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"band \[0\.3, ([0-9.]+)\) of yolo-random escalates ([0-9.]+)% of 20", out)
    assert found is not None, out
    assert float(found.group(2)) <= 25.0
    assert 0.3 <= float(found.group(1)) <= 1.0
