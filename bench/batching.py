"""Batching policies under Poisson load: the adaptive batcher against three baselines.

Run ``python -m bench.batching`` (``--quick`` for a smoke run, ``--json PATH`` to keep
the figures, ``--plot PATH`` for the PNG, default ``docs/plots/batching.png``).

Everything runs in this process, the way ``EdgeWorker`` runs it: an asyncio loop
offers frames to a batcher, one batch loop awaits ``next_batch()``, runs
``pixels_to_features`` and the model in a one-thread ``ThreadPoolExecutor`` (one batch
in the model at a time), and feeds ``record_batch``. No NATS, no decisions, no
publishing, so the figures are the batching policy's alone.

The model is the compute-shaped MLP of ``bench.common``
(``compute-mlp-4096x1024x1024x10-random``, random weights, about 11 MFLOP an image,
one intra-op thread): its time per image falls steeply with batch size, so batching
matters. The policies, all with the worker's defaults (``max_batch_size`` 32, queue
capacity 1024; the baselines reject a newcomer when full, as Triton's REJECT does):

* ``adaptive``: ``AdaptiveBatcher`` with ``BatchPolicy`` and a fresh ``LatencyModel``,
  latency target ``edge.latency_target_ms`` (20 ms);
* ``fixed-1``: every frame alone;
* ``fixed-max``: wait for a full batch of 32 (a 1 s safety timeout on the oldest frame);
* ``size-or-timeout``: 32 frames or the oldest frame has waited 5 ms, whichever first
  (TorchServe / Ray Serve / Triton queue delay).

First the capacity: frames/s of back-to-back batches of 32 through the same executor.
Then, for each offered load (share of that capacity) and each policy in turn, Poisson
arrivals for a warm-up and a measured window. Per point: offered and achieved frames/s
(completions inside the window / window), latency from arrival to inference done
(p50, p95, p99) of the frames that arrived in the window, mean batch size, the share
of the window the model was busy, frames shed, and frames that missed the latency
target (``--target-ms``, 50 ms; a shed or unfinished frame counts as missed). Last,
per load, ``adaptive`` against the best policy of the same run (``compare``): on a
shared machine those ratios hold from run to run, absolute frames/s do not. This is a
benchmark: it asserts nothing.

The policies are in ``bench/batchers.py``, the load and its measurement in
``bench/poisson_load.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import uvloop

from bench.batchers import DEFAULT_POLICIES, MAX_BATCH, POLICIES, QUEUE_CAPACITY
from bench.common import (
    COMPUTE_MODEL_NAME,
    build_compute_model,
    choice_list,
    echo,
    echo_header,
    machine_info,
    number_list,
    save_figure,
)
from bench.poisson_load import (
    Infer,
    Slice,
    make_crops,
    measure_capacity,
    measure_raw_capacity,
    measure_slice,
    summarise,
)
from pipeline.inference.model import OnnxModel

__all__ = ["main"]

DEFAULT_LOADS: Final = (0.10, 0.25, 0.50, 0.75, 0.90, 1.00, 1.10, 1.20)
DEFAULT_PLOT: Final = Path("docs/plots/batching.png")

log = logging.getLogger("bench.batching")


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Options:
    loads: tuple[float, ...]
    policies: tuple[str, ...]
    warmup_s: float
    window_s: float  # per point, split over the rounds
    rounds: int
    capacity_s: float
    target_s: float
    seed: int


async def _run(options: Options, infer: Infer, crops: Sequence[np.ndarray]) -> dict[str, Any]:
    raw = await asyncio.to_thread(measure_raw_capacity, infer, crops, options.capacity_s)
    # Best of three: other processes can only make the machine slower, and the loads
    # must be shares of what it does when it is not disturbed.
    tries = [await measure_capacity(infer, crops, options.capacity_s / 3) for _ in range(3)]
    capacity = max(tries)
    echo(
        f"capacity at batch {MAX_BATCH}: {capacity:,.0f} frames/s through the batch loop "
        f"(best of {', '.join(f'{x:,.0f}' for x in tries)}; the loads' 100%); raw model "
        f"with features {raw:,.0f} frames/s"
    )
    points: dict[str, dict[str, Any]] = {name: {} for name in options.policies}
    slice_s = options.window_s / options.rounds
    for i, load in enumerate(options.loads):
        slices: dict[str, list[Slice]] = {name: [] for name in options.policies}
        # The policies take turns, round after round, so that a busy spell of the
        # machine (other processes) falls on all of them alike; the turn order rotates
        # each round, so that no policy always runs first after a change of load.
        for r in range(options.rounds):
            shift = r % len(options.policies)
            for name in options.policies[shift:] + options.policies[:shift]:
                slices[name].append(
                    await measure_slice(
                        POLICIES[name][0],
                        infer,
                        crops,
                        load * capacity,
                        warmup_s=options.warmup_s,
                        window_s=slice_s,
                        # The same arrivals for every policy of a round (common
                        # random numbers): below saturation they complete the same
                        # frames, and the differences are the policies', not Poisson's.
                        seed=options.seed + 1000 * i + 10 * r,
                    )
                )
        for name in options.policies:
            point = summarise(slices[name], options.target_s)
            points[name][f"{load:.2f}"] = point
            echo(
                f"  load {load:4.0%} {name:<16} {point['throughput_per_s']:>7,.0f}/s  p50 "
                f"{point['p50_ms']:7.1f}  p99 {point['p99_ms']:7.1f} ms  batch "
                f"{point['mean_batch']:5.1f}  missed {point['missed_share']:6.1%}"
            )
    capacity_after = await measure_capacity(infer, crops, options.capacity_s)
    echo(f"capacity at batch {MAX_BATCH} after the run: {capacity_after:,.0f} frames/s")
    return {
        "capacity_per_s": capacity,
        "capacity_tries_per_s": tries,
        "capacity_after_per_s": capacity_after,
        "raw_capacity_per_s": raw,
        "points": points,
    }


def _table(report: dict[str, Any], options: Options) -> str:
    head = (
        f"{'load':>5} {'policy':<16} {'offered/s':>9} {'done/s':>8} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p99 ms':>8} {'batch':>6} {'busy':>6} {'shed':>6} {'missed':>7}"
    )
    lines = [head, "-" * len(head)]
    for load in options.loads:
        for name in options.policies:
            p = report["points"][name][f"{load:.2f}"]
            lines.append(
                f"{load:>5.0%} {name:<16} {p['offered_per_s']:>9,.0f} "
                f"{p['throughput_per_s']:>8,.0f} {p['p50_ms']:>8.1f} {p['p95_ms']:>8.1f} "
                f"{p['p99_ms']:>8.1f} {p['mean_batch']:>6.1f} {p['model_busy']:>6.0%} "
                f"{p['shed']:>6} {p['missed_share']:>7.1%}"
            )
    return "\n".join(lines)


def compare(report: dict[str, Any], options: Options) -> dict[str, dict[str, Any]]:
    """Per load, ``adaptive`` against the best of the others, in this run.

    The figures that count: on a shared machine absolute frames/s move from run to
    run, while policies measured in turns within one run see the same machine.
    The baselines are the policies not named ``adaptive...``. ``throughput_ratio``
    is adaptive's frames/s over the best of them and adaptive (so at most 1);
    ``p99_ratio`` is adaptive's p99 over the lowest p99 of the baselines (below 1:
    adaptive is better). With ``adaptive-no-saturation`` in the run, the same two
    ratios against it are ``*_vs_no_saturation``.
    """
    baselines = [n for n in options.policies if not n.startswith("adaptive")]
    if "adaptive" not in options.policies or not baselines:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for load in options.loads:
        key = f"{load:.2f}"
        points = {name: report["points"][name][key] for name in options.policies}
        best_tput = max([*baselines, "adaptive"], key=lambda n: points[n]["throughput_per_s"])
        best_p99 = min(baselines, key=lambda n: points[n]["p99_ms"])
        mine = points["adaptive"]
        out[key] = {
            "best_throughput_policy": best_tput,
            "throughput_ratio": mine["throughput_per_s"] / points[best_tput]["throughput_per_s"],
            "best_baseline_p99_policy": best_p99,
            "p99_ratio": mine["p99_ms"] / points[best_p99]["p99_ms"],
        }
        if (before := points.get("adaptive-no-saturation")) is not None:
            out[key]["throughput_ratio_vs_no_saturation"] = (
                mine["throughput_per_s"] / before["throughput_per_s"]
            )
            out[key]["p99_ratio_vs_no_saturation"] = mine["p99_ms"] / before["p99_ms"]
    return out


def _comparison_lines(comparison: dict[str, dict[str, Any]]) -> str:
    lines = ["adaptive against the best policy at each load (this run):"]
    for key, c in comparison.items():
        lines.append(
            f"  load {float(key):4.0%}: throughput {c['throughput_ratio']:6.1%} of "
            f"{c['best_throughput_policy']:<16} p99 {c['p99_ratio']:5.2f}x "
            f"{c['best_baseline_p99_policy']}'s"
            + (
                f"; against no-saturation: throughput "
                f"{c['throughput_ratio_vs_no_saturation']:6.1%}, p99 "
                f"{c['p99_ratio_vs_no_saturation']:5.2f}x"
                if "p99_ratio_vs_no_saturation" in c
                else ""
            )
        )
    return "\n".join(lines)


def write_plot(report: dict[str, Any], options: Options, path: Path, title: str) -> None:
    """p99 latency and achieved throughput against offered load, one line per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = [100 * x for x in options.loads]
    capacity = report["capacity_per_s"]
    fig, (ax_p99, ax_tput) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name in options.policies:
        points = [report["points"][name][f"{x:.2f}"] for x in options.loads]
        ax_p99.plot(loads, [p["p99_ms"] for p in points], marker="o", label=name)
        ax_tput.plot(
            loads, [100 * p["throughput_per_s"] / capacity for p in points], marker="o", label=name
        )
    ax_p99.axhline(options.target_s * 1000, color="grey", linestyle="--", linewidth=1)
    ax_p99.text(loads[0], options.target_s * 1000 * 1.08, "missed-frame target", color="grey")
    ax_p99.set_yscale("log")
    ax_p99.set_xlabel("offered load, % of capacity")
    ax_p99.set_ylabel("p99 latency, arrival to inference done (ms, log)")
    ax_p99.grid(True, which="both", alpha=0.3)
    ax_p99.legend()
    ax_tput.plot(loads, loads, color="grey", linestyle=":", linewidth=1, label="offered")
    ax_tput.set_xlabel("offered load, % of capacity")
    ax_tput.set_ylabel("achieved throughput, % of capacity")
    ax_tput.grid(True, alpha=0.3)
    ax_tput.legend()
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _parse(argv: Sequence[str] | None) -> tuple[Options, Path | None, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.batching",
        description="Adaptive batcher vs fixed-1, fixed-max and size-or-timeout, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="short windows: a smoke run")
    parser.add_argument(
        "--loads",
        default=",".join(f"{x:g}" for x in DEFAULT_LOADS),
        help="comma-separated offered loads as shares of capacity (default 0.1,...,1.2)",
    )
    parser.add_argument(
        "--policies",
        default=",".join(DEFAULT_POLICIES),
        help=f"comma-separated, of: {', '.join(POLICIES)} (default: {', '.join(DEFAULT_POLICIES)})",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured seconds per point (3)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="slices each point is measured in (2)"
    )
    parser.add_argument("--target-ms", type=float, default=50.0, help="missed-frame target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write figures")
    parser.add_argument(
        "--plot", type=Path, default=DEFAULT_PLOT, metavar="PATH", help=f"PNG ({DEFAULT_PLOT})"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = parser.parse_args(argv)
    loads = number_list(parser, "--loads", args.loads, float, (0.01, 5.0))
    policies = choice_list(parser, "--policies", args.policies, tuple(POLICIES))
    window = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
    if not 0.2 <= window <= 600:
        parser.error("--seconds must be in 0.2..600")
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 2)
    if not 1 <= rounds <= 100:
        parser.error("--rounds must be in 1..100")
    if not 1 <= args.target_ms <= 60_000:
        parser.error("--target-ms must be in 1..60000")
    options = Options(
        loads=loads,
        policies=policies,
        # The adaptive batcher's arrival-rate estimate has a 1 s half-life and is
        # corrected for its start (edge_worker.batcher.StartCorrectedRate): from 0.42 s
        # on it reads the offered rate, so 1 s of warm-up measures it as a worker that
        # has run for a while (0.3 s in --quick: about 3/4 of the rate).
        warmup_s=0.3 if args.quick else 1.0,
        window_s=window,
        rounds=rounds,
        capacity_s=0.6 if args.quick else 3.0,
        target_s=args.target_ms / 1000,
        seed=args.seed,
    )
    return options, args.json, None if args.no_plot else args.plot


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path, plot_path = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    command = echo_header("hybridfleet batching benchmark", "bench.batching", argv, machine)
    for name in options.policies:
        echo(f"  policy {name}: {POLICIES[name][1]}")
    echo(
        f"per point: {options.rounds} slices, each a fresh batcher with "
        f"{options.warmup_s:g} s warm-up and {options.window_s / options.rounds:g} s measured; "
        f"missed = latency > {options.target_s * 1000:g} ms, shed or unfinished"
    )
    echo(f"load average before: {_loadavg()}")
    started = time.monotonic()
    crops = make_crops(256, options.seed)
    with tempfile.TemporaryDirectory(prefix="hybridfleet-bench-") as tmp:
        manifest = build_compute_model(Path(tmp))
        model = OnnxModel.load("edge", manifest)
        echo(f"model: {model.name} {model.version} (one intra-op thread)")
        report = uvloop.run(_run(options, Infer(model), crops))
    total = time.monotonic() - started
    load_after = _loadavg()
    echo(f"load average after: {load_after}")
    echo()
    echo(_table(report, options))
    comparison = compare(report, options)
    if comparison:
        echo()
        echo(_comparison_lines(comparison))
    echo(f"\ntotal run time {total:.0f} s")
    if plot_path is not None:
        title = (
            f"{COMPUTE_MODEL_NAME}, capacity {report['capacity_per_s']:,.0f} frames/s at "
            f"batch {MAX_BATCH}; {machine['cpu']}, {machine['usable_cpus']} CPUs"
        )
        write_plot(report, options, plot_path, title)
        echo(f"plot written to {plot_path}")
    if json_path is not None:
        document = {
            "benchmark": "batching",
            "command": command,
            "machine": machine,
            "model": COMPUTE_MODEL_NAME,
            "policies": {name: POLICIES[name][1] for name in options.policies},
            "options": {
                "loads": list(options.loads),
                "warmup_s": options.warmup_s,
                "window_s": options.window_s,
                "rounds": options.rounds,
                "capacity_s": options.capacity_s,
                "target_ms": options.target_s * 1000,
                "seed": options.seed,
                "max_batch_size": MAX_BATCH,
                "queue_capacity": QUEUE_CAPACITY,
            },
            "total_seconds": total,
            **report,
            "adaptive_vs_best": comparison,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(document, indent=2) + "\n")
        echo(f"figures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
