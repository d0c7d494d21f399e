"""What leaves the site, per pipeline and privacy class, against sending every frame.

Run ``python -m bench.pipelines`` (``--seconds`` per run, default 10; ``--json PATH``
and ``--plot PATH``, by default ``bench/results/pipelines.json`` and
``docs/plots/pipelines.png``). Each row is one run of the embedded stack
(``pipeline/demo/stack.py``: a nats-server, an edge worker, a cloud worker and 4 simulated
shelf cameras at 25 frames/s, the ``static`` scene), all with the same seed, so every
row sees the same frames:

* ``retail-shelf``: crops of uncertain regions leave (``configs/pipelines/retail-shelf.toml``);
* ``full-frame``: whole frames leave, faces blurred;
* ``embedding``: only a 16-value embedding per region leaves
  (``configs/pipelines/embedding.toml``);

each with two tiers (edge, cloud) and three (the camera's own model and frame skipping
first). The baseline is sending every frame to the cloud: the bytes of every frame as
the camera encodes it. Reported per row: bytes leaving the site per 1,000 frames and
the reduction against the baseline, bytes from the cameras to the edge per 1,000
frames, frames skipped as unchanged, the share of final answers per tier, hybrid
accuracy against the truth, and the cost per 1M frames of ``docs/cost-model.md``
(placeholder prices). Shadow samples for drift monitoring count as bytes that leave.
A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from bench.common import machine_line, save_figure
from pipeline.camera.simulator import CameraOptions
from pipeline.config import Settings
from pipeline.demo.stack import StackOptions, run_stack

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_JSON: Final = ROOT / "bench" / "results" / "pipelines.json"
DEFAULT_PLOT: Final = ROOT / "docs" / "plots" / "pipelines.png"
# (pipeline, privacy class of every frame, blur faces in whole frames)
PIPELINES: Final = (
    ("retail-shelf", "crop", True),
    ("full-frame", "full", True),
    ("embedding", "embedding", False),
)


async def _one(name: str, privacy: str, blur: bool, tiers: int, seconds: float) -> dict[str, Any]:
    camera = CameraOptions(
        seconds=seconds, scene="static", privacy=privacy, device=tiers == 3, seed=0
    )
    base = Settings()
    settings = replace(base, edge=replace(base.edge, face_blur=blur))
    summary = await run_stack(StackOptions(camera=camera, settings=settings), progress=None)
    n = summary["frames_published"]
    every = summary["bytes_to_cloud"]["every_frame"]
    left = summary["bytes_to_cloud"]["hybrid"]
    return {
        "pipeline": name,
        "privacy": privacy,
        "tiers": tiers,
        "frames": n,
        "one_result_each": summary["every_frame_one_result"],
        "bytes_left_site_per_1000": round(1000 * left / n),
        "bytes_every_frame_per_1000": round(1000 * every / n),
        "reduction": round(1 - left / every, 6),
        "bytes_camera_to_edge_per_1000": round(1000 * summary["bytes_camera_to_edge"] / n),
        "skipped": summary["frames_skipped"],
        "share_device": summary["share_final_from_device"],
        "share_edge": summary["share_final_from_edge"],
        "share_cloud": summary["share_final_from_cloud"],
        "accuracy": summary["accuracy"]["hybrid"],
        "accuracy_skipped_frames": summary["accuracy"]["skipped_frames"],
        "cost_per_million_usd": summary["cost_per_million_frames_usd"]["hybrid"],
        "cost_per_million_usd_cloud_only": summary["cost_per_million_frames_usd"]["cloud_only"],
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| pipeline | privacy | tiers | left the site / 1k frames | reduction | camera->edge "
        "/ 1k | skipped | device | edge | cloud | accuracy | $ / 1M frames |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {r['privacy']} | {r['tiers']} | "
            f"{r['bytes_left_site_per_1000']:,} B | {100 * r['reduction']:.2f}% | "
            f"{r['bytes_camera_to_edge_per_1000']:,} B | {r['skipped']} | "
            f"{_pct(r['share_device'])} | {_pct(r['share_edge'])} | {_pct(r['share_cloud'])} | "
            f"{_pct(r['accuracy'])} | {r['cost_per_million_usd']:.2f} |"
        )
    base = rows[0]
    lines.append(
        f"| every frame to the cloud | - | - | {base['bytes_every_frame_per_1000']:,} B | 0% | - "
        f"| - | - | - | 100% | - | {base['cost_per_million_usd_cloud_only']:.2f} |"
    )
    return "\n".join(lines)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['pipeline']}\n{r['tiers']} tiers" for r in rows] + ["every frame"]
    values = [r["bytes_left_site_per_1000"] for r in rows] + [rows[0]["bytes_every_frame_per_1000"]]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(labels, values, color=["tab:blue"] * len(rows) + ["tab:red"])
    ax.set_yscale("log")
    ax.set_ylabel("bytes leaving the site per 1,000 frames (log)")
    ax.set_title("What leaves the site, per pipeline (same frames, static shelf scene)")
    for x, v in enumerate(values):
        ax.text(x, v, f"{v:,}", ha="center", va="bottom", fontsize=7)
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Run every pipeline with 2 and 3 tiers; print the table, write JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="camera seconds per run")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for name, privacy, blur in PIPELINES:
        for tiers in (2, 3):
            row = asyncio.run(_one(name, privacy, blur, tiers, args.seconds))
            print(f"{name} {privacy} {tiers} tiers: done", file=sys.stderr, flush=True)
            rows.append(row)
    print(_table(rows))
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine_line(), "seconds": args.seconds, "rows": rows}, indent=2)
        + "\n"
    )
    _plot(rows, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
