"""The device tier: FrameSkipper, DevicePolicy and DeviceTier with the real device model."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from pipeline.camera.device import (
    DeviceAction,
    DeviceConfig,
    DeviceDecision,
    DevicePolicy,
    DeviceReason,
    DeviceTier,
    FrameSkipper,
    SkipConfig,
    crop_difference,
)
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.inference.digits import DigitsSplit, digit_to_pixels, load_split, pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.errors import ConfigError, ModelError, SchemaError
from schemas.messages import Frame, Region

BACKGROUND = 50
SIDE = 32  # a digit drawn at scale 4
BOXES = (Region(4, 8, SIDE, SIDE), Region(52, 8, SIDE, SIDE))


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    return load_split()


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    try:
        return OnnxModel.load("device")
    except ModelError:  # a manifest without the device role: any 64-feature model will do
        return OnnxModel.load("edge")


@pytest.fixture(scope="module")
def digits(split: DigitsSplit) -> dict[int, np.ndarray]:
    """One held-out digit of each class, as 32x32 pixels."""
    return {c: digit_to_pixels(split.x_heldout[split.y_heldout == c][0]) for c in range(10)}


def make_frame(
    pixels: Sequence[np.ndarray],
    *,
    seq: int = 0,
    camera: str = "cam1",
    boxes: Sequence[Region] = BOXES,
    priority: int = 2,
    offset: int = 0,
) -> Frame:
    """A 48x96 frame with ``pixels[k]`` drawn into ``boxes[k]``; ``offset`` brightens it."""
    image = np.full((48, 96), BACKGROUND, dtype=np.int16)
    regions = tuple(boxes[: len(pixels)])
    for region, digit in zip(regions, pixels, strict=True):
        image[region.y : region.y + region.h, region.x : region.x + region.w] = digit
    image = np.clip(image + offset, 0, 255)
    return Frame(
        frame_id=f"site1-{camera}-{seq}",
        site="site1",
        camera=camera,
        seq=seq,
        captured_at=1000.0 + seq,
        image=image.astype(np.uint8),
        regions=regions,
        priority=priority,
    )


def tier(model: OnnxModel, skip: SkipConfig | None = None, threshold: float = 0.0) -> DeviceTier:
    """threshold 0 answers every frame; tests of the confidence rule set their own."""
    return DeviceTier(model, DeviceConfig(threshold=threshold), skip or SkipConfig())


# --- the difference feature ---------------------------------------------------------


def test_crop_difference_is_zero_for_equal_crops_and_one_for_black_against_white() -> None:
    black = np.zeros((8, 8), np.uint8)
    white = np.full((8, 8), 255, np.uint8)
    assert crop_difference(black, black) == 0.0
    assert crop_difference(black, white) == 1.0
    assert crop_difference(black, np.zeros((8, 9), np.uint8)) == 1.0


def test_crop_difference_dead_zone_ignores_small_differences() -> None:
    a = np.full((4, 4), 100, np.uint8)
    b = a.copy()
    b[0, 0] = 108  # within a dead zone of 8
    b[1, 1] = 151  # outside it
    assert crop_difference(a, b, 0) == pytest.approx((8 + 51) / 16 / 255)
    assert crop_difference(a, b, 8) == pytest.approx(51 / 16 / 255)


# --- skipping -----------------------------------------------------------------------


def test_identical_frame_is_skipped_and_reuses_the_result(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model)
    (first,) = device.process([make_frame([digits[3]], seq=0)])
    (second,) = device.process([make_frame([digits[3]], seq=1)])
    assert first.action is DeviceAction.ANSWER
    assert first.labels == (3,)
    assert second.action is DeviceAction.SKIP
    assert second.reason is DeviceReason.UNCHANGED
    assert second.frame_id == "site1-cam1-1"
    assert second.reused_from == "site1-cam1-0"
    assert second.labels == first.labels
    assert second.confidence == first.confidence
    np.testing.assert_array_equal(second.scores, first.scores)


def test_noise_below_threshold_is_skipped_a_new_digit_is_not(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model)
    rng = np.random.default_rng(0)
    device.process([make_frame([digits[3]], seq=0)])
    noisy = make_frame([digits[3]], seq=1)
    sensor = rng.normal(0.0, 2.0, noisy.raw_image.shape)
    noisy_image = np.clip(noisy.raw_image + sensor, 0, 255).astype(np.uint8)
    noisy = replace(noisy, image=noisy_image)
    assert not np.array_equal(noisy_image, make_frame([digits[3]]).raw_image)
    (skipped,) = device.process([noisy])
    (fresh,) = device.process([make_frame([digits[8]], seq=2)])
    assert skipped.action is DeviceAction.SKIP
    assert fresh.action is DeviceAction.ANSWER
    assert fresh.reused_from is None
    assert fresh.labels == (8,)


def test_slow_drift_adds_up_against_the_unchanged_reference(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    # One grey level brighter per frame; with no dead zone the difference from the
    # reference is k/255 after k frames, below 0.02 up to k = 5. Frame 6 is inferred
    # and becomes the reference, so frame 7 (1/255 from it) is skipped again. Were the
    # reference replaced by each skipped frame, every step would be 1/255 and all would
    # skip.
    device = tier(model, SkipConfig(threshold=0.02, pixel_delta=0, max_reuse=100))
    actions = [
        device.process([make_frame([digits[5]], seq=k, offset=k)])[0].action for k in range(8)
    ]
    answer, skip = DeviceAction.ANSWER, DeviceAction.SKIP
    assert actions == [answer, skip, skip, skip, skip, skip, answer, skip]


def test_a_moved_box_is_a_change(model: OnnxModel, digits: dict[int, np.ndarray]) -> None:
    device = tier(model)
    device.process([make_frame([digits[3]], seq=0)])
    moved = (Region(6, 8, SIDE, SIDE),)
    (decision,) = device.process([make_frame([digits[3]], seq=1, boxes=moved)])
    assert decision.action is DeviceAction.ANSWER
    assert decision.reused_from is None


def test_max_reuse_forces_a_fresh_inference(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model, SkipConfig(threshold=0.02, pixel_delta=8, max_reuse=2))
    decisions = [device.process([make_frame([digits[3]], seq=k)])[0] for k in range(6)]
    assert [d.action for d in decisions] == [
        DeviceAction.ANSWER,
        DeviceAction.SKIP,
        DeviceAction.SKIP,
        DeviceAction.ANSWER,  # two reuses in a row: the third frame is inferred again
        DeviceAction.SKIP,
        DeviceAction.SKIP,
    ]
    assert [d.reused_from for d in decisions] == [
        None,
        "site1-cam1-0",
        "site1-cam1-0",
        None,
        "site1-cam1-3",
        "site1-cam1-3",
    ]


def test_threshold_zero_disables_skipping(model: OnnxModel, digits: dict[int, np.ndarray]) -> None:
    device = tier(model, SkipConfig(threshold=0.0, pixel_delta=8, max_reuse=25))
    frames = [make_frame([digits[3]], seq=k) for k in range(3)]
    assert [d.action for d in device.process(frames)] == [DeviceAction.ANSWER] * 3


def test_cameras_are_independent(model: OnnxModel, digits: dict[int, np.ndarray]) -> None:
    device = tier(model, SkipConfig(threshold=0.02, pixel_delta=8, max_reuse=1))
    device.process([make_frame([digits[3]], seq=0, camera="cam1")])
    # cam2 shows the same picture, but has no reference of its own yet.
    (cam2,) = device.process([make_frame([digits[3]], seq=0, camera="cam2")])
    (cam1,) = device.process([make_frame([digits[3]], seq=1, camera="cam1")])
    (cam2_again,) = device.process([make_frame([digits[3]], seq=1, camera="cam2")])
    assert cam2.action is DeviceAction.ANSWER
    assert cam1.reused_from == "site1-cam1-0"
    assert cam2_again.reused_from == "site1-cam2-0"  # cam1's reuse did not use up cam2's


def test_multi_region_frame_is_skipped_only_if_all_regions_are_unchanged(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model)
    device.process([make_frame([digits[3], digits[7]], seq=0)])
    (same,) = device.process([make_frame([digits[3], digits[7]], seq=1)])
    (one_changed,) = device.process([make_frame([digits[3], digits[1]], seq=2)])
    (fewer,) = device.process([make_frame([digits[3]], seq=3)])
    assert same.action is DeviceAction.SKIP
    assert same.labels == (3, 7)
    assert one_changed.action is DeviceAction.ANSWER
    assert one_changed.labels == (3, 1)
    assert fewer.action is DeviceAction.ANSWER


def test_a_later_frame_in_the_same_batch_reuses_an_earlier_one(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model)
    frames = [
        make_frame([digits[3]], seq=0, camera="cam1"),
        make_frame([digits[4]], seq=0, camera="cam2"),
        make_frame([digits[3]], seq=1, camera="cam1"),
        make_frame([digits[4]], seq=1, camera="cam2"),
    ]
    decisions = device.process(frames)
    assert [d.action for d in decisions] == [
        DeviceAction.ANSWER,
        DeviceAction.ANSWER,
        DeviceAction.SKIP,
        DeviceAction.SKIP,
    ]
    assert [d.labels for d in decisions] == [(3,), (4,), (3,), (4,)]
    assert [d.reused_from for d in decisions[2:]] == ["site1-cam1-0", "site1-cam2-0"]


def test_priority_one_is_never_skipped(model: OnnxModel, digits: dict[int, np.ndarray]) -> None:
    device = tier(model)
    device.process([make_frame([digits[3]], seq=0)])
    (urgent,) = device.process([make_frame([digits[3]], seq=1, priority=1)])
    (next_frame,) = device.process([make_frame([digits[3]], seq=2)])
    assert urgent.action is DeviceAction.ANSWER
    assert next_frame.reused_from == "site1-cam1-1"  # the urgent frame became the reference


def test_a_failed_batch_leaves_no_reference_behind(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model)
    device.process([make_frame([digits[3]], seq=0)])
    good = make_frame([digits[3]], seq=1, priority=1)  # fresh, so it is in the failed batch
    outside = make_frame([digits[3]], camera="cam2")
    broken = replace(outside, regions=(Region(200, 200, SIDE, SIDE),))
    with pytest.raises(SchemaError):
        device.process([good, broken])
    (after,) = device.process([make_frame([digits[3]], seq=2)])
    assert after.action is DeviceAction.ANSWER  # cam1 starts afresh, nothing half-made reused


def test_skipper_reference_is_only_replaced_by_remember(digits: dict[int, np.ndarray]) -> None:
    skipper: FrameSkipper[str] = FrameSkipper(SkipConfig(threshold=0.5, pixel_delta=0))
    assert skipper.reuse(make_frame([digits[3]], seq=0)) is None  # nothing to compare with
    skipper.remember(make_frame([digits[3]], seq=0), "three")
    assert skipper.reuse(make_frame([digits[3]], seq=1)) == ("site1-cam1-0", "three")
    skipper.forget("site1", "cam1")
    assert skipper.reuse(make_frame([digits[3]], seq=2)) is None


# --- the confidence rule ------------------------------------------------------------


def test_device_answers_confident_frames_and_forwards_unsure_ones(
    model: OnnxModel, split: DigitsSplit
) -> None:
    pixels = [digit_to_pixels(x) for x in split.x_heldout[:200]]
    confidences = model.predict_proba(pixels_to_features(pixels)).max(axis=1)
    sure, unsure = int(confidences.argmax()), int(confidences.argmin())
    threshold = float((confidences[sure] + confidences[unsure]) / 2)
    device = tier(model, threshold=threshold)
    frames = [
        make_frame([pixels[sure]], camera="cam1"),
        make_frame([pixels[unsure]], camera="cam2", priority=1),
    ]
    answered, forwarded = device.process(frames)
    assert answered.action is DeviceAction.ANSWER
    assert answered.reason is DeviceReason.CONFIDENT
    assert answered.confidence >= threshold
    assert forwarded.action is DeviceAction.FORWARD  # priority 1 too: the edge is on site
    assert forwarded.reason is DeviceReason.UNSURE
    assert forwarded.confidence < threshold


def test_a_skipped_frame_of_a_forwarded_reference_says_which_frame_to_take_from(
    model: OnnxModel, digits: dict[int, np.ndarray]
) -> None:
    device = tier(model, threshold=1.0)
    first, second = device.process([make_frame([digits[3]], seq=k) for k in range(2)])
    if first.confidence >= 1.0:
        pytest.skip("the model is certain of this digit in float32")
    assert first.action is DeviceAction.FORWARD
    assert second.action is DeviceAction.SKIP
    assert second.reused_from == first.frame_id


def test_a_frame_without_regions_is_answered_with_no_labels(model: OnnxModel) -> None:
    device = tier(model, threshold=1.0)
    frame = make_frame([])
    first, second = device.process([frame, frame])
    for decision in (first, second):
        assert decision.action is DeviceAction.ANSWER
        assert decision.reason is DeviceReason.NO_REGIONS
        assert decision.labels == ()
        assert decision.reused_from is None


def test_policy_table_on_given_scores() -> None:
    policy = DevicePolicy(DeviceConfig(threshold=0.8))
    frame = make_frame([np.zeros((SIDE, SIDE), np.uint8), np.zeros((SIDE, SIDE), np.uint8)])
    sure = np.array([[0.9, 0.1], [0.05, 0.95]], np.float32)
    mixed = np.array([[0.9, 0.1], [0.3, 0.7]], np.float32)
    at = np.array([[0.8, 0.2], [0.1, 0.9]], np.float32)

    def decide(scores: np.ndarray) -> DeviceDecision:
        return policy.decide(frame, scores)

    assert decide(sure).action is DeviceAction.ANSWER
    assert decide(sure).labels == (0, 1)
    assert decide(mixed).action is DeviceAction.FORWARD  # as sure as its least sure region
    assert decide(mixed).confidence == pytest.approx(0.7)
    assert decide(at).action is DeviceAction.ANSWER  # >= threshold
    assert policy.may_reuse(frame)
    assert not policy.may_reuse(replace(frame, priority=1))


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 1.5}, "SkipConfig.threshold"),
        ({"threshold": -0.1}, "SkipConfig.threshold"),
        ({"threshold": math.nan}, "SkipConfig.threshold"),
        ({"threshold": "0.1"}, "SkipConfig.threshold"),
        ({"pixel_delta": 256}, "SkipConfig.pixel_delta"),
        ({"pixel_delta": -1}, "SkipConfig.pixel_delta"),
        ({"pixel_delta": 2.5}, "SkipConfig.pixel_delta"),
        ({"max_reuse": -1}, "SkipConfig.max_reuse"),
        ({"max_reuse": True}, "SkipConfig.max_reuse"),
    ],
)
def test_skip_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        SkipConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 1.01}, "DeviceConfig.threshold"),
        ({"threshold": math.inf}, "DeviceConfig.threshold"),
        ({"signal": "loudness"}, "DeviceConfig.signal"),
    ],
)
def test_device_config_errors_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        DeviceConfig(**kwargs)  # type: ignore[arg-type]


def test_configs_are_frozen() -> None:
    config = SkipConfig()
    with pytest.raises(AttributeError):
        config.threshold = 0.5  # type: ignore[misc]


# --- the camera's static scene ----------------------------------------------------


def test_static_scene_keeps_boxes_and_digits_for_runs(split: DigitsSplit) -> None:
    options = CameraOptions(
        cameras=1,
        width=160,
        height=120,
        regions_per_frame=2,
        scene="static",
        mean_run=10.0,
        seed=3,
    )
    camera = CameraSimulator(options, split)
    pairs = [camera.make_frame("cam1", k, k / 25.0) for k in range(200)]
    frames = [f for f, _ in pairs]
    assert {f.regions for f in frames} == {frames[0].regions}  # the boxes never move
    assert all(len(t) == 2 for _, t in pairs)
    assert all(f.seq == k and f.captured_at == k / 25.0 for k, f in enumerate(frames))
    differences: list[float] = []
    changed: list[float] = []
    for (a, ta), (b, tb) in itertools.pairwise(pairs):
        assert not np.array_equal(a.raw_image, b.raw_image)  # fresh sensor noise on every frame
        worst = max(crop_difference(x, y, 8) for x, y in zip(a.crops(), b.crops(), strict=True))
        differences.append(worst)
        if ta != tb:
            changed.append(worst)
    assert changed, "some digit should change in 200 frames with runs of 10"
    assert min(changed) > 0.02  # a new label is always a visible change
    # Both regions keep their digit with probability 0.9 ** 2 = 0.81 per frame (a new
    # digit may have the same label, so this counts digits, not labels).
    unchanged = sum(d < 0.02 for d in differences) / len(differences)
    assert 0.7 < unchanged < 0.92
