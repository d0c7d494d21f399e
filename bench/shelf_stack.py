"""The shelf-label stack with and without tracks, against the edge-only and cloud-only
baselines, and across an emulated WAN: ``python -m bench.shelf_stack``.

Each variant runs the whole stack (``pipeline.demo.shelf``: nats-server, cloud and
edge workers, video cameras on generated shelf videos with ground truth, the real
PP-OCR models) on the same videos, and reports what reached the cloud (escalated
frames, crops, bytes, against sending every frame as JPEG), the lines the cloud read,
how well the final results read the prices (against the ground truth, every frame),
and end-to-end latency. One run, one machine: compare the variants with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import begin_run, echo, save_figure, write_figures
from pipeline.config import Settings
from pipeline.demo.shelf import ShelfDemo, run_shelf_demo

RESULTS = Path(__file__).parent / "results" / "shelf_stack.json"
PLOT = Path(__file__).parents[1] / "docs" / "plots" / "shelf_stack.png"

# name: (edge routing, tracks, WAN one-way delay in ms or None)
VARIANTS: dict[str, tuple[str, bool, float | None]] = {
    "hybrid, tracks": ("hybrid", True, None),
    "hybrid, no tracks": ("hybrid", False, None),
    "edge-only": ("edge_only", False, None),
    "cloud-only": ("cloud_only", False, None),
    "hybrid, tracks, WAN 20 ms": ("hybrid", True, 20.0),
}


async def _variant(demo: ShelfDemo, routing: str, tracks: bool) -> dict[str, Any]:
    base = Settings()
    settings = replace(base, edge=replace(base.edge, routing=routing, track_lines=tracks))
    s = await run_shelf_demo(demo, settings)
    shelf, b = s["shelf"], s["bytes_to_cloud"]
    return {
        "frames": s["frames_published"],
        "final_results": s["final_results"],
        "every_frame_one_result": s["every_frame_one_result"],
        "reasons": s["reasons"],
        "escalated_frames": s["escalations"],
        "crops": s["crops_escalated"],
        "lines_read": s["lines_by_tier"],
        "bytes_to_cloud": b["hybrid"],
        "bytes_every_frame": b["every_frame"],
        "bytes_share": b["share"],
        "tracked_lines": s["tracked_lines"],
        "cloud_spend_usd": s["cloud_spend_usd"],
        "latency_ms": s["latency_ms"],
        "price_exact": shelf["hybrid"]["price_exact"],
        "cer": shelf["hybrid"]["cer"],
        "prices": shelf["hybrid"]["prices"],
        "seconds": s["seconds"],
    }


def _plot(rows: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.barh(names, [rows[n]["crops"] for n in names], color="tab:blue")
    left.set_xlabel("crops sent to the cloud")
    left.invert_yaxis()
    right.barh(names, [100 * rows[n]["price_exact"] for n in names], color="tab:green")
    right.set_xlabel("prices read exactly (%)")
    right.invert_yaxis()
    right.set_yticks([])
    fig.suptitle("Shelf labels through the stack (bench.shelf_stack)")
    fig.tight_layout()
    save_figure(fig, PLOT)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name, (routing, tracks, wan) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        demo = ShelfDemo(
            cameras=args.cameras,
            seconds=args.seconds,
            fps=args.fps,
            seed=args.seed,
            compare_frames=0,
            wan_delay_ms=wan,
        )
        echo(f"-- {name}")
        rows[name] = row = await _variant(demo, routing, tracks)
        lat = row["latency_ms"]
        echo(
            f"   frames {row['frames']}, escalated {row['escalated_frames']}, crops "
            f"{row['crops']}, bytes {row['bytes_to_cloud']:,} "
            f"({100 * (row['bytes_share'] or 0):.2f}% of every frame), prices exact "
            f"{100 * row['price_exact']:.1f}% of {row['prices']}, "
            f"CER {100 * row['cer']:.1f}%, latency p50 {lat['p50']} p95 {lat['p95']} ms, "
            f"tracks {row['tracked_lines']}"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shelf_stack", description=__doc__)
    parser.add_argument("--cameras", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--fps", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", help="run only this variant (repeat)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    machine, command = begin_run("Shelf labels through the stack", "bench.shelf_stack", argv)
    rows = asyncio.run(_main(args))
    write_figures(args.json, {"command": command, "machine": machine, "variants": rows})
    if len(rows) > 1:
        _plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
