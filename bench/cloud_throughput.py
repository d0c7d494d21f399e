"""The cloud at scale: one cloud worker against raw ONNX Runtime, by batch size.

``python -m bench.cloud_throughput [--providers cpu|cuda] [--batches 1,8,32,128]
[--seconds S] [--json OUT]`` measures the cloud's real text reader (manifest role
``text-rec-cloud`` of ``models/ppocr/manifest.json``: PP-OCRv6 small, input
[N, 3, 48, W]) on shelf-label text lines (``bench/cloud_lines.py``), in one run:

* **raw ORT**: the model's session alone (``session.run``) on input tensors made
  beforehand, the lines of each batch sorted and padded as the worker pads them, on
  the chosen provider; on the CPU at each intra-op thread count tried (``--threads``,
  default 1, 2, 4, ... up to the usable cores) and the best kept;
* **path**: ``DeclaredModel.run`` on the decoded lines in this process, one batch at
  a time (preprocessing, the model, the CTC decoder): what the worker does per batch
  without NATS;
* **worker**: one ``CloudWorker`` in a process of its own, through a real nats-server,
  its queue filled beforehand (``bench/cloud_worker_run.py``), configured as raw ORT
  ran: ``cloud.providers``, ``cloud.intra_op_threads`` (the best count), ``cloud.max_batch``
  = the batch size, ``cloud.fetch_batch`` = batch / lines per escalation, and each of
  ``--in-flight`` (``cloud.batches_in_flight``);

and the ratio worker / raw ORT per batch size. The three are measured one batch size
after the other, then raw ORT once more, so that on a shared machine they are close in
time and a change of load shows (the worker is compared with the mean of both raw
figures); lines per CPU second, of this process for raw ORT and of the worker's
process, are compared too. Lines per escalation: ``--lines-per-escalation`` (default
4; a batch smaller than that sends as many as divide it). On a GPU every distinct
input shape is tuned once (cuDNN), so there the warm-up covers every distinct batch (at
most 32 per size) before anything is timed, for raw ORT and the worker alike; on the
CPU one batch warms up. Figures and the machine go to
``--json`` (default ``bench/results/cloud_throughput_<providers>.json``). A benchmark,
not a test: it asserts nothing, but it refuses to report CUDA figures from a session
that does not run on CUDA. The lines are ``bench/cloud_lines.py``'s, the worker's run
``bench/cloud_worker_run.py``'s, the table and JSON ``bench/cloud_report.py``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from bench.cloud_lines import MAX_DISTINCT_BATCHES, Cycle, LinePool
from bench.cloud_report import document, gpu_name
from bench.cloud_worker_run import WorkerError, WorkerPlan, measure_worker
from bench.common import begin_run, echo, number_list, timed_run, write_figures
from pipeline.inference.manifest import load_declaration
from pipeline.inference.providers import Runtime, session_for
from pipeline.inference.runtime import DeclaredModel
from pipeline.inference.session import read_verified

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parent.parent
MANIFEST: Final = ROOT / "models" / "ppocr" / "manifest.json"
ROLE: Final = "text-rec-cloud"
PROVIDERS: Final = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
}
DEFAULT_BATCHES: Final = {"cpu": (1, 4, 16), "cuda": (1, 8, 32, 64, 128, 256)}


@dataclass(frozen=True)
class Options:
    """One run's choices (the command line)."""

    providers: str
    batches: tuple[int, ...]
    seconds: float
    in_flight: tuple[int, ...]
    lines_per_escalation: int
    threads: tuple[int, ...]
    manifest: Path
    lines: Path | None
    json: Path
    step_timeout_s: float
    distinct: int

    @property
    def gpu(self) -> bool:
        return self.providers == "cuda"

    def cycle(self, batch: int, pool_size: int) -> Cycle:
        return Cycle.of(batch, pool_size, self.distinct)


def _thread_counts() -> tuple[int, ...]:
    cores = len(os.sched_getaffinity(0))
    counts = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= cores]
    return tuple(dict.fromkeys([*counts, cores]))


def _parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cloud_throughput",
        description="One cloud worker against raw ONNX Runtime on the cloud's text reader, "
        "by batch size.",
    )
    parser.add_argument("--providers", choices=sorted(PROVIDERS), default="cpu")
    parser.add_argument("--batches", help="batch sizes (default cpu 1,4,16; cuda up to 256)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per point (3)")
    parser.add_argument("--in-flight", default="1", help="cloud.batches_in_flight values (1)")
    parser.add_argument("--lines-per-escalation", type=int, default=4)
    parser.add_argument("--threads", help="intra-op threads to try (cpu: 1,2,4.. cores)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--lines", type=Path, help="the lines' .npz (read, or drawn there)")
    parser.add_argument("--json", type=Path, help="figures (bench/results/...<providers>.json)")
    parser.add_argument("--step-timeout", type=float, default=180.0, help="per wait (180 s)")
    parser.add_argument(
        "--distinct",
        type=int,
        default=MAX_DISTINCT_BATCHES,
        help=f"most distinct batches per size ({MAX_DISTINCT_BATCHES}; a GPU tunes each shape)",
    )
    args = parser.parse_args(argv)
    batches = DEFAULT_BATCHES[args.providers]
    if args.batches:
        batches = number_list(parser, "--batches", args.batches, int, (1, 4096))
    default_threads = "1" if args.providers == "cuda" else ",".join(map(str, _thread_counts()))
    if not 0.1 <= args.seconds <= 600 or not 1 <= args.lines_per_escalation <= 64:
        parser.error("--seconds must be in 0.1..600 and --lines-per-escalation in 1..64")
    if not 1 <= args.distinct <= 4096:
        parser.error("--distinct must be in 1..4096")
    return Options(
        providers=args.providers,
        batches=batches,
        seconds=args.seconds,
        in_flight=number_list(parser, "--in-flight", args.in_flight, int, (1, 64)),
        lines_per_escalation=args.lines_per_escalation,
        threads=number_list(parser, "--threads", args.threads or default_threads, int, (1, 256)),
        manifest=args.manifest.resolve(),
        lines=args.lines,
        json=args.json or ROOT / "bench" / "results" / f"cloud_throughput_{args.providers}.json",
        step_timeout_s=args.step_timeout,
        distinct=args.distinct,
    )


def _check_cuda() -> None:
    """CUDA and cuDNN from the nvidia-* wheels, and a CUDA provider; SystemExit if not."""
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise SystemExit(
            f"--providers cuda: this onnxruntime ({ort.__version__}, {ort.__file__}) has no "
            f"CUDAExecutionProvider (it has {available}); install onnxruntime-gpu"
        )


def _open(options: Options, threads: int) -> tuple[DeclaredModel, ort.InferenceSession]:
    """The model as the worker loads it (``cloud_worker.models``), with one session."""
    declaration, where = load_declaration(ROLE, options.manifest)
    runtime = Runtime(PROVIDERS[options.providers], intra_op_threads=threads)
    spec = replace(declaration.input, max_batch=max(options.batches))
    declaration = replace(declaration, runtime=runtime, input=spec)
    data = read_verified(options.manifest.parent / declaration.file, declaration.sha256)
    session = session_for(data, runtime, where)
    if options.gpu and session.get_providers()[0] != "CUDAExecutionProvider":
        raise SystemExit(f"the session runs on {session.get_providers()}, not on CUDA")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = declaration.resolve_labels(options.manifest.parent, metadata, where)
    return DeclaredModel(declaration, session, labels, where), session


def _warm_batches(options: Options, cycle: Cycle) -> int:
    """Batches run before timing: on a GPU every distinct one (each new shape is tuned
    once), on the CPU one."""
    return cycle.distinct if options.gpu else 1


@dataclass(frozen=True)
class Rate:
    """Lines per second of wall time, and per CPU second of this process."""

    per_s: float
    per_cpu_s: float


def _rate(fn: Callable[[int], object], batch: int, seconds: float, at_least: int = 2) -> Rate:
    """Lines/s of ``fn(call)`` over at least ``seconds`` and ``at_least`` calls."""
    calls, started, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn(calls)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= at_least:
            used = time.process_time() - cpu
            return Rate(batch * calls / elapsed, batch * calls / used if used > 0 else math.nan)


Model = tuple[DeclaredModel, ort.InferenceSession]


def _raw(options: Options, pool: LinePool, model: Model, cycle: Cycle) -> tuple[Rate, float]:
    """Raw ORT's lines/s: the worker's warm-up batches (their seconds: on a GPU, with
    each new shape's tuning), then its measured ones timed."""
    declared, session = model
    name = session.get_inputs()[0].name
    tensors = cycle.tensors(pool, declared.declaration.input)
    warm = _warm_batches(options, cycle)
    started = time.perf_counter()
    for tensor in tensors[:warm]:
        session.run(None, {name: tensor})
    warm_s = time.perf_counter() - started
    rate = _rate(
        lambda i: session.run(None, {name: tensors[(warm + i) % len(tensors)]}),
        cycle.batch,
        options.seconds,
    )
    return rate, warm_s


def _raw_and_path(
    options: Options, pool: LinePool, models: dict[int, Model], batch: int
) -> dict[str, Any]:
    """At one batch size: raw ORT at each thread count (best kept), the path at it."""
    cycle = options.cycle(batch, len(pool.images))
    # The worker's warm-up batches, then its measured ones, in the same order.
    warm = _warm_batches(options, cycle)
    row: dict[str, Any] = {"batch": batch, "distinct_batches": cycle.distinct}
    for threads, (model, session) in models.items():
        rate, warm_s = _raw(options, pool, (model, session), cycle)
        raw = rate.per_s
        row.setdefault("raw_first_pass_s_by_threads", {})[threads] = round(warm_s, 3)
        row.setdefault("raw_by_threads", {})[threads] = raw
        row["tensor_width_mean"] = float(
            np.mean(
                [
                    max(pool.images[i].shape[1] for i in cycle.batch_lines(j))
                    for j in range(cycle.distinct)
                ]
            )
        )
        echo(
            f"  raw ORT, batch {batch}, {threads} threads: {raw:,.1f} lines/s (warm-up: "
            f"{_warm_batches(options, cycle)} batches in {warm_s:.2f} s)"
        )
        if raw >= row.get("raw_lines_per_s", 0.0):
            row |= {"raw_lines_per_s": raw, "raw_lines_per_cpu_s": rate.per_cpu_s}
            row["threads"] = threads
    model = models[row["threads"]][0]
    images = [[pool.images[i] for i in cycle.batch_lines(j)] for j in range(cycle.distinct)]
    model.run(images[0])  # every shape was tuned above
    path = _rate(lambda i: model.run(images[(warm + i) % len(images)]), batch, options.seconds)
    row["path_lines_per_s"], row["path_lines_per_cpu_s"] = path.per_s, path.per_cpu_s
    echo(f"  path, batch {batch}, {row['threads']} threads: {path.per_s:,.1f} lines/s")
    return row


async def _workers(
    folder: Path, options: Options, pool: LinePool, row: dict[str, Any]
) -> list[dict[str, Any]]:
    """The worker at ``row``'s batch size, each of ``--in-flight``."""
    batch, points = row["batch"], []
    for in_flight in options.in_flight:
        cycle = options.cycle(batch, len(pool.images))
        # The worker can hardly beat the path times its batches in flight: size the
        # queue to drain in about --seconds at the lower of that and raw ORT.
        expected = min(row["raw_lines_per_s"], row["path_lines_per_s"] * in_flight)
        plan = WorkerPlan(
            manifest=options.manifest,
            role=ROLE,
            providers=PROVIDERS[options.providers],
            threads=row["threads"],
            cycle=cycle,
            in_flight=in_flight,
            lines_per_escalation=math.gcd(options.lines_per_escalation, batch),
            warm_batches=_warm_batches(options, cycle),
            measured_batches=cycle.batches_for(options.seconds, expected, max(3, 2 * in_flight)),
            preload_dlls=options.gpu,
            step_timeout_s=options.step_timeout_s,
        )
        where = folder / f"worker-{batch}-{in_flight}"
        try:
            await asyncio.to_thread(where.mkdir, parents=True)
            point = await measure_worker(where, pool, plan)
        except WorkerError as exc:
            echo(f"  worker, batch {batch}, {in_flight} in flight: FAILED: {exc}")
            points.append({"batch": batch, "in_flight": in_flight, "error": str(exc)})
            continue
        finally:  # the server's store: up to a few hundred MB
            await asyncio.to_thread(shutil.rmtree, where, True)
        echo(
            f"  worker, batch {batch}, {in_flight} in flight: {point['lines_per_s']:,.1f} "
            f"lines/s on {point['session_providers']}"
        )
        points.append(point)
    return points


def main(argv: Sequence[str] | None = None) -> int:
    options = _parse(argv)
    machine, command = begin_run(
        "The cloud worker against raw ONNX Runtime (text-rec-cloud)", "bench.cloud_throughput", argv
    )
    if options.gpu:
        _check_cuda()
    gpu = gpu_name()
    echo(
        f"  providers: {PROVIDERS[options.providers]} (available: {ort.get_available_providers()})"
    )
    echo(f"  GPU: {gpu or 'none found (nvidia-smi)'}")
    pool = LinePool.obtain(max(256, *options.batches), options.lines)
    echo(f"  lines: {pool.source}: {pool.widths()}")
    declaration, _ = load_declaration(ROLE, options.manifest)
    head = {
        "command": command,
        "machine": machine,
        "gpu": gpu,
        "providers": list(PROVIDERS[options.providers]),
        "available_providers": ort.get_available_providers(),
        "model": {
            "role": ROLE,
            "name": declaration.name,
            "version": declaration.version,
            "sha256": declaration.sha256,
        },
        "lines": {"source": pool.source, **pool.widths()},
        "options": {
            "seconds": options.seconds,
            "lines_per_escalation": options.lines_per_escalation,
            "threads_tried": list(options.threads),
            "in_flight": list(options.in_flight),
            "distinct": options.distinct,
        },
    }
    rows: dict[int, dict[str, Any]] = {}
    points: list[dict[str, Any]] = []

    def save() -> None:
        write_figures(options.json, document(head, rows, points, None))

    async def body(folder: Path) -> None:
        # Raw ORT, the path and the worker one batch size at a time: on a shared machine
        # the figures compared are measured minutes apart at most.
        models = {threads: _open(options, threads) for threads in options.threads}
        for batch in options.batches:
            row = rows[batch] = await asyncio.to_thread(_raw_and_path, options, pool, models, batch)
            save()
            measured = await _workers(folder, options, pool, row)
            # Raw ORT again, so a machine whose load changed meanwhile shows it; the
            # worker is compared with the mean of before and after.
            cycle = options.cycle(batch, len(pool.images))
            best = models[row["threads"]]
            after, again_s = await asyncio.to_thread(_raw, options, pool, best, cycle)
            row["raw_warm_again_s"] = round(again_s, 3)
            row["raw_after_lines_per_s"] = after.per_s
            row["raw_mean_lines_per_s"] = raw = (row["raw_lines_per_s"] + after.per_s) / 2
            per_cpu = (row["raw_lines_per_cpu_s"] + after.per_cpu_s) / 2
            echo(f"  raw ORT again, batch {batch}: {after.per_s:,.1f} lines/s")
            for point in measured:
                if "error" not in point:
                    point["ratio_to_raw"] = point["lines_per_s"] / raw
                    point["ratio_to_path"] = point["lines_per_s"] / row["path_lines_per_s"]
                    point["cpu_ratio_to_raw"] = point["lines_per_cpu_s"] / per_cpu
            points.extend(measured)
            save()

    done = timed_run(body, "cloud-throughput-", "")
    if done is None:
        return 130
    _, runtime = done
    figures = document(head, rows, points, runtime)
    echo()
    for line in figures["table"]:
        echo(line)
    echo(runtime.line())
    write_figures(options.json, figures)
    return 1 if any("error" in p for p in points) else 0


if __name__ == "__main__":
    sys.exit(main())
