"""A camera simulator: labelled, camera-sized frames published at a steady rate.

Each frame is a 640x480 grayscale image (a fixed textured background per camera)
with held-out digits from scikit-learn's ``load_digits`` drawn in as regions of
interest, so message sizes are realistic: a crop is about 1 kB, a frame 307 kB.
The simulator keeps what it published (ground truth and crops) for evaluation.

Drift can be injected (``CameraOptions.drift``): from ``drift_after_s`` into the run
on, every digit's pixels get Gaussian noise, a brightness offset or a Gaussian blur
before they are drawn, so the crops the workers see carry the drift. With the default
``drift="none"`` nothing changes, down to the random numbers drawn.

Two scenes (``CameraOptions.scene``): ``random`` draws new digits at new places in
every frame (every frame is news: the worst case for a difference detector), and
``static`` is a shelf camera: each camera's boxes stay put, each box keeps its digit
for a run of frames (geometric, mean ``mean_run``) and every frame gets fresh sensor
noise (``noise_sigma`` grey levels), so most frames barely differ from the last.

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
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from nats.aio.client import Client

from pipeline.camera.device import DeviceAction, DeviceConfig, DeviceTier, SkipConfig
from pipeline.inference.digits import DIGIT_SIDE, DigitsSplit, digit_to_pixels, load_split
from pipeline.inference.model import OnnxModel
from schemas import subjects
from schemas.codec import check_token, encode
from schemas.errors import ConfigError
from schemas.messages import Frame, InferenceResult, PrivacyClass, Reason, Region, Source

__all__ = ["DRIFT_KINDS", "CameraOptions", "CameraSimulator", "PublishedFrame"]

log = logging.getLogger(__name__)

_PRIVACY_ORDER = (PrivacyClass.LOCAL_ONLY, PrivacyClass.CROP, PrivacyClass.FULL)

DRIFT_KINDS = ("none", "noise", "brightness", "blur")
SCENES = ("random", "static")
_NOISE_BANK = 16  # sensor-noise images per camera, drawn from at random
# What drift_strength means for each kind, and its allowed range [low, high] (never 0).
_DRIFT_STRENGTH: dict[str, tuple[str, float, float]] = {
    "noise": ("the standard deviation of Gaussian pixel noise, as a share of 255", 0.0, 1.0),
    "brightness": ("an offset added to every pixel, as a share of 255 (< 0 darkens)", -1.0, 1.0),
    "blur": ("the Gaussian blur sigma, in digit cells (one cell is digit_scale pixels)", 0.0, 4.0),
}
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
    # the kind (see _DRIFT_STRENGTH); the drift starts drift_after_s into the run.
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
        self._check_drift()

    def _check_drift(self) -> None:
        kinds = ", ".join(DRIFT_KINDS)
        if not isinstance(self.drift, str) or self.drift not in DRIFT_KINDS:
            raise ConfigError(f"drift must be one of {kinds}, got {self.drift!r}")
        for name in ("drift_strength", "drift_after_s"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if self.drift == "none":
            # A strength or start time without a kind is a forgotten setting, not a no-op.
            if self.drift_strength != 0 or self.drift_after_s != 0:
                raise ConfigError(
                    "drift_strength and drift_after_s must stay 0 when drift is 'none' "
                    f"(got {self.drift_strength!r} and {self.drift_after_s!r}); "
                    f"set drift to one of {kinds}"
                )
            return
        if self.drift_after_s < 0:
            raise ConfigError(f"drift_after_s must be >= 0, got {self.drift_after_s!r}")
        meaning, low, high = _DRIFT_STRENGTH[self.drift]
        strength = self.drift_strength
        # 0 is never allowed: it would be drift that does nothing.
        if not low <= strength <= high or strength == 0:
            rule = f"in [{low:g}, {high:g}] and not 0"
            raise ConfigError(
                f"drift_strength for drift {self.drift!r} is {meaning}; it must be {rule}, "
                f"got {strength!r}"
            )

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
        split = digits or load_split()
        self._x, self._y = split.x_heldout, split.y_heldout
        self._rng = np.random.default_rng(options.seed)
        self._drift_rng = np.random.default_rng((options.seed, _DRIFT_STREAM))
        self._run_id = secrets.token_hex(4)  # frame ids stay unique across restarts
        self.camera_names = [f"cam{i + 1}" for i in range(options.cameras)]
        self._backgrounds = {
            name: self._background(np.random.default_rng(options.seed + 1000 + i))
            for i, name in enumerate(self.camera_names)
        }
        # Static scene: per camera, its own random stream, boxes and shown digits.
        self._scene_rng = {
            name: np.random.default_rng((options.seed, 2000 + i))
            for i, name in enumerate(self.camera_names)
        }
        self._scene: dict[str, tuple[list[Region], list[int]]] = {}
        self._noise_bank: dict[str, list[np.ndarray]] = {}
        self._noise_last: dict[str, int] = {}
        self._device = (
            DeviceTier(
                OnnxModel.load("device"),
                DeviceConfig(threshold=options.device_threshold),
                SkipConfig(threshold=options.skip_threshold),
            )
            if options.device
            else None
        )

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        o = self.options
        ramp = np.linspace(40, 90, o.width, dtype=np.float32)[None, :]
        noise = rng.normal(0, 6, (o.height, o.width)).astype(np.float32)
        background: np.ndarray = np.clip(ramp + noise, 0, 255).astype(np.uint8)
        return background

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
        image = self._backgrounds[camera].copy()
        side = DIGIT_SIDE * o.digit_scale
        drifted = self.drifted(camera, seq)
        placed = self._static_digits(camera) if o.scene == "static" else self._random_digits()
        truth = []
        for region, index in placed:
            pixels = digit_to_pixels(self._x[index], o.digit_scale)
            if drifted:
                pixels = self._apply_drift(pixels)
            image[region.y : region.y + side, region.x : region.x + side] = pixels
            truth.append(int(self._y[index]))
        regions = [region for region, _ in placed]
        if o.scene == "static" and o.noise_sigma > 0:
            noise = self._noise(camera)
            image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
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
            regions=tuple(regions),
            priority=priority,
            deadline_ms=o.deadline_ms,
            privacy=privacy,
        )
        return frame, tuple(truth)

    def _random_digits(self) -> list[tuple[Region, int]]:
        """New digits at new places: one per horizontal slot."""
        o = self.options
        side = DIGIT_SIDE * o.digit_scale
        slot = o.width // o.regions_per_frame
        placed = []
        for k in range(o.regions_per_frame):
            index = int(self._rng.integers(len(self._y)))
            x = k * slot + int(self._rng.integers(0, slot - side + 1))
            y = int(self._rng.integers(0, o.height - side + 1))
            placed.append((Region(x, y, side, side), index))
        return placed

    def _static_digits(self, camera: str) -> list[tuple[Region, int]]:
        """The camera's fixed boxes; each changes its digit with probability 1/mean_run."""
        o = self.options
        rng = self._scene_rng[camera]
        if camera not in self._scene:
            side = DIGIT_SIDE * o.digit_scale
            slot = o.width // o.regions_per_frame
            boxes = [
                Region(
                    k * slot + int(rng.integers(0, slot - side + 1)),
                    int(rng.integers(0, o.height - side + 1)),
                    side,
                    side,
                )
                for k in range(o.regions_per_frame)
            ]
            self._scene[camera] = (boxes, [int(rng.integers(len(self._y))) for _ in boxes])
        else:
            boxes, shown = self._scene[camera]
            for k in range(len(shown)):
                if rng.random() < 1.0 / o.mean_run:
                    shown[k] = int(rng.integers(len(self._y)))
        boxes, shown = self._scene[camera]
        return list(zip(boxes, shown, strict=True))

    def _noise(self, camera: str) -> np.ndarray:
        """One of a bank of sensor-noise images: drawing 300k normals per frame would
        cost the simulator more CPU than the workers it feeds."""
        o = self.options
        rng = self._scene_rng[camera]
        if camera not in self._noise_bank:
            self._noise_bank[camera] = [
                np.rint(rng.normal(0.0, o.noise_sigma, (o.height, o.width))).astype(np.int16)
                for _ in range(_NOISE_BANK)
            ]
        # Never the same image twice in a row: consecutive frames always differ.
        last = self._noise_last.get(camera, 0)
        pick = (last + 1 + int(rng.integers(_NOISE_BANK - 1))) % _NOISE_BANK
        self._noise_last[camera] = pick
        return self._noise_bank[camera][pick]

    def _apply_drift(self, pixels: np.ndarray) -> np.ndarray:
        """The digit's uint8 pixels with the configured drift applied."""
        o = self.options
        values = pixels.astype(np.float64)
        if o.drift == "noise":
            values += self._drift_rng.normal(0.0, o.drift_strength * 255.0, values.shape)
        elif o.drift == "brightness":
            values += o.drift_strength * 255.0
        elif o.drift == "blur":
            values = _gaussian_blur(values, o.drift_strength * o.digit_scale)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)

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
        handled = _stop_on_sigterm(stop)
        try:
            published = await self._publish(nc, stop, on_publish)
            await nc.flush()
        finally:
            if handled:
                _release_sigterm(stop)
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


# The runs that SIGTERM stops: every simulator running in this process's main thread.
_SIGTERM_STOPS: set[asyncio.Event] = set()


def _on_sigterm() -> None:
    for stop in _SIGTERM_STOPS:
        stop.set()


def _stop_on_sigterm(stop: asyncio.Event) -> bool:
    """Have SIGTERM set ``stop``; False where the process handles SIGTERM itself.

    The handler is installed for the first run and removed with the last one
    (``_release_sigterm``), which puts the default back.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if _SIGTERM_STOPS:  # installed by a run still going on
        _SIGTERM_STOPS.add(stop)
        return True
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _on_sigterm)
    except (NotImplementedError, RuntimeError):  # no signals on this platform or loop
        return False
    _SIGTERM_STOPS.add(stop)
    return True


def _release_sigterm(stop: asyncio.Event) -> None:
    _SIGTERM_STOPS.discard(stop)
    if not _SIGTERM_STOPS:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


def _gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2-D float image; edges are extended (nearest)."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view
    rows = windows(padded, kernel.size, axis=1) @ kernel  # (h + 2r, w)
    blurred: np.ndarray = windows(rows, kernel.size, axis=0) @ kernel  # (h, w)
    return blurred
