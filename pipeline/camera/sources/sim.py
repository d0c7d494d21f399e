"""The simulator as a video source: ``sim:`` frames drawn by the digits simulator.

``sim:random`` or ``sim:static`` picks the scene (pipeline/camera/scene.py; ``sim:``
alone is ``random``); the query sets ``seed``, ``fps`` (the stream's own rate, default
25) and ``frames`` (how many; default 0, no end). Frames are the simulator's 640x480
grey pictures as RGB, timed ``seq / fps``: like a file, the camera plays them at that
pace when it plays in real time. A camera's ``options`` may set the same parameters.
The ground truth and regions stay in the simulator: ``hybridfleet camera`` scores
answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from pipeline.camera.scene import SCENES
from pipeline.camera.sources.base import DecodedFrame, Target, VideoSource
from pipeline.camera.sources.registry import SourceKind, register
from schemas.errors import ConfigError

__all__ = ["SimKind", "SimSource"]

_DEFAULTS = {"scene": "random", "seed": "0", "fps": "25", "frames": "0"}


@register
class SimKind(SourceKind):
    """``sim:[scene][?seed=N&fps=F&frames=N]``."""

    schemes = ("sim",)

    def target(self, url: str, options: Mapping[str, str]) -> Target:
        parts = urlsplit(url)
        given = {**dict(parse_qsl(parts.query, keep_blank_values=True)), **options}
        unknown = sorted(set(given) - set(_DEFAULTS))
        if unknown:
            raise ConfigError(f"{url!r}: unknown parameter {unknown[0]!r}; use seed, fps, frames")
        params = {**_DEFAULTS, **({"scene": parts.path} if parts.path else {}), **given}
        if params["scene"] not in SCENES:
            raise ConfigError(f"{url!r}: scene must be one of {', '.join(SCENES)}")
        for key, good in (("seed", str.isdecimal), ("frames", str.isdecimal), ("fps", _positive)):
            if not good(params[key]):
                raise ConfigError(f"{url!r}: {key} must be a number >= 0, got {params[key]!r}")
        return Target(url, live=False, options=params)

    def open(self, target: Target, timeout_s: float) -> VideoSource:
        return SimSource(target.options)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


class SimSource(VideoSource):
    """Frames of one simulated camera, drawn as they are read."""

    backend = "sim"

    def __init__(self, params: Mapping[str, str]) -> None:
        # The simulator pulls in scikit-learn's digits: only a sim: camera pays for it.
        from pipeline.camera.simulator import CameraOptions, CameraSimulator

        options = CameraOptions(cameras=1, scene=params["scene"], seed=int(params["seed"]))
        self._simulator = CameraSimulator(options)
        self._fps = float(params["fps"])
        self._frames = int(params["frames"])

    def frames(self) -> Iterator[DecodedFrame]:
        camera = self._simulator.camera_names[0]
        counter = range(self._frames) if self._frames else itertools.count()
        for seq in counter:
            frame, _ = self._simulator.make_frame(camera, seq, 0.0)
            grey = frame.image
            assert isinstance(grey, np.ndarray)  # the simulator draws raw grey pixels
            yield DecodedFrame(np.repeat(grey[:, :, None], 3, axis=2), seq / self._fps)

    def close(self) -> None:
        """Nothing to release."""
