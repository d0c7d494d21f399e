"""Drift injection in the camera simulator: options, which frames drift, what it does."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from pipeline.camera.drift import DRIFT_KINDS
from pipeline.camera.simulator import CameraOptions, CameraSimulator, PublishedFrame
from pipeline.inference.digits import DigitsSplit, load_split
from schemas.errors import ConfigError

# Small frames: the crops are the same as in 640x480 ones, and the tests stay fast.
SMALL: dict[str, Any] = {"width": 64, "height": 48}


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_split()


def frames(
    split: DigitsSplit, n: int, cameras: int = 1, **options: Any
) -> list[tuple[np.ndarray, tuple[int, ...], Any]]:
    """(image, truth, frame) for ``n`` frames, round-robin over the cameras."""
    sim = CameraSimulator(CameraOptions(cameras=cameras, seed=7, **SMALL, **options), split)
    out = []
    for i in range(n):
        frame, truth = sim.make_frame(sim.camera_names[i % cameras], i // cameras, 0.0)
        out.append((frame.raw_image, truth, frame))
    return out


def region_mask(frame: Any) -> np.ndarray:
    mask = np.zeros(frame.image.shape, dtype=bool)
    for r in frame.regions:
        mask[r.y : r.y + r.h, r.x : r.x + r.w] = True
    return mask


# ---------------------------------------------------------------- options


def test_defaults_have_no_drift() -> None:
    options = CameraOptions()
    assert (options.drift, options.drift_strength, options.drift_after_s) == ("none", 0.0, 0.0)
    assert DRIFT_KINDS == ("none", "noise", "brightness", "blur")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"drift": "fog"}, "drift must be one of none, noise, brightness, blur, got 'fog'"),
        ({"drift": None}, "drift must be one of"),
        ({"drift": "noise"}, "drift_strength for drift 'noise'"),  # strength 0: no-op drift
        ({"drift": "noise", "drift_strength": 1.5}, "must be in [0, 1] and not 0, got 1.5"),
        ({"drift": "noise", "drift_strength": -0.1}, "must be in [0, 1]"),
        ({"drift": "brightness", "drift_strength": -1.5}, "must be in [-1, 1]"),
        ({"drift": "brightness", "drift_strength": 0.0}, "not 0"),
        ({"drift": "blur", "drift_strength": 5.0}, "must be in [0, 4]"),
        ({"drift": "blur", "drift_strength": math.nan}, "drift_strength must be a finite number"),
        ({"drift": "blur", "drift_strength": True}, "drift_strength must be a finite number"),
        ({"drift": "blur", "drift_strength": "1"}, "drift_strength must be a finite number"),
        ({"drift": "noise", "drift_strength": 0.1, "drift_after_s": -1.0}, "drift_after_s must"),
        ({"drift": "noise", "drift_strength": 0.1, "drift_after_s": math.inf}, "drift_after_s"),
        ({"drift_strength": 0.3}, "must stay 0 when drift is 'none'"),
        ({"drift_after_s": 5.0}, "must stay 0 when drift is 'none'"),
    ],
)
def test_bad_drift_options_are_refused_with_the_key(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        CameraOptions(**changes)


@pytest.mark.parametrize(
    ("drift", "strength"),
    [("noise", 1.0), ("noise", 0.01), ("brightness", -1.0), ("brightness", 0.5), ("blur", 4.0)],
)
def test_drift_strengths_at_the_limits_are_accepted(drift: str, strength: float) -> None:
    options = CameraOptions(drift=drift, drift_strength=strength, drift_after_s=2)
    assert options.drift_strength == strength


def test_the_existing_option_checks_still_apply() -> None:
    with pytest.raises(ConfigError, match="priority_mix"):
        CameraOptions(priority_mix=(0.5, 0.5, 0.5), drift="noise", drift_strength=0.1)


# ---------------------------------------------------------------- which frames drift


def test_the_drift_starts_by_the_publishing_schedule() -> None:
    sim = CameraSimulator(
        CameraOptions(
            cameras=2, rate_hz=10.0, drift="blur", drift_strength=1.0, drift_after_s=1.0, **SMALL
        )
    )
    # Frame seq s of camera c is due (2s + c) / 20 s into the run.
    assert sim.run_offset_s("cam1", 0) == 0.0
    assert sim.run_offset_s("cam2", 9) == pytest.approx(0.95)
    assert not sim.drifted("cam2", 9)
    assert sim.drifted("cam1", 10)  # exactly 1.0 s: drifting from then on
    assert sim.drifted("cam2", 10)


def test_no_drift_draws_the_same_frames_as_before(split: DigitsSplit) -> None:
    clean = frames(split, 40, cameras=2, regions_per_frame=2)
    # The drift has its own random generator: frames before it starts are untouched.
    later = frames(
        split,
        40,
        cameras=2,
        regions_per_frame=2,
        drift="noise",
        drift_strength=0.5,
        drift_after_s=1000.0,
    )
    for (a, truth_a, fa), (b, truth_b, fb) in zip(clean, later, strict=True):
        assert np.array_equal(a, b)
        assert truth_a == truth_b and fa.regions == fb.regions
        assert (fa.priority, fa.privacy) == (fb.priority, fb.privacy)


@pytest.mark.parametrize(
    ("drift", "strength"),
    [("noise", 0.2), ("brightness", 0.3), ("brightness", -0.3), ("blur", 1.0)],
)
def test_drift_changes_only_the_digits(split: DigitsSplit, drift: str, strength: float) -> None:
    clean = frames(split, 30)
    drifted = frames(split, 30, drift=drift, drift_strength=strength, drift_after_s=0.0)
    changed = 0
    for (a, truth_a, fa), (b, truth_b, fb) in zip(clean, drifted, strict=True):
        # Same digits, places, labels and metadata: only the digit pixels differ.
        assert truth_a == truth_b and fa.regions == fb.regions and fa.priority == fb.priority
        outside = ~region_mask(fa)
        assert np.array_equal(a[outside], b[outside])
        changed += not np.array_equal(fa.crops()[0], fb.crops()[0])
    assert changed == 30


def test_brightness_adds_its_offset_and_clips(split: DigitsSplit) -> None:
    clean = frames(split, 10)
    brighter = frames(split, 10, drift="brightness", drift_strength=0.2, drift_after_s=0.0)
    for (_, _, fa), (_, _, fb) in zip(clean, brighter, strict=True):
        expected = np.clip(fa.crops()[0].astype(int) + 51, 0, 255)  # 0.2 * 255
        assert np.array_equal(fb.crops()[0], expected)


def test_noise_has_the_stated_spread(split: DigitsSplit) -> None:
    clean = frames(split, 40)
    noisy = frames(split, 40, drift="noise", drift_strength=0.05, drift_after_s=0.0)
    diffs = np.concatenate(
        [
            (fb.crops()[0].astype(float) - fa.crops()[0].astype(float)).ravel()
            for (_, _, fa), (_, _, fb) in zip(clean, noisy, strict=True)
        ]
    )
    # 0.05 * 255 = 12.75; clipping at 0 (the digits' background) trims the spread a little.
    assert 9.0 < diffs.std() < 14.0


def test_blur_keeps_brightness_and_softens_edges(split: DigitsSplit) -> None:
    clean = frames(split, 20)
    blurred = frames(split, 20, drift="blur", drift_strength=1.0, drift_after_s=0.0)
    for (_, _, fa), (_, _, fb) in zip(clean, blurred, strict=True):
        a = fa.crops()[0].astype(float)
        b = fb.crops()[0].astype(float)
        assert abs(a.mean() - b.mean()) < 8.0  # edges are extended, so nearly preserved
        assert np.abs(np.diff(b, axis=1)).sum() < np.abs(np.diff(a, axis=1)).sum()


def test_drift_is_reproducible_with_the_seed(split: DigitsSplit) -> None:
    one = frames(split, 10, drift="noise", drift_strength=0.3, drift_after_s=0.0)
    two = frames(split, 10, drift="noise", drift_strength=0.3, drift_after_s=0.0)
    assert all(np.array_equal(a, b) for (a, _, _), (b, _, _) in zip(one, two, strict=True))


class _FakeClient:
    """Enough of nats.aio.client.Client for CameraSimulator.run."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append(subject)

    async def flush(self) -> None:
        return None


async def test_published_frames_keep_the_drifted_crops_and_say_so(split: DigitsSplit) -> None:
    schedule: dict[str, Any] = {"cameras": 2, "rate_hz": 200.0, "seconds": 0.05, **SMALL}
    options = CameraOptions(drift="brightness", drift_strength=0.3, drift_after_s=0.025, **schedule)
    client = _FakeClient()
    published: list[PublishedFrame] = await CameraSimulator(options, split).run(client)  # type: ignore[arg-type]
    assert len(published) == len(client.published) == 20
    flags = [p.drifted for p in published]
    # Frames are due every 2.5 ms: the first 10 before 0.025 s, the rest from then on.
    assert flags == [False] * 10 + [True] * 10
    clean = CameraSimulator(CameraOptions(**schedule), split)  # the same frames, no drift
    for i, record in enumerate(published):
        frame, _ = clean.make_frame(record.camera, i // 2, 0.0)
        same = np.array_equal(record.crops[0], frame.crops()[0])
        assert same is not record.drifted
