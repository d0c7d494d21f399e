"""The edge at the machine's limit: the worker's throughput as a share of its limits.

Run ``python -m bench.roofline`` (``--quick`` for a smoke run, ``--json PATH`` for
the figures, default ``bench/results/roofline.json``; the plot goes to
``docs/plots/roofline.png``). For each workload, in one run, side by side:

* the limits, each measured alone on this machine:

  - **NATS**: a bare nats-py subscriber in a process of its own (the worker's intake
    limits, nothing done per message) on the same messages, published as fast as this
    process can: messages/s from its first to its last message;
  - **decode** (JPEG workloads): ``images.decode`` alone in one thread per usable core
    on the same JPEG images, images/s;
  - **ORT**: ONNX Runtime alone on tensors already decoded and preprocessed, at its
    best batch size and intra-op thread count (each tried), images/s;

* the edge worker's throughput: a real ``EdgeWorker`` (``EdgeWorker.from_settings``,
  default settings but for its models) in a process of its own. A closed-loop pilot
  (a window of frames in flight; also the warm-up) estimates its capacity; then frames
  are published open loop at 1.5x the higher of that and the lowest limit (or the
  edge path times the inference threads, if lower) for a bounded count, and frames/s = answered
  frames / (last answer - first publish). The open-loop publisher pauses while
  ``BACKLOG_BYTES`` (40 MiB) of frames have no result: past 64 MiB waiting for the
  worker the nats-server cuts it off as a slow consumer and every frame waiting is
  lost (seen with 307 kB raw frames, whose limit is the worker's event loop, so the
  backlog waits in the server and the worker's own intake limit never trips). Every
  frame is accounted for: answered, shed (the full queue answers it ``shed``),
  dropped unread by the worker's intake (``hybridfleet_edge_dropped_frames_total``),
  dead-lettered, or lost;
* the share: worker frames/s / the lowest limit;
* latency: p50 and p99 from publish to result at 50% and 90% of the worker's measured
  capacity (paced publishing, Poisson-free: evenly spaced);
* for diagnosis, the **edge path**: the worker's own per-batch work (decode, analyser)
  on one thread without NATS, frames/s.

Workloads: (a) ``digits-mlp32`` (the default edge model) on 640x480 raw grey frames
with one 32x32 region (what the camera simulator sends); (b, c) the same model on
1280x720 and 1920x1080 JPEG frames (quality 80) with one region, grey JPEGs because
the region classifier's 8x8 features take grey crops only (an RGB crop is refused,
and with it the whole batch); (d) the compute-shaped MLP of ``bench/common.py`` on
raw frames; (e) the random-weight YOLOv8-layout detector of ``models/random``
(declared: ``edge.models = "detect"``) on 1280x720 colour JPEG frames, no regions;
(f) the shelf-label task's real models, PP-OCRv4's text detector and the edge's
recogniser (``edge.models = "text-det,text-rec-edge"``), on 1280x720 colour JPEG frames
of a generated shelf video. For (f) the ONNX Runtime limit is the chain's: the
detector's time for a frame plus the recogniser's for the mean lines per frame, each
at its own best point (``bench.roofline_limits.chain_ort_limit``).

The worker runs with the shipped defaults (one batch in flight per core, the site's
frame stream as its intake); ``--inference-threads``, ``--intake`` and ``--workers``
(several worker processes sharing the site's frames) change that. The site's frame
stream is deleted before each workload's limits and worker, so that frames published
for one never wait there for the next.

Frames are priority 1 and privacy ``local_only``, so the worker answers each on the
edge and needs no cloud. Everything runs on 127.0.0.1: a nats-server, the worker's
process, the bare subscriber's process, and this one (publisher and result
subscriber). Every run is bounded in count and time; every process started here is
stopped by its pid, also on error. A benchmark, not a test: it asserts nothing.

The modules: the workloads and their frames in ``bench/roofline_workloads.py``; the
limits in ``bench/roofline_limits.py``; publishing and counting results in
``bench/roofline_publish.py``; measuring the worker in ``bench/roofline_worker.py``
(its process and the bare subscriber's in ``bench/roofline_procs.py``); one run over
the workloads in ``bench/roofline_run.py``; the table, JSON and plot in
``bench/roofline_report.py``; the command line here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bench.common import begin_run, echo, timed_run, write_figures, write_into_doc
from bench.roofline_report import figures, plot, table
from bench.roofline_run import run
from bench.roofline_workloads import ROOT, WORKLOADS, Options

__all__ = ["main"]

DEFAULT_JSON: Final = ROOT / "bench" / "results" / "roofline.json"
DEFAULT_PLOT: Final = ROOT / "docs" / "plots" / "roofline.png"
DOC: Final = ROOT / "docs" / "benchmarks.md"
DOC_BLOCK: Final = "roofline-table"


def _parse(argv: Sequence[str] | None) -> tuple[Options, Path, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.roofline",
        description="The edge worker's throughput as a share of its limits (NATS, JPEG "
        "decode, ONNX Runtime), per workload, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help="the figures"
    )
    parser.add_argument(
        "--plot", default=str(DEFAULT_PLOT), metavar="PATH", help="the plot ('' for none)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated keys of the workloads to run (default: all, a..f)",
    )
    parser.add_argument(
        "--inference-threads",
        type=int,
        default=0,
        help="the worker's edge.inference_threads (default 0, as shipped: one per core)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="edge worker processes of the site, sharing its frames (default 1)",
    )
    parser.add_argument(
        "--doc",
        action="store_true",
        help=f"also write the table into {DOC.relative_to(ROOT)} (its roofline-table block)",
    )
    parser.add_argument(
        "--intake",
        choices=("stream", "subscription"),
        default="",
        help="the worker's edge.intake (default: as shipped, the site's frame stream)",
    )
    args = parser.parse_args(argv)
    keys = tuple(k.strip() for k in args.workloads.split(",") if k.strip())
    known = {w.key for w in WORKLOADS}
    if not keys or any(k not in known for k in keys):
        parser.error(f"--workloads: choose from {', '.join(sorted(known))}")
    if not 0 <= args.inference_threads <= 64:
        parser.error("--inference-threads must be in 0..64 (0: one per core)")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be in 1..16")
    quick = args.quick
    options = Options(
        workloads=keys,
        pool=8 if quick else 16,
        limit_seconds=0.1 if quick else 0.3,
        limit_repeats=2 if quick else 3,
        nats_messages=300 if quick else 2000,
        saturate_seconds=0.6 if quick else 3.0,
        max_frames=250 if quick else 2000,
        pilot_seconds=0.5 if quick else 1.5,
        latency_seconds=0.5 if quick else 3.0,
        max_latency_frames=150 if quick else 1500,
        overload=1.5,
        quiet_s=1.5 if quick else 3.0,
        time_limit_s=10.0 if quick else 30.0,
        inference_threads=args.inference_threads,
        workers=args.workers,
        intake=args.intake,
        ort_threads=(1, 2),
        plot=Path(args.plot) if args.plot else None,
    )
    return options, args.json, args.doc


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path, doc = _parse(argv)
    # SIGTERM stops the run like Ctrl-C does, so the finally blocks stop the child
    # processes and the nats-server, each by its pid.
    machine, command = begin_run(
        "hybridfleet roofline: the edge against its limits", "bench.roofline", argv
    )
    timed = timed_run(
        lambda tmp: run(options, tmp),
        "hybridfleet-roofline-",
        " (anything else running takes cores from the processes measured)",
    )
    if timed is None:
        return 130
    reports, times = timed
    echo()
    summary = table(reports)
    echo(summary)
    echo(
        "\nNATS = a bare subscriber's messages/s; decode = JPEG images/s on all cores; ORT = "
        "the model alone at its best batch and threads; edge path = the worker's decode + "
        "analyser on one thread, no NATS (a diagnosis, not a limit); worker = answered "
        "frames / (last answer - first publish), published open loop above capacity; "
        "share = worker / the lowest of NATS, decode and ORT; p50/p99 = publish to result "
        "at 50% and 90% of the worker's measured capacity"
    )
    echo(times.line())
    document = figures(command, machine, options, times, reports)
    write_figures(json_path, document)
    if doc:
        write_into_doc(DOC, DOC_BLOCK, f"{command}, {times.line()}:\n\n{summary}")
        echo(f"table written into {DOC}")
    if options.plot is not None and reports:
        cpu = machine.get("cpu", "unknown CPU")
        subtitle = (
            f"{cpu}, {machine.get('usable_cpus')} usable cores; load average "
            f"{times.load_before[0]:.1f} before, {times.load_after[0]:.1f} after"
        )
        plot(reports, options.plot, subtitle)
        echo(f"plot written to {options.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
