"""``python -m pipeline.camera.shelf OUT.mp4 --seconds 10 --size 1280x720 --seed 0``:
write a shelf scene and its ground truth (``OUT.jsonl``).

``add_arguments`` and ``run`` are there for a subcommand of another parser.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

__all__ = ["add_arguments", "main", "parse_size", "run"]


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is WIDTHxHEIGHT") from None
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the shelf scene writer."""
    parser.add_argument("out", help="the video to write (.mp4, .mkv, .ts); OUT.jsonl beside it")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--fps", type=float, default=10.0, help="frames a second (0.5: one every 2 s)"
    )
    parser.add_argument(
        "--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (1280x720, 1920x1080)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clean", action="store_true", help="no blur, glare, occlusion, low light or JPEG"
    )
    parser.add_argument("--crf", type=int, default=18, help="x264 quality (lower is better)")


def run(args: argparse.Namespace) -> int:
    """Write the video the parsed ``args`` describe and say what was written."""
    from pipeline.camera.shelf.writer import write_shelf_video

    width, height = args.size
    started = time.perf_counter()
    try:
        written = write_shelf_video(
            args.out,
            seconds=args.seconds,
            width=width,
            height=height,
            fps=args.fps,
            seed=args.seed,
            degrade=not args.clean,
            crf=args.crf,
        )
    except ValueError as error:
        print(f"error: {error}")
        return 2
    took = time.perf_counter() - started
    c = written.config
    print(
        f"wrote {c.frames} frames ({c.width}x{c.height}, {c.fps:g} fps, seed {c.seed}) to "
        f"{written.video} and the ground truth to {written.truth} in {took:.1f} s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.camera.shelf",
        description="Write a shelf scene of price labels (H.264) and its ground truth.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
