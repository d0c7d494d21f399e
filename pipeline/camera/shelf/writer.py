"""Write a shelf scene: the video (H.264, yuv420p, PyAV's libx264) and, next to it,
its ground truth as JSON Lines, one line per frame (``OUT.mp4`` -> ``OUT.jsonl``).

The settings and seed go in the container's ``comment`` tag as well, so that a video
says how to make it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from pipeline.camera.shelf.scene import ShelfConfig, ShelfScene

__all__ = [
    "ShelfVideo",
    "ground_truth_path",
    "read_ground_truth",
    "write_scene",
    "write_shelf_video",
]


@dataclass(frozen=True)
class ShelfVideo:
    """What ``write_shelf_video`` wrote."""

    video: Path
    truth: Path
    config: ShelfConfig


def ground_truth_path(video: Path | str) -> Path:
    """Where the ground truth of ``video`` is: the same name with ``.jsonl``."""
    path = Path(video)
    truth = path.with_suffix(".jsonl")
    if truth == path:
        raise ValueError(f"{path}: a video file cannot end in .jsonl")
    return truth


def write_shelf_video(
    path: Path | str,
    *,
    seconds: float = 10.0,
    width: int = 1280,
    height: int = 720,
    fps: float = 10,
    seed: int = 0,
    degrade: bool = True,
    crf: int = 18,
) -> ShelfVideo:
    """Write ``seconds`` of a shelf scene (``round(seconds * fps)`` frames) to ``path``
    and its ground truth to ``ground_truth_path(path)``. ``crf``: x264's quality
    (lower is better; the frames are already JPEG-degraded when ``degrade``)."""
    config = ShelfConfig(width, height, fps, max(1, round(seconds * fps)), seed, degrade)
    return write_scene(path, config, crf=crf)


def write_scene(path: Path | str, config: ShelfConfig, *, crf: int = 18) -> ShelfVideo:
    """Write the scene ``config`` describes (``write_shelf_video`` with a config)."""
    video = Path(path)
    truth = ground_truth_path(video)
    scene = ShelfScene(config)
    with av.open(str(video), "w") as container, truth.open("w", encoding="utf-8") as lines:
        container.metadata["comment"] = (
            f"hybridfleet shelf scene: seed={config.seed} size={config.width}x{config.height}"
            f" fps={config.fps} frames={config.frames} degrade={config.degrade}"
        )
        rate = Fraction(config.fps).limit_denominator(1000)
        stream = container.add_stream(
            "libx264", rate=rate, options={"preset": "veryfast", "crf": str(crf)}
        )
        stream.width, stream.height, stream.pix_fmt = config.width, config.height, "yuv420p"
        for frame in scene:
            picture = av.VideoFrame.from_ndarray(frame.image, "rgb24")
            picture.pts = frame.index
            container.mux(stream.encode(picture))
            lines.write(json.dumps(frame.truth, separators=(",", ":")) + "\n")
        container.mux(stream.encode(None))
    return ShelfVideo(video, truth, config)


def read_ground_truth(path: Path | str) -> list[dict[str, Any]]:
    """The records of a ground truth file (or of the video it is next to), in order."""
    path = Path(path)
    if path.suffix != ".jsonl":
        path = ground_truth_path(path)
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
