"""The workloads of ``bench.roofline`` and their frames.

* ``Workload``: one model on one kind of frame; ``WORKLOADS`` the six a run knows
  (``a`` to ``f``, described in ``bench.roofline``);
* ``Options``: the counts and times of a run, set by the command line;
* ``Setup`` (from ``make_setup``): one workload made concrete: its frames, the encoded
  messages published (each frame id a placeholder stamped at publish, see
  ``bench.roofline_publish``), the model and the worker's settings; ``make_analyser``
  builds the analyser the worker builds for those settings.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.common import build_compute_model
from bench.roofline_procs import SITE
from bench.worker_harness import DEADLINE_MS, make_frames
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.chain import ModelChain
from pipeline.inference.model import OnnxModel
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Colour, Encoded, Frame, PrivacyClass, Region, Source

__all__ = [
    "ID_PREFIX",
    "OCR_ROLES",
    "PLACEHOLDER",
    "ROOT",
    "WORKLOADS",
    "Options",
    "Setup",
    "Workload",
    "make_analyser",
    "make_setup",
]

ROOT: Final = Path(__file__).resolve().parent.parent
DETECTOR_MANIFEST: Final = ROOT / "models" / "random" / "manifest.json"
JPEG_QUALITY: Final = 80
CAMERAS: Final = 4

# Each frame id is "roof-" and 16 digits: pooled messages hold the placeholder, each
# publish stamps the next number into a copy, and a result's id is found by the prefix.
ID_PREFIX: Final = b"roof-"
PLACEHOLDER: Final = b"N" * 16


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    model: str  # "digits", "compute", "detect" or "ocr"
    image: str  # "raw", "jpeg-grey", "jpeg-rgb" or "jpeg-shelf"
    width: int
    height: int
    regions: int  # 1: one 32x32 region; 0: none (a detector finds its own)


WORKLOADS: Final = (
    Workload("a", "digits-mlp32, 640x480 raw grey, 1 region", "digits", "raw", 640, 480, 1),
    Workload(
        "b", "digits-mlp32, 1280x720 JPEG (grey), 1 region", "digits", "jpeg-grey", 1280, 720, 1
    ),
    Workload(
        "c", "digits-mlp32, 1920x1080 JPEG (grey), 1 region", "digits", "jpeg-grey", 1920, 1080, 1
    ),
    Workload(
        "d", "compute MLP (11 MFLOP), 640x480 raw grey, 1 region", "compute", "raw", 640, 480, 1
    ),
    Workload(
        "e", "yolo-random detector 320x320, 1280x720 JPEG (RGB)", "detect", "jpeg-rgb", 1280, 720, 0
    ),
    Workload(
        "f",
        "PP-OCRv4 det + edge rec, 1280x720 shelf JPEG (RGB)",
        "ocr",
        "jpeg-shelf",
        1280,
        720,
        0,
    ),
)
# The real models: PP-OCR's detector and the edge's recogniser (models/ppocr).
OCR_ROLES: Final = ("text-det", "text-rec-edge")


@dataclass(frozen=True)
class Options:
    workloads: tuple[str, ...]
    pool: int  # distinct frames per workload
    limit_seconds: float  # each timing of a decode / ORT / edge-path point
    limit_repeats: int  # timings per point; the best is kept
    nats_messages: int  # messages for the bare subscriber
    saturate_seconds: float  # open-loop run: about this long at the offered rate
    max_frames: int  # at most this many frames in the open-loop run
    pilot_seconds: float  # the closed-loop warm-up that estimates capacity
    latency_seconds: float  # each paced run: about this long
    max_latency_frames: int
    overload: float  # offered rate / estimated capacity in the open-loop run
    quiet_s: float  # waiting for results gives up after this long without one
    time_limit_s: float  # publishing in any one run stops after this long
    inference_threads: int
    workers: int  # edge worker processes of the site, sharing its frames
    intake: str  # edge.intake ("stream", "subscription"); "" for the shipped default
    ort_threads: tuple[int, ...]
    plot: Path | None


@dataclass
class Setup:
    """One workload made concrete: its frames, messages, model and worker settings."""

    workload: Workload
    frames: list[Frame]
    pool: list[tuple[str, bytes]]
    role: str
    manifest: Path | None
    overrides: dict[str, Any]
    jpegs: list[Encoded] = field(default_factory=list)

    @property
    def frame_bytes(self) -> float:
        """The mean size of a frame message."""
        return statistics.fmean(len(data) for _, data in self.pool)


def _region(width: int, height: int) -> Region:
    return Region(width // 2 - 16, height // 2 - 16, 32, 32)


def _pictures(w: Workload, count: int, workdir: Path) -> list[np.ndarray]:
    """``count`` RGB pictures: a pan over two photographs, or a shelf video's frames
    (a frame every 0.5 s, the camera moving, labels to read)."""
    if w.image == "jpeg-shelf":
        from pipeline.camera.shelf.tiers import decode_frames
        from pipeline.camera.shelf.writer import write_shelf_video

        video = write_shelf_video(
            workdir / f"shelf-{w.key}.mp4", seconds=count / 2, width=w.width, height=w.height, fps=2
        )
        return [image for _, image in decode_frames(video.video)][:count]
    from pipeline.camera.sources.photos import photo_frames

    return photo_frames(count, w.width, w.height)


def _jpeg_frames(w: Workload, count: int, workdir: Path) -> tuple[list[Frame], list[Encoded]]:
    import cv2

    from pipeline.inference.images import encode_jpeg

    pictures = _pictures(w, count, workdir)
    if w.image == "jpeg-grey":
        pictures = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in pictures]
    jpegs = [encode_jpeg(p, JPEG_QUALITY) for p in pictures]
    regions = (_region(w.width, w.height),) if w.regions else ()
    now = time.time()
    frames = [
        Frame(
            frame_id="",
            site=SITE,
            camera=f"cam{seq % CAMERAS}",
            seq=seq,
            captured_at=now,
            image=jpeg,
            regions=regions,
            priority=1,
            deadline_ms=DEADLINE_MS,
            privacy=PrivacyClass.LOCAL_ONLY,
            colour=Colour.RGB,  # an encoded image is "rgb"; a grey JPEG decodes to grey
        )
        for seq, jpeg in enumerate(jpegs)
    ]
    return frames, jpegs


def make_setup(w: Workload, options: Options, workdir: Path) -> Setup:
    jpegs: list[Encoded] = []
    if w.image == "raw":
        frames = make_frames(options.pool)  # the camera simulator's, 640x480
    else:
        frames, jpegs = _jpeg_frames(w, options.pool, workdir)
    placeholder = (ID_PREFIX + PLACEHOLDER).decode()
    frames = [replace(f, frame_id=placeholder) for f in frames]
    for f in frames:
        assert f.priority == 1 and f.privacy is PrivacyClass.LOCAL_ONLY
    pool = [(subjects.frames(SITE, f.camera), encode(f)) for f in frames]
    overrides: dict[str, Any] = {"inference_threads": options.inference_threads}
    if options.intake:
        overrides["intake"] = options.intake
    manifest: Path | None = None
    role = "edge"
    if w.model == "compute":
        folder = workdir / "compute-model"
        if not (folder / "manifest.json").exists():
            folder.mkdir(exist_ok=True)
            build_compute_model(folder)
        manifest = folder / "manifest.json"
        overrides["model_manifest"] = str(manifest)
    elif w.model == "detect":
        manifest, role = DETECTOR_MANIFEST, "detect"
        overrides["model_manifest"] = str(manifest)
        overrides["models"] = "detect"
    elif w.model == "ocr":
        from models.ppocr import build

        if not build.ready():
            build.fetch()
        manifest, role = build.MANIFEST, ",".join(OCR_ROLES)
        overrides["model_manifest"] = str(manifest)
        overrides["models"] = role
    return Setup(w, frames, pool, role, manifest, overrides, jpegs)


def make_analyser(setup: Setup) -> Analyser:
    """The analyser the worker builds for these settings (EdgeWorker.from_settings)."""
    if setup.workload.model in ("detect", "ocr"):
        return ModelChain.load(setup.role, setup.manifest, source=Source.EDGE)
    return RegionClassifier(OnnxModel.load("edge", setup.manifest), Source.EDGE, "max_probability")
