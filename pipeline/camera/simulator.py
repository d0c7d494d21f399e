"""A camera simulator: labelled, camera-sized frames published at a steady rate.

Each frame is a 640x480 grayscale image (a fixed textured background per camera)
with held-out digits from scikit-learn's ``load_digits`` drawn in as regions of
interest, so message sizes are realistic: a crop is about 1 kB, a frame 307 kB.
The simulator keeps what it published (ground truth and crops) for evaluation.
What is drawn is the scene's (``random`` or ``static``, pipeline/camera/scene.py).

Drift can be injected (``CameraOptions.drift``, pipeline/camera/drift.py): from
``drift_after_s`` into the run on, every digit's pixels are changed before they are
drawn. With the default ``drift="none"`` nothing changes, down to the random numbers
drawn.

With ``device`` set the camera is the first tier (``pipeline/camera/device.py``): its own tiny
model answers the frames it is sure of, and it reuses its last answer for a frame that
barely changed; either way it publishes the final result itself
(``results.<site>.<camera>``, source ``device``) and the frame never leaves the camera.
Only the rest go to the edge, marked ``path = ("device",)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from nats.aio.client import Client

from pipeline.camera.device import DeviceAction, DeviceConfig, DeviceTier, SkipConfig
from pipeline.camera.drift import DriftInjector, check_drift
from pipeline.camera.scene import SCENES, Scene
from pipeline.camera.sigterm import stopped_by_sigterm
from pipeline.inference.digits import DIGIT_SIDE, DigitsSplit, load_split
from pipeline.inference.model import OnnxModel
from schemas import subjects
from schemas.codec import encode
from schemas.errors import ConfigError
from schemas.messages import Frame, InferenceResult, PrivacyClass, Reason, Source
from schemas.subjects import check_token

__all__ = ["CameraOptions", "CameraSimulator", "PublishedFrame"]

log = logging.getLogger(__name__)

_PRIVACY_ORDER = (PrivacyClass.LOCAL_ONLY, PrivacyClass.CROP, PrivacyClass.FULL)

# Seeds the drift's own generator, so that drift never shifts the frames' random numbers.
_DRIFT_STREAM = 0xD1F7


@dataclass(frozen=True)
class CameraOptions:
    """What to simulate. Mixes are shares that must add up to 1."""

    site: str = "site1"
    cameras: int = 4
    rate_hz: float = 25.0  # frames per second, per camera
    seconds: float = 10.0
    width: int = 640
    height: int = 480
    digit_scale: int = 4  # a digit is drawn as (8*scale)^2 pixels
    regions_per_frame: int = 1
    priority_mix: tuple[float, float, float] = (0.1, 0.6, 0.3)  # priority 1, 2, 3
    privacy_mix: tuple[float, float, float] = (0.2, 0.6, 0.2)  # local_only, crop, full
    deadline_ms: int = 250
    seed: int = 0
    # Drift injection: one of DRIFT_KINDS; drift_strength's meaning and range depend on
    # the kind (pipeline/camera/drift.py); the drift starts drift_after_s into the run.
    drift: str = "none"
    drift_strength: float = 0.0
    drift_after_s: float = 0.0
    scene: str = "random"  # one of SCENES
    # A privacy class for every frame (a PrivacyClass value), instead of privacy_mix.
    privacy: str = ""
    device: bool = False  # run the device tier in the camera
    device_threshold: float = 0.9  # the device's confidence threshold
    skip_threshold: float = 0.02  # frame difference below which the device reuses (0: off)
    mean_run: float = 20.0  # static scene: mean frames a box keeps its digit
    noise_sigma: float = 2.0  # static scene: sensor noise, grey levels

    def __post_init__(self) -> None:
        check_token(self.site, "site")
        if self.cameras < 1 or self.rate_hz <= 0 or self.seconds <= 0:
            raise ConfigError("cameras must be >= 1, rate_hz and seconds > 0")
        side = DIGIT_SIDE * self.digit_scale
        if self.regions_per_frame < 1 or self.regions_per_frame * side > self.width:
            raise ConfigError(
                f"regions_per_frame must be 1..{self.width // side} for width {self.width}"
            )
        if side > self.height:
            raise ConfigError(f"digit_scale {self.digit_scale} does not fit height {self.height}")
        for name in ("priority_mix", "privacy_mix"):
            mix = getattr(self, name)
            if len(mix) != 3 or min(mix) < 0 or abs(sum(mix) - 1.0) > 1e-6:
                raise ConfigError(f"{name} must be three shares >= 0 adding up to 1, got {mix}")
        classes = [c.value for c in PrivacyClass]
        if self.privacy and self.privacy not in classes:
            raise ConfigError(f"privacy must be one of {', '.join(classes)}, got {self.privacy!r}")
        if self.scene not in SCENES:
            raise ConfigError(f"scene must be one of {', '.join(SCENES)}, got {self.scene!r}")
        if not (self.mean_run >= 1.0 and self.noise_sigma >= 0.0):
            raise ConfigError(
                f"mean_run must be >= 1 and noise_sigma >= 0, got {self.mean_run!r} "
                f"and {self.noise_sigma!r}"
            )
        check_drift(self.drift, self.drift_strength, self.drift_after_s)

    @property
    def total_frames(self) -> int:
        return self.cameras * max(1, round(self.rate_hz * self.seconds))


@dataclass(frozen=True, eq=False)
class PublishedFrame:
    """What the simulator sent, kept to score the answers against."""

    frame_id: str
    camera: str
    truth: tuple[int, ...]
    crops: tuple[np.ndarray, ...]
    priority: int
    privacy: PrivacyClass
    captured_at: float
    size_bytes: int
    drifted: bool = False  # the digits carry the injected drift
    tier: str = "edge"  # "device" when the camera answered it itself, else "edge"
    skipped: bool = False  # the device reused an earlier answer (no inference)


class CameraSimulator:
    """Builds and publishes frames for ``options.cameras`` cameras of one site."""

    def __init__(self, options: CameraOptions, digits: DigitsSplit | None = None) -> None:
        self.options = options
        self._rng = np.random.default_rng(options.seed)
        self._drift = DriftInjector(
            options.drift,
            options.drift_strength,
            options.digit_scale,
            np.random.default_rng((options.seed, _DRIFT_STREAM)),
        )
        self._run_id = secrets.token_hex(4)  # frame ids stay unique across restarts
        self.camera_names = [f"cam{i + 1}" for i in range(options.cameras)]
        self._scene = Scene(options, digits or load_split(), self.camera_names, self._rng)
        self._device = (
            DeviceTier(
                OnnxModel.load("device"),
                DeviceConfig(threshold=options.device_threshold),
                SkipConfig(threshold=options.skip_threshold),
            )
            if options.device
            else None
        )

    def run_offset_s(self, camera: str, seq: int) -> float:
        """When frame ``seq`` of ``camera`` is due, in seconds from the start of the run.

        The publishing schedule of :meth:`run`; the drift starts by it, not by the wall
        clock, so which frames drift does not depend on how fast they were published.
        """
        o = self.options
        index = self.camera_names.index(camera)
        return (seq * o.cameras + index) / (o.rate_hz * o.cameras)

    def drifted(self, camera: str, seq: int) -> bool:
        """True if frame ``seq`` of ``camera`` carries the injected drift."""
        o = self.options
        return o.drift != "none" and self.run_offset_s(camera, seq) >= o.drift_after_s

    def make_frame(
        self, camera: str, seq: int, captured_at: float
    ) -> tuple[Frame, tuple[int, ...]]:
        """One frame for ``camera`` and its ground-truth labels (one per region)."""
        o = self.options
        alter = self._drift.apply if self.drifted(camera, seq) else None
        image, regions, truth = self._scene.draw(camera, alter)
        priority = 1 + int(self._rng.choice(3, p=o.priority_mix))
        privacy = _PRIVACY_ORDER[int(self._rng.choice(3, p=o.privacy_mix))]
        if o.privacy:
            privacy = PrivacyClass(o.privacy)
        frame = Frame(
            frame_id=f"{o.site}-{camera}-{self._run_id}-{seq}",
            site=o.site,
            camera=camera,
            seq=seq,
            captured_at=captured_at,
            image=image,
            regions=regions,
            priority=priority,
            deadline_ms=o.deadline_ms,
            privacy=privacy,
        )
        return frame, truth

    async def run(
        self, nc: Client, on_publish: Callable[[PublishedFrame], None] | None = None
    ) -> list[PublishedFrame]:
        """Publish every frame on schedule; return what was published.

        SIGTERM ends the run early, between two frames: what was published so far is
        flushed and returned, so ``hybridfleet camera`` exits 0 at once (as a container's
        main process, or a ``fleet up`` child) instead of being killed. That holds where
        the process leaves SIGTERM to its default; a program that handles SIGTERM
        itself keeps its own handler.
        """
        stop = asyncio.Event()
        with stopped_by_sigterm(stop):
            published = await self._publish(nc, stop, on_publish)
            await nc.flush()
        return published

    async def _publish(
        self,
        nc: Client,
        stop: asyncio.Event,
        on_publish: Callable[[PublishedFrame], None] | None,
    ) -> list[PublishedFrame]:
        o = self.options
        per_camera = o.total_frames // o.cameras
        interval = 1.0 / (o.rate_hz * o.cameras)
        published: list[PublishedFrame] = []
        start = time.monotonic()
        for seq in range(per_camera):
            for c, camera in enumerate(self.camera_names):
                # Absolute schedule: a slow publish does not push every later frame back.
                due = start + (seq * o.cameras + c) * interval
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    log.info("SIGTERM: stopped after %d frames", len(published))
                    return published
                frame, truth = self.make_frame(camera, seq, 0.0)
                # Captured once drawn: the simulator's own drawing time is no latency.
                frame = replace(frame, captured_at=time.time())
                data = encode(frame)
                tier, skipped = "edge", False
                if self._device is not None:
                    tier, skipped = await self._device_tier(nc, frame)
                if tier == "edge":
                    sent = replace(frame, path=(Source.DEVICE.value,)) if self._device else frame
                    await nc.publish(subjects.frames(o.site, camera), encode(sent))
                record = PublishedFrame(
                    frame_id=frame.frame_id,
                    camera=camera,
                    truth=truth,
                    crops=tuple(c.copy() for c in frame.crops()),
                    priority=frame.priority,
                    privacy=frame.privacy,
                    captured_at=frame.captured_at,
                    size_bytes=len(data),
                    drifted=self.drifted(camera, seq),
                    tier=tier,
                    skipped=skipped,
                )
                published.append(record)
                if on_publish is not None:
                    on_publish(record)
        return published

    @property
    def device_model(self) -> OnnxModel | None:
        """The device tier's model, when the camera runs one."""
        return self._device.model if self._device is not None else None

    async def _device_tier(self, nc: Client, frame: Frame) -> tuple[str, bool]:
        """Answer ``frame`` on the device if it can; (tier that answered, skipped)."""
        assert self._device is not None
        # Tiny, but CPU work all the same: off the event loop.
        (decision,) = await asyncio.to_thread(self._device.process, [frame])
        skipped = decision.action is DeviceAction.SKIP
        # A reused answer is only as good as the one reused: an unsure one goes on.
        if decision.action is DeviceAction.FORWARD or (
            skipped and decision.confidence < self.options.device_threshold
        ):
            return "edge", False
        model = self._device.model
        result = InferenceResult(
            frame_id=frame.frame_id,
            site=frame.site,
            camera=frame.camera,
            seq=frame.seq,
            labels=decision.labels,
            scores=np.ascontiguousarray(decision.scores, dtype=np.float32),
            confidence=decision.confidence,
            source=Source.DEVICE,
            model=model.name,
            model_version=model.version,
            latency_ms=max(0.0, (time.time() - frame.captured_at) * 1000),
            reason=Reason.UNCHANGED if skipped else Reason.CONFIDENT,
            path=(Source.DEVICE.value,),
        )
        await nc.publish(subjects.results(frame.site, frame.camera), encode(result))
        return "device", skipped
