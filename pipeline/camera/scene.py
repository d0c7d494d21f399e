"""What a simulated camera sees: its background, the digits drawn in it, sensor noise.

Each camera has a fixed textured background. Two scenes (``CameraOptions.scene``):
``random`` draws new digits at new places in every frame (every frame is news: the
worst case for a difference detector), and ``static`` is a shelf camera: each
camera's boxes stay put, each box keeps its digit for a run of frames (geometric,
mean ``mean_run``) and every frame gets fresh sensor noise (``noise_sigma`` grey
levels), so most frames barely differ from the last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from pipeline.inference.digits import DIGIT_SIDE, DigitsSplit, digit_to_pixels
from schemas.messages import Region

if TYPE_CHECKING:
    from pipeline.camera.simulator import CameraOptions

__all__ = ["SCENES", "Scene"]

SCENES = ("random", "static")
_NOISE_BANK = 16  # sensor-noise images per camera, drawn from at random


class Scene:
    """The scene of every camera of one simulator.

    ``rng`` is the simulator's own generator: random digits are drawn from it, in
    turn with the frames' other random numbers. A static scene draws from a
    generator per camera.
    """

    def __init__(
        self,
        options: CameraOptions,
        digits: DigitsSplit,
        cameras: Sequence[str],
        rng: np.random.Generator,
    ) -> None:
        self.options = options
        self._x, self._y = digits.x_heldout, digits.y_heldout
        self._rng = rng
        self._backgrounds = {
            name: self._background(np.random.default_rng(options.seed + 1000 + i))
            for i, name in enumerate(cameras)
        }
        # Static scene: per camera, its own random stream, boxes and shown digits.
        self._scene_rng = {
            name: np.random.default_rng((options.seed, 2000 + i)) for i, name in enumerate(cameras)
        }
        self._scene: dict[str, tuple[list[Region], list[int]]] = {}
        self._noise_bank: dict[str, list[np.ndarray]] = {}
        self._noise_last: dict[str, int] = {}

    def draw(
        self, camera: str, alter: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> tuple[np.ndarray, tuple[Region, ...], tuple[int, ...]]:
        """The camera's next image, its regions and their true labels.

        ``alter``, when given, changes each digit's pixels before they are drawn.
        """
        o = self.options
        image = self._backgrounds[camera].copy()
        side = DIGIT_SIDE * o.digit_scale
        placed = self._static_digits(camera) if o.scene == "static" else self._random_digits()
        truth = []
        for region, index in placed:
            pixels = digit_to_pixels(self._x[index], o.digit_scale)
            if alter is not None:
                pixels = alter(pixels)
            image[region.y : region.y + side, region.x : region.x + side] = pixels
            truth.append(int(self._y[index]))
        if o.scene == "static" and o.noise_sigma > 0:
            noise = self._noise(camera)
            image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        return image, tuple(region for region, _ in placed), tuple(truth)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        o = self.options
        ramp = np.linspace(40, 90, o.width, dtype=np.float32)[None, :]
        noise = rng.normal(0, 6, (o.height, o.width)).astype(np.float32)
        background: np.ndarray = np.clip(ramp + noise, 0, 255).astype(np.uint8)
        return background

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
