"""End-to-end latency across an emulated WAN: edge-only, hybrid and pure-cloud routing.

Run ``python -m bench.latency`` (``--wan-delay-ms`` one way, default 20, so a 40 ms
round trip; ``--seconds``, ``--rate``, ``--cameras``; ``--plot PATH``). Each routing
runs the real topology once, in one process: a hub, a ``WanProxy`` adding the delay
in each direction, a site server that is a leaf of the hub, an edge worker on the
site, a cloud worker on the hub and the camera simulator (``hybridfleet stack
--wan-delay-ms``). Latency is from a frame's capture to its final result arriving
at a subscriber on the site.

* ``edge_only``: ``edge.routing = edge_only``, nothing leaves the site.
* ``hybrid``: the decision table as shipped.
* ``cloud_only``: ``edge.routing = cloud_only``, every frame whose privacy class allows
  it waits for the cloud's answer. The edge model still runs first (about a
  millisecond), so this is a slight overestimate of a camera sending straight to
  the cloud.

The frames' deadline is set far out (2 s), so the cloud-only runs measure the cloud's
latency, not the deadline. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvloop

from bench.common import machine_info, save_figure
from pipeline.camera.simulator import CameraOptions
from pipeline.config import Settings
from pipeline.demo.stack import StackOptions, run_stack

ROUTINGS = ("edge_only", "hybrid", "cloud_only")


async def _run_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out = {}
    for routing in ROUTINGS:
        base = Settings()
        options = StackOptions(
            camera=CameraOptions(
                cameras=args.cameras, rate_hz=args.rate, seconds=args.seconds, deadline_ms=2000
            ),
            settings=replace(base, edge=replace(base.edge, routing=routing)),
            wan_delay_ms=args.wan_delay_ms,
            keep_latencies=True,
        )
        print(f"running {routing} ...", file=sys.stderr, flush=True)
        out[routing] = await run_stack(options, progress=None)
    return out


def _row(routing: str, summary: dict[str, Any]) -> str:
    lat = summary["latency_ms"]
    return (
        f"| {routing} | {summary['final_results']}/{summary['frames_published']} "
        f"| {100 * (summary['share_final_from_cloud'] or 0):.1f}% "
        f"| {lat['p50']} | {lat['p95']} | {lat['p99']} "
        f"| {100 * summary['accuracy']['hybrid']:.1f}% "
        f"| {summary['bytes_to_cloud']['hybrid']:,} |"
    )


def _plot(results: dict[str, dict[str, Any]], path: Path, wan_delay_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for routing, summary in results.items():
        samples = np.sort(np.asarray(summary["latency_samples_ms"]))
        if samples.size:
            ax.plot(samples, np.arange(1, samples.size + 1) / samples.size, label=routing)
    ax.set_xscale("log")
    ax.set_xlabel("capture to final result (ms, log scale)")
    ax.set_ylabel("share of frames")
    ax.set_title(f"End-to-end latency, WAN {2 * wan_delay_ms:g} ms round trip")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wan-delay-ms", type=float, default=20.0, help="one way")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="frames/s per camera")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--plot", type=Path, default=Path("docs/plots/latency_cdf.png"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results = uvloop.run(_run_all(args))
    print(f"machine: {orjson.dumps(machine_info()).decode()}")
    print(
        f"WAN: {args.wan_delay_ms:g} ms each way; {args.cameras} cameras x {args.rate:g}/s "
        f"x {args.seconds:g} s"
    )
    print(
        "| routing | results | answered by the cloud | p50 ms | p95 ms | p99 ms "
        "| accuracy | bytes to the cloud |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for routing, summary in results.items():
        print(_row(routing, summary))
    _plot(results, args.plot, args.wan_delay_ms)
    print(f"plot: {args.plot}")
    if args.json:
        slim = {
            r: {k: v for k, v in s.items() if k != "latency_samples_ms"} for r, s in results.items()
        }
        args.json.write_bytes(orjson.dumps({"machine": machine_info(), "results": slim}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
