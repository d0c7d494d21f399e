"""Video on the command line: cameras from ``--source`` URLs or a cameras file, the
declared models a run uses, ``hybridfleet video write`` (a colour test video) and the
tuning of a declared model's uncertainty band on a video (``tune --band-for``)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.camera.shelf.cli import add_arguments as add_shelf_arguments
from pipeline.camera.shelf.cli import run as write_shelf
from pipeline.camera.sources.config import VideoCamera, load_cameras
from pipeline.config import Settings
from pipeline.planning.bands import escalated_share
from schemas.errors import ConfigError
from schemas.messages import PrivacyClass

__all__ = ["add_video_command", "apply_models", "tune_band", "video_cameras", "with_video"]


def with_video(p: argparse.ArgumentParser) -> None:
    """The options of a command that can read video cameras."""
    g = p.add_argument_group("video cameras (docs/cameras.md)")
    g.add_argument(
        "--source",
        action="append",
        default=[],
        help="a camera's video: rtsp://, http(s)://, a file or /dev/videoN (repeat for more)",
    )
    g.add_argument("--cameras-file", help="a TOML file of [[cameras]] tables")
    g.add_argument("--video-rate", type=float, default=10.0, help="frames/s per --source camera")
    g.add_argument("--video-quality", type=int, default=80, help="JPEG quality of --source frames")
    g.add_argument("--video-width", type=int, help="resize every --source camera's frames")
    g.add_argument(
        "--video-loop", action="store_true", help="play --source files again at their end"
    )
    g = p.add_argument_group("declared models (docs/models.md)")
    g.add_argument("--manifest", help="the model manifest (default: the shipped one)")
    g.add_argument("--edge-models", help="manifest roles the edge runs, e.g. detect")
    g.add_argument("--cloud-models", help="manifest roles the cloud runs, e.g. classify")


def video_cameras(args: argparse.Namespace) -> tuple[VideoCamera, ...]:
    """The cameras of ``--cameras-file`` and ``--source`` (cam1, cam2, ...)."""
    cameras = list(load_cameras(Path(args.cameras_file))) if args.cameras_file else []
    privacy = PrivacyClass(args.privacy) if getattr(args, "privacy", None) else PrivacyClass.CROP
    cameras += [
        VideoCamera(
            name=f"cam{i + 1}",
            source=url,
            rate_hz=args.video_rate,
            width=args.video_width,
            jpeg_quality=args.video_quality,
            privacy=privacy,
            deadline_ms=args.deadline_ms,
            loop=args.video_loop,
        )
        for i, url in enumerate(args.source)
    ]
    return tuple(cameras)


def apply_models(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the manifest and model roles the options name."""
    edge, cloud = settings.edge, settings.cloud
    if args.manifest:
        edge = replace(edge, model_manifest=args.manifest)
        cloud = replace(cloud, model_manifest=args.manifest)
    if args.edge_models:
        edge = replace(edge, models=args.edge_models)
    if args.cloud_models:
        cloud = replace(cloud, models=args.cloud_models)
    return replace(settings, edge=edge, cloud=cloud)


def _write(args: argparse.Namespace) -> int:
    from pipeline.camera.sources.photos import write_photo_video

    frames = round(args.seconds * args.fps)
    write_photo_video(args.out, frames, width=args.width, height=args.height, fps=args.fps)
    print(f"wrote {frames} frames ({args.width}x{args.height}, {args.fps} fps) to {args.out}")
    return 0


def add_video_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``hybridfleet video write`` and ``hybridfleet video shelf``."""
    video = sub.add_parser("video", help="test video").add_subparsers(
        dest="video_command", required=True
    )
    p = video.add_parser("write", help="write a colour test video (a pan across photographs)")
    p.add_argument("out", help="the file to write (.mp4, .mkv, .ts)")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.set_defaults(run=_write)
    p = video.add_parser(
        "shelf", help="write a shelf of price labels, with ground truth per frame (.jsonl)"
    )
    add_shelf_arguments(p)
    p.set_defaults(run=write_shelf)


def tune_band(args: argparse.Namespace) -> int:
    """``hybridfleet tune --band-for ROLES --source VIDEO --max-escalation SHARE``: the
    upper end of the last model's uncertainty band that escalates at most that share
    of the video's frames (pipeline/planning/bands.py)."""
    from pipeline.camera.sources.registry import open_source
    from pipeline.inference.analysis import Look
    from pipeline.inference.chain import ModelChain
    from pipeline.planning.bands import choose_high
    from schemas.messages import Source

    if args.max_escalation is None or not args.source:
        raise ConfigError("--band-for needs --max-escalation and --source (a video to tune on)")
    manifest = Path(args.manifest) if args.manifest else None
    chain = ModelChain.load(args.band_for, manifest, source=Source.EDGE)
    last = chain.stages[-1]
    low, high = last.declaration.confidence.uncertain_band
    source = open_source(args.source[0])
    frame_scores = []
    try:
        for n, frame in enumerate(source.frames()):
            if n >= args.frames:
                break
            (analysis,) = chain.analyse([Look(frame.image, ())])
            confidences = [d.score for d in analysis.detections]
            frame_scores.append(np.array(confidences + [x.confidence for x in analysis.lines]))
    finally:
        source.close()
    choice = choose_high(frame_scores, low, args.max_escalation)
    print(
        f"band [{choice.low}, {choice.high}) of {last.name} escalates {100 * choice.share:.1f}% "
        f"of {choice.frames} frames (now [{low}, {high}): "
        f"{100 * escalated_share(frame_scores, low, high):.1f}%)"
    )
    print(f"set confidence.uncertain_band = [{choice.low}, {choice.high}] in its manifest entry")
    return 0
