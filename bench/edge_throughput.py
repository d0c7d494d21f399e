"""Edge throughput: raw ONNX Runtime against the edge worker behind NATS, in one run.

Run ``python -m bench.edge_throughput`` (``--quick`` for a smoke run, ``--json PATH``
to keep the figures). For each model and each batch size it reports:

* raw ONNX Runtime throughput of the model as the worker holds it
  (``OnnxModel.load("edge")``, one intra-op thread), in images/s, once with
  ``pixels_to_features`` on the 32x32 uint8 crops of camera frames (what the worker's
  ``_infer`` does per batch) and once for ``predict_proba`` alone;
* the edge worker's throughput through a real nats-server on loopback: frames/s from
  the first publish to the last final result, the mean batch the worker formed (from
  its ``hybridfleet_edge_batch_size`` histogram), and where the CPU went;
* the ratio worker frames/s / raw images/s at the same batch size (one region per
  frame, so one image per frame).

Two models: the shipped edge model (``digits-mlp32``, tiny) and a compute-shaped MLP
built here with random weights (``compute-mlp-4096x1024x1024x10-random``, about
11 MFLOP an image), so the ratio also shows what happens when the model does real work.

The worker runs in a child process of its own (as ``hybridfleet edge`` does in
production); the publisher and the result subscriber share this process; the
nats-server is a third process. All on 127.0.0.1. Every process started here is
stopped, also on error. This is a benchmark, not a test: it asserts nothing.

The raw measurement is in ``bench/raw_onnx.py``; the publisher in
``bench/worker_harness.py`` and the worker's process in ``bench/worker_process.py``; the
compute-shaped model and the machine description in ``bench/common.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.common import (
    COMPUTE_WIDTHS,
    begin_run,
    build_compute_model,
    choice_list,
    echo,
    flops_per_image,
    number_list,
    timed_run,
    write_figures,
)
from bench.raw_onnx import measure_raw
from bench.worker_harness import DEADLINE_MS, make_frames, measure_worker
from bench.worker_process import SITE
from pipeline.inference.model import OnnxModel
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import encode

__all__ = ["main"]

DEFAULT_BATCH_SIZES: Final = (1, 8, 32, 128)
# The publisher keeps at most this many frames in flight (published, no result yet).
# When the worker falls behind, they wait in the nats-server's outbound buffer for the
# worker's connection, which the server caps at max_pending (64 MiB by default, about
# 218 frames of 307 kB): past it the server cuts the worker off as a slow consumer and
# every frame in that buffer is lost. Seen with 256 in flight, and in 2 of about 10
# points even with 160 (49 MB of frames); never with 64 or 96.
AUTO_WINDOW_MIN: Final = 64
AUTO_WINDOW_MAX: Final = 96

log = logging.getLogger("bench.edge_throughput")


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Options:
    batch_sizes: tuple[int, ...]
    frames: int
    warmup: int
    window: int  # 0: automatic per batch size
    time_limit_s: float
    idle_s: float
    raw_seconds: float
    raw_repeats: int
    models: tuple[str, ...]


def _window(options: Options, batch: int) -> int:
    """Frames in flight: 2x the cap, within AUTO_WINDOW_MIN..AUTO_WINDOW_MAX."""
    if options.window > 0:
        return options.window
    return min(AUTO_WINDOW_MAX, max(AUTO_WINDOW_MIN, 2 * batch))


async def _run(options: Options, workdir: Path) -> dict[str, Any]:
    frames = make_frames(128)
    pool = [(subjects.frames(SITE, f.camera), encode(f)) for f in frames]
    frame_bytes = len(pool[0][1])
    models: dict[str, Path | None] = {}
    if "edge" in options.models:
        models["edge"] = None
    if "compute" in options.models:
        folder = workdir / "compute-model"
        folder.mkdir()
        models["compute"] = await asyncio.to_thread(build_compute_model, folder)
    report: dict[str, Any] = {
        "frame_bytes": frame_bytes,
        "frames_in_pool": len(pool),
        "models": {},
    }
    server = NatsServer(workdir / "nats", name="bench")
    await asyncio.to_thread(server.start)
    try:
        for key, manifest in models.items():
            model = OnnxModel.load("edge", manifest)
            entry: dict[str, Any] = {
                "name": model.name,
                "version": model.version,
                "raw": {},
                "worker": {},
            }
            if key == "compute":
                entry["mflop_per_image"] = flops_per_image(COMPUTE_WIDTHS) / 1e6
            report["models"][key] = entry
            echo(f"\n== {model.name} {model.version}")
            for batch in options.batch_sizes:
                raw = measure_raw(model, frames, batch, options.raw_seconds, options.raw_repeats)
                entry["raw"][batch] = raw
                echo(
                    f"  raw   batch {batch:4d}: "
                    f"{raw['features_and_model_images_per_s']:>10,.0f} images/s with features, "
                    f"{raw['model_only_images_per_s']:>10,.0f} model only"
                )
            for batch in options.batch_sizes:
                point = await measure_worker(
                    server,
                    pool,
                    manifest,
                    batch,
                    frames=options.frames,
                    warmup=options.warmup,
                    window=_window(options, batch),
                    time_limit_s=options.time_limit_s,
                    idle_s=options.idle_s,
                )
                raw = entry["raw"][batch]
                point["ratio_to_raw_with_features"] = (
                    point["frames_per_s"] / raw["features_and_model_images_per_s"]
                )
                point["ratio_to_raw_model_only"] = (
                    point["frames_per_s"] / raw["model_only_images_per_s"]
                )
                entry["worker"][batch] = point
                cpu = point["cpu_cores"]
                echo(
                    f"  worker cap {batch:4d}: {point['frames_per_s']:>8,.0f} frames/s "
                    f"({point['received']}/{point['sent']} results), mean batch "
                    f"{point['mean_batch']:.1f}, ratio {point['ratio_to_raw_with_features']:.3f}, "
                    f"cores worker {cpu['worker']:.2f} server {cpu['nats_server']:.2f} "
                    f"bench {cpu['publisher_and_subscriber']:.2f}"
                )
    finally:
        await asyncio.to_thread(server.stop)
    return report


def _table(report: dict[str, Any], options: Options) -> str:
    lines = []
    head = (
        f"{'model':<38} {'batch':>5} {'raw img/s':>10} {'raw img/s':>10} {'in':>4} "
        f"{'worker':>8} {'mean':>6} {'ratio':>6} {'infer':>6} {'model':>5} {'cores used':>14}"
    )
    head2 = (
        f"{'':<38} {'cap':>5} {'feat+model':>10} {'model only':>10} {'fly':>4} "
        f"{'frames/s':>8} {'batch':>6} {'':>6} {'ms':>6} {'busy':>5} {'wkr/srv/bench':>14}"
    )
    lines += [head, head2, "-" * len(head)]
    for entry in report["models"].values():
        for batch in options.batch_sizes:
            raw = entry["raw"][batch]
            point = entry["worker"][batch]
            cpu = point["cpu_cores"]
            flags = "" if point["complete"] and not point["lost"] else f"  LOST {point['lost']}"
            shares = (cpu["worker"], cpu["nats_server"], cpu["publisher_and_subscriber"])
            cores = "/".join(f"{c:.2f}" for c in shares)
            lines.append(
                f"{entry['name']:<38} {batch:>5} "
                f"{raw['features_and_model_images_per_s']:>10,.0f} "
                f"{raw['model_only_images_per_s']:>10,.0f} {point['window']:>4} "
                f"{point['frames_per_s']:>8,.0f} {point['mean_batch']:>6.1f} "
                f"{point['ratio_to_raw_with_features']:>6.3f} "
                f"{point['worker_ms_per_batch']:>6.2f} "
                f"{point['model_busy_fraction']:>5.2f} {cores:>14}{flags}"
            )
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.edge_throughput",
        description="Raw ONNX Runtime vs edge worker throughput through NATS, in one run.",
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per worker point (default 6000)"
    )
    parser.add_argument(
        "--batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="comma-separated batch sizes / worker max_batch_size caps (default 1,8,32,128)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write figures")
    parser.add_argument(
        "--models",
        default="edge,compute",
        help="comma-separated: edge (shipped digits-mlp32), compute (4096x1024x1024x10)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help=f"max frames in flight (default: 2 x batch within {AUTO_WINDOW_MIN}.."
        f"{AUTO_WINDOW_MAX}; at 160 and more the server may cut the worker off)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds of publishing per point (60)"
    )
    args = parser.parse_args(argv)
    sizes = number_list(parser, "--batch-sizes", args.batch_sizes, int, (1, 4096))
    models = choice_list(parser, "--models", args.models, ("edge", "compute"))
    if args.window < 0:
        parser.error("--window must be >= 0 (0: automatic)")
    quick = args.quick
    frames = args.frames if args.frames is not None else (600 if quick else 6000)
    if frames < 1:
        parser.error("--frames must be >= 1")
    options = Options(
        batch_sizes=sizes,
        frames=frames,
        warmup=min(frames, 100 if quick else 500),
        window=args.window,
        time_limit_s=args.time_limit or (15.0 if quick else 60.0),
        idle_s=10.0,
        raw_seconds=0.05 if quick else 0.3,
        raw_repeats=3 if quick else 5,
        models=models,
    )
    return options, args.json


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path = _parse(argv)
    # SIGTERM stops the run like Ctrl-C does, so the finally blocks stop the worker
    # process and the nats-server (which runs in a session of its own).
    machine, _ = begin_run("hybridfleet edge throughput benchmark", "bench.edge_throughput", argv)
    echo(
        "frames: 640x480 uint8, one 32x32 digit region each, priority 1 and privacy "
        "local_only, so the worker answers every one on the edge (reason priority_local) "
        "and no CloudWorker is needed (so the worker logs 'link to the cloud is DOWN': "
        "expected, and no matter for priority-1 frames)"
    )
    echo(
        f"per worker point: {options.warmup} warm-up frames, then {options.frames} measured "
        f"(at most {options.time_limit_s:.0f} s of publishing); frames/s = results / "
        "(last result - first publish)"
    )
    timed = timed_run(
        lambda tmp: _run(options, tmp),
        "hybridfleet-bench-",
        " (anything else running on the machine takes cores from the processes measured)",
    )
    if timed is None:
        # By now the finally blocks have stopped the worker process and the nats-server.
        return 130
    report, times = timed
    echo()
    echo(_table(report, options))
    echo(
        "\nin fly = frames the publisher kept in flight; ratio = worker frames/s / raw "
        "images/s with features at the same batch size; infer ms = mean wall time of one "
        "batch in the worker's _infer (thread pool); model busy = share of wall time spent "
        "there; cores used = CPU seconds per wall second of the worker process / "
        "nats-server / this process (publisher + subscriber)"
    )
    echo(times.line())
    if json_path is not None:
        document = {
            "benchmark": "edge_throughput",
            "machine": machine,
            "options": {
                "batch_sizes": list(options.batch_sizes),
                "frames": options.frames,
                "warmup": options.warmup,
                "window": options.window or f"2 x batch, {AUTO_WINDOW_MIN}..{AUTO_WINDOW_MAX}",
                "time_limit_s": options.time_limit_s,
                "raw_seconds": options.raw_seconds,
                "raw_repeats": options.raw_repeats,
                "models": list(options.models),
            },
            "frames": {
                "size": "640x480 uint8, one 32x32 region",
                "priority": 1,
                "privacy": "local_only",
                "deadline_ms": DEADLINE_MS,
            },
            "total_seconds": times.seconds,
            "load_average_before": list(times.load_before),
            "load_average_after": list(times.load_after),
            **report,
        }
        write_figures(json_path, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
