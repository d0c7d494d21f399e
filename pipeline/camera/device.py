"""The device tier: skip unchanged frames, answer confident ones, forward the rest.

A camera that can run a tiny model (manifest role ``device``) sits in front of the
edge worker. For each frame it does one of three things:

* **skip**: the frame's regions look the same as in the last frame the device
  processed for that camera, so that frame's answer is reused (Reducto, SIGCOMM 2020,
  and Glimpse, SenSys 2015, filter frames with cheap differences the same way);
* **answer**: the device model is confident, its answer is final;
* **forward**: the device model is unsure; the frame goes to the edge worker.

Three parts, all pure (no clock, no I/O): :class:`FrameSkipper` (the difference
detector), :class:`DevicePolicy` (the decision table) and :class:`DeviceTier`, which
runs the device model on the frames that are not skipped and keeps per-camera state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Generic, TypeVar

import numpy as np

from pipeline.inference.calibration import DEFAULT_SIGNAL, SIGNALS, frame_confidence
from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.checks import require_number
from schemas.errors import ConfigError
from schemas.messages import Frame, Region

__all__ = [
    "DeviceAction",
    "DeviceConfig",
    "DeviceDecision",
    "DevicePolicy",
    "DeviceReason",
    "DeviceTier",
    "FrameSkipper",
    "SkipConfig",
    "crop_difference",
]

R = TypeVar("R")

_MAX_PIXEL = 255.0


def _number_in(owner: str, name: str, value: object, low: float, high: float) -> float:
    """``value`` as a float in [low, high]; ConfigError naming ``owner.name`` otherwise."""
    return require_number(f"{owner}.{name}", value, low, high)


def _int_in(owner: str, name: str, value: object, low: int, high: int) -> int:
    """``value`` as an int in [low, high]; ConfigError naming ``owner.name`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{owner}.{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


# --- the difference detector ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkipConfig:
    """When a frame counts as unchanged.

    ``threshold``: a region is unchanged while :func:`crop_difference` from its
    reference is *below* this, in [0, 1]; 0 disables skipping. ``pixel_delta``: per-pixel
    differences up to this many grey levels (0..255) count as sensor noise, not change.
    ``max_reuse``: after this many consecutive reuses a camera's next frame gets a fresh
    inference whatever it looks like, which bounds how stale an answer can get
    (0: never reuse; 25 is one second at 25 frames/s).

    The defaults come from ``python -m bench.skipping`` (sensor noise sigma 2 grey
    levels): with ``pixel_delta`` 8 every threshold from 0.001 to 0.05 skipped the same
    frames and missed no change, and changes began to be missed from 0.1; without the
    dead zone, noise alone measures about 0.009 and nothing below 0.01 was skipped.
    """

    threshold: float = 0.02
    pixel_delta: int = 8
    max_reuse: int = 25

    def __post_init__(self) -> None:
        _number_in("SkipConfig", "threshold", self.threshold, 0.0, 1.0)
        _int_in("SkipConfig", "pixel_delta", self.pixel_delta, 0, 255)
        _int_in("SkipConfig", "max_reuse", self.max_reuse, 0, 1_000_000)


def crop_difference(reference: np.ndarray, crop: np.ndarray, pixel_delta: int = 0) -> float:
    """How much ``crop`` differs from ``reference``, in [0, 1]: 0 same, 1 black vs white.

    The mean absolute pixel difference divided by 255, with differences of at most
    ``pixel_delta`` grey levels set to 0 first. Why this feature: it grows with both
    how much of the crop changed and by how much, so a new object scores high (two
    different digits scored 0.08 and up in the benchmark), while zero-mean sensor noise
    averages out
    instead of tripping it as a maximum would; dividing by the pixel count and 255 makes
    one threshold fit every crop size. The ``pixel_delta`` dead zone removes what noise
    is left, so the threshold can sit just above 0. A different shape counts as 1.0.
    """
    if reference.shape != crop.shape:
        return 1.0
    delta = np.abs(crop.astype(np.int16) - reference.astype(np.int16))
    if pixel_delta > 0:
        delta[delta <= pixel_delta] = 0
    return float(delta.mean()) / _MAX_PIXEL if delta.size else 0.0


@dataclass(slots=True)
class _Reference(Generic[R]):
    """The last frame of one camera that was processed, and its result."""

    frame_id: str
    regions: tuple[Region, ...]
    crops: tuple[np.ndarray, ...]
    result: R
    reuses: int = 0


class FrameSkipper(Generic[R]):
    """Per camera, reuses the result of the last processed frame while nothing changed.

    The reference of a camera is the last frame given to :meth:`remember`; a skipped
    frame does not replace it, so a slow drift adds up until it crosses the threshold.
    Regions are matched by index: a frame is unchanged only if it has as many regions
    as its reference, each with the same box, and every crop differs from its
    reference crop by less than ``config.threshold``. ``R`` is whatever the caller
    stores as the result. Not thread-safe: call from one thread at a time.
    """

    __slots__ = ("_config", "_references")

    def __init__(self, config: SkipConfig) -> None:
        self._config = config
        self._references: dict[tuple[str, str], _Reference[R]] = {}

    @property
    def config(self) -> SkipConfig:
        """The settings in use."""
        return self._config

    def unchanged(self, frame: Frame) -> bool:
        """True if ``frame`` looks like its camera's reference (no state changes)."""
        ref = self._references.get((frame.site, frame.camera))
        threshold = self._config.threshold
        if ref is None or threshold == 0.0 or not frame.regions:
            return False
        if frame.regions != ref.regions:  # a moved, added or dropped box is a change
            return False
        delta = self._config.pixel_delta
        return all(
            crop_difference(old, region.crop(frame.raw_image), delta) < threshold
            for region, old in zip(frame.regions, ref.crops, strict=True)
        )

    def reuse(self, frame: Frame) -> tuple[str, R] | None:
        """(reference frame id, its result) if ``frame`` may reuse it, else None.

        A reuse is counted; past ``config.max_reuse`` consecutive ones the answer is
        None until the camera's next :meth:`remember`.
        """
        ref = self._references.get((frame.site, frame.camera))
        if ref is None or ref.reuses >= self._config.max_reuse or not self.unchanged(frame):
            return None
        ref.reuses += 1
        return ref.frame_id, ref.result

    def remember(self, frame: Frame, result: R) -> None:
        """Make ``frame`` (just processed, with ``result``) its camera's reference."""
        self._references[(frame.site, frame.camera)] = _Reference(
            frame_id=frame.frame_id,
            regions=frame.regions,
            # Copies: the caller may reuse the image buffer for its next frame.
            crops=tuple(crop.copy() for crop in frame.crops()),
            result=result,
        )

    def forget(self, site: str, camera: str) -> None:
        """Drop a camera's reference: its next frame gets a fresh inference."""
        self._references.pop((site, camera), None)


# --- the decision table -------------------------------------------------------------


class DeviceAction(StrEnum):
    """What the device does with a frame."""

    SKIP = "skip"  # reuse the answer of the camera's last processed frame
    ANSWER = "answer"  # the device model's answer is final
    FORWARD = "forward"  # send the frame on to the edge worker


class DeviceReason(StrEnum):
    """Why, one code per row of :class:`DevicePolicy`."""

    UNCHANGED = "unchanged"
    NO_REGIONS = "no_regions"
    CONFIDENT = "confident"
    UNSURE = "unsure"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """The device's confidence rule: answer when ``signal`` >= ``threshold``.

    ``threshold`` is the device's own, in [0, 1]; a frame's ``threshold`` field is
    meant for the edge model and is not read here. ``signal`` is a name from
    ``pipeline.inference.calibration.SIGNALS``.
    """

    threshold: float = 0.9
    signal: str = DEFAULT_SIGNAL

    def __post_init__(self) -> None:
        _number_in("DeviceConfig", "threshold", self.threshold, 0.0, 1.0)
        if self.signal not in SIGNALS:
            raise ConfigError(
                f"DeviceConfig.signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}"
            )


@dataclass(frozen=True, slots=True, eq=False)
class DeviceDecision:
    """The device's outcome for one frame.

    ``labels``, ``scores`` (float32, regions x classes) and ``confidence`` are the
    device model's. For ``skip`` they are copied from the frame ``reused_from`` (None
    otherwise). If that frame was forwarded, they are the device's unsure guess: the
    caller should give the skipped frame the final result of ``reused_from``.
    """

    frame_id: str
    action: DeviceAction
    reason: DeviceReason
    labels: tuple[int, ...]
    scores: np.ndarray
    confidence: float
    reused_from: str | None = None

    def reused_by(self, frame_id: str, reference_id: str) -> DeviceDecision:
        """This answer given to ``frame_id`` as a skip reusing ``reference_id``."""
        return replace(
            self,
            frame_id=frame_id,
            action=DeviceAction.SKIP,
            reason=DeviceReason.UNCHANGED,
            reused_from=reference_id,
        )


class DevicePolicy:
    """The device's decision table, first match wins.

    Before inference, :meth:`may_reuse`:

    1. priority 1 -> fresh inference. The frames that matter most never get a stale
       answer; this costs one inference each, and 10% of frames are priority 1 in the
       default simulator mix.
    2. no regions -> fresh (there is nothing to compare, and nothing to infer).
    3. otherwise the frame may reuse its camera's last answer if it is unchanged
       (:class:`FrameSkipper`): ``skip``, ``unchanged``.

    After inference, :meth:`decide`:

    4. no regions -> ``answer``, ``no_regions`` (empty labels).
    5. confidence >= threshold -> ``answer``, ``confident``.
    6. otherwise -> ``forward``, ``unsure``. Priority 1 frames are forwarded too: the
       edge is on the site's network, and its own table answers priority 1 frames
       itself, so forwarding adds one local hop, never a cloud round trip. Privacy
       needs no row: the edge is on the site, so even ``local_only`` frames may go.
    """

    __slots__ = ("_config",)

    def __init__(self, config: DeviceConfig) -> None:
        self._config = config

    @property
    def config(self) -> DeviceConfig:
        """The settings in use."""
        return self._config

    def may_reuse(self, frame: Frame) -> bool:
        """Rows 1-2: False if ``frame`` must get a fresh inference whatever it looks like."""
        return frame.priority != 1 and bool(frame.regions)

    def decide(self, frame: Frame, scores: np.ndarray) -> DeviceDecision:
        """Rows 4-6 for a frame the device model just scored (one row per region)."""
        labels = tuple(int(i) for i in scores.argmax(axis=1))
        confidence = frame_confidence(scores, self._config.signal)
        if not frame.regions:
            action, reason = DeviceAction.ANSWER, DeviceReason.NO_REGIONS
        elif confidence >= self._config.threshold:
            action, reason = DeviceAction.ANSWER, DeviceReason.CONFIDENT
        else:
            action, reason = DeviceAction.FORWARD, DeviceReason.UNSURE
        return DeviceDecision(
            frame_id=frame.frame_id,
            action=action,
            reason=reason,
            labels=labels,
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            confidence=confidence,
        )


# --- the tier -----------------------------------------------------------------------


@dataclass(slots=True)
class _Slot:
    """A processed frame's decision, filled in once its batch has been scored.

    The skipper stores slots rather than decisions so that a later frame of the same
    camera in the same batch can already compare against, and reuse, an earlier one.
    """

    decision: DeviceDecision | None = None


class DeviceTier:
    """The device model behind a :class:`FrameSkipper` and a :class:`DevicePolicy`.

    :meth:`process` is synchronous and CPU-bound: run it off the event loop, from one
    thread at a time (it keeps per-camera state, and frames of a camera must come in
    order).
    """

    __slots__ = ("_model", "_policy", "_skipper")

    def __init__(self, model: OnnxModel, policy: DeviceConfig, skip: SkipConfig) -> None:
        """``model`` is the device model, e.g. ``OnnxModel.load("device")``."""
        self._model = model
        self._policy = DevicePolicy(policy)
        self._skipper: FrameSkipper[_Slot] = FrameSkipper(skip)

    @property
    def model(self) -> OnnxModel:
        """The device model."""
        return self._model

    def process(self, frames: Sequence[Frame]) -> list[DeviceDecision]:
        """One decision per frame, in order; one model call for every frame not skipped.

        Frames of one camera must be in capture order, within and across calls.
        Raises what the model raises (:class:`~schemas.errors.ModelError`); the cameras
        of that batch then start afresh.
        """
        # Pass 1, in order: reuse or schedule a fresh inference.
        plan: list[tuple[str | None, _Slot]] = []  # (frame id reused, or None; slot)
        fresh: list[tuple[Frame, _Slot]] = []
        for frame in frames:
            reused = self._skipper.reuse(frame) if self._policy.may_reuse(frame) else None
            if reused is not None:
                plan.append(reused)
                continue
            slot = _Slot()
            self._skipper.remember(frame, slot)
            fresh.append((frame, slot))
            plan.append((None, slot))
        # Pass 2: score every region of the fresh frames in one call, then decide.
        try:
            crops = [crop for frame, _ in fresh for crop in frame.crops()]
            scores = self._model.predict_proba(pixels_to_features(crops))
        except Exception:
            for frame, _ in fresh:  # never leave an unfilled slot to be reused
                self._skipper.forget(frame.site, frame.camera)
            raise
        row = 0
        for frame, slot in fresh:
            n = len(frame.regions)
            slot.decision = self._policy.decide(frame, scores[row : row + n])
            row += n
        # Pass 3: the skipped frames take their reference's (now filled) decision.
        out: list[DeviceDecision] = []
        for frame, (reference_id, slot) in zip(frames, plan, strict=True):
            assert slot.decision is not None  # filled in pass 2, or by an earlier call
            if reference_id is not None:
                out.append(slot.decision.reused_by(frame.frame_id, reference_id))
            else:
                out.append(slot.decision)
        return out
