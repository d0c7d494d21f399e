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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import nats
import numpy as np
import onnxruntime as ort
import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.camera import CameraOptions, CameraSimulator
from pipeline.config import EdgeSettings, NatsSettings, Settings
from pipeline.digits import MAX_VALUE, N_FEATURES, load_split, pixels_to_features
from pipeline.model import OnnxModel
from pipeline.natsserver import NatsServer, find_nats_server
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Frame, PrivacyClass, Reason

__all__ = ["COMPUTE_MODEL_NAME", "build_compute_model", "machine_info", "main"]

SITE: Final = "bench"
COMPUTE_MODEL_NAME: Final = "compute-mlp-4096x1024x1024x10-random"
COMPUTE_WIDTHS: Final = (N_FEATURES, 4096, 1024, 1024, 10)
DEFAULT_BATCH_SIZES: Final = (1, 8, 32, 128)
# The frame deadline is set far out, so that only the worker's own latency target
# (EdgeSettings.latency_target_ms) bounds how long the batcher waits.
DEADLINE_MS: Final = 3_600_000
# The publisher keeps at most this many frames in flight (published, no result yet).
# When the worker falls behind, they wait in the nats-server's outbound buffer for the
# worker's connection, which the server caps at max_pending (64 MiB by default, about
# 218 frames of 307 kB): past it the server cuts the worker off as a slow consumer and
# every frame in that buffer is lost. Seen with 256 in flight, and in 2 of about 10
# points even with 160 (49 MB of frames); never with 64 or 96.
AUTO_WINDOW_MIN: Final = 64
AUTO_WINDOW_MAX: Final = 96

log = logging.getLogger("bench.edge_throughput")


class BenchError(RuntimeError):
    """The benchmark could not measure (a process died, a step timed out)."""


# ---------------------------------------------------------------- the machine


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and the versions that decide the figures."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / (1 << 20), 1)
                break
    except OSError:
        pass
    cpu_quota: str | None = None
    with contextlib.suppress(OSError):
        cpu_quota = Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    try:
        server = subprocess.run(
            [str(find_nats_server()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except Exception as exc:
        server = f"unknown ({exc})"

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cgroup_cpu_max": cpu_quota,
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "nats-py": version("nats-py"),
        "nats-server": server.removeprefix("nats-server: "),
        "uvloop": version("uvloop"),
        "msgpack": version("msgpack"),
    }


# ---------------------------------------------------------------- the compute-shaped model


def build_compute_model(folder: Path, seed: int = 0) -> Path:
    """Write an MLP 64 -> 4096 -> 1024 -> 1024 -> 10 (random weights) and its manifest.

    MatMul + Add + Relu per hidden layer, Softmax at the end; input ``input`` float32
    [N, 64], output ``probabilities`` float32 [N, 10]. Returns the manifest path, which
    ``OnnxModel.load("edge", manifest=...)`` accepts (SHA-256 checked as for any model).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    weights: list[Any] = []
    previous = "input"
    layers = list(itertools.pairwise(COMPUTE_WIDTHS))
    for i, (fan_in, fan_out) in enumerate(layers):
        scale = 1.0 / math.sqrt(fan_in) / (MAX_VALUE if i == 0 else 1.0)
        w = (rng.standard_normal((fan_in, fan_out)) * scale).astype(np.float32)
        b = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"]))
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"h{i}"]))
            previous = f"h{i}"
        else:
            previous = f"z{i}"
    nodes.append(helper.make_node("Softmax", [previous], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        COMPUTE_MODEL_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hybridfleet-bench"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    path = folder / f"{COMPUTE_MODEL_NAME}.onnx"
    path.write_bytes(data)

    # Its held-out accuracy, so the manifest entry is honest (about chance: random weights).
    split = load_split()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (proba,) = session.run(["probabilities"], {"input": split.x_heldout})
    accuracy = float((np.asarray(proba).argmax(axis=1) == split.y_heldout).mean())

    entry = {
        "name": COMPUTE_MODEL_NAME,
        "version": "0.0.0",
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "input": {"name": "input", "dtype": "float32", "shape": [None, N_FEATURES]},
        "output": {"name": "probabilities", "classes": 10},
        "labels": list(range(10)),
        "temperature": 1.0,
        "heldout_accuracy": round(accuracy, 4),
        "heldout_size": len(split.y_heldout),
        "script": "bench/edge_throughput.py",
        "note": f"random weights (seed {seed}), for timing only",
    }
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"schema": 1, "models": {"edge": entry}}, indent=2) + "\n")
    return manifest


def flops_per_image(widths: Sequence[int]) -> int:
    """Multiply-adds x 2 of a dense MLP with these layer widths."""
    return sum(2 * a * b for a, b in itertools.pairwise(widths))


# ---------------------------------------------------------------- frames


# Every pooled frame's id holds this placeholder; each publish stamps a new number into
# it, so that the worker never sees a repeated id (it would dead-letter the repeat).
_ID_PLACEHOLDER = b"N" * 16
_sent_ids = itertools.count()


def _stamp_id(data: bytes) -> bytes:
    at = data.index(_ID_PLACEHOLDER)
    return b"".join((data[:at], b"%016d" % next(_sent_ids), data[at + len(_ID_PLACEHOLDER) :]))


def make_frames(count: int, seed: int = 0) -> list[Frame]:
    """Camera frames (640x480, one 32x32 digit region) that the worker never escalates.

    Priority 1: rule 2 of ``EscalationPolicy`` answers them on the edge before the
    confidence is even looked at, so this holds for the random-weight model too.
    Privacy ``local_only`` as well, so that no change of that rule could send a frame
    to JetStream or the cloud. A CloudWorker is therefore not needed.
    """
    camera = CameraSimulator(
        CameraOptions(
            site=SITE,
            cameras=4,
            regions_per_frame=1,
            priority_mix=(1.0, 0.0, 0.0),
            privacy_mix=(1.0, 0.0, 0.0),
            deadline_ms=DEADLINE_MS,
            seed=seed,
        )
    )
    frames = []
    for seq in range(count):
        name = camera.camera_names[seq % len(camera.camera_names)]
        frame, _ = camera.make_frame(name, seq, time.time())
        frame = replace(frame, frame_id=f"bench-{seq}-{_ID_PLACEHOLDER.decode()}")
        assert frame.priority == 1 and frame.privacy is PrivacyClass.LOCAL_ONLY
        frames.append(frame)
    return frames


# ---------------------------------------------------------------- raw ONNX Runtime


def _seconds_per_call(
    fn: Callable[[], object], min_seconds: float, repeats: int
) -> tuple[float, float]:
    """Median and best over ``repeats`` of the mean time of ``fn`` over ``min_seconds``."""
    fn()  # first call allocates
    samples = []
    for _ in range(repeats):
        calls = 0
        start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        samples.append(elapsed / calls)
    return statistics.median(samples), min(samples)


def measure_raw(
    model: OnnxModel, frames: Sequence[Frame], batch: int, min_seconds: float, repeats: int
) -> dict[str, float]:
    """Images/s of ``model`` at ``batch``: with ``pixels_to_features`` and model only."""
    crops = [frames[i % len(frames)].crops()[0] for i in range(batch)]
    features = pixels_to_features(crops)
    with_features, with_features_best = _seconds_per_call(
        lambda: model.predict_proba(pixels_to_features(crops)), min_seconds, repeats
    )
    model_only, model_only_best = _seconds_per_call(
        lambda: model.predict_proba(features), min_seconds, repeats
    )
    return {
        "features_and_model_images_per_s": batch / with_features,
        "model_only_images_per_s": batch / model_only,
        "features_and_model_ms_per_batch": with_features * 1000,
        "model_only_ms_per_batch": model_only * 1000,
        "features_and_model_images_per_s_best": batch / with_features_best,
        "model_only_images_per_s_best": batch / model_only_best,
    }


# ---------------------------------------------------------------- the worker's process


class _WarningLog(logging.Handler):
    """Counts warnings in the worker's process and keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}"[:300])


def _child_main(conn: Connection, url: str, batch: int, manifest: str | None) -> None:
    """Entry point of the worker's process: run an EdgeWorker until told to stop."""
    warnings_log = _WarningLog()
    logging.basicConfig(
        level=logging.WARNING, format="[edge worker process] %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger().addHandler(warnings_log)
    try:
        uvloop.run(_child(conn, url, batch, manifest, warnings_log))
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


def _worker_snapshot(worker: Any, warnings_log: _WarningLog) -> dict[str, Any]:
    m = worker.metrics
    site = worker.site

    def value(name: str, **labels: str) -> float:
        return float(m.value(name, site=site, **labels))

    return {
        "at": time.monotonic(),
        "cpu_s": time.process_time(),
        "frames_received": value("hybridfleet_edge_frames_received_total"),
        "batch_size_sum": value("hybridfleet_edge_batch_size_sum"),
        "batch_size_count": value("hybridfleet_edge_batch_size_count"),
        "inference_seconds_sum": value("hybridfleet_edge_inference_seconds_sum"),
        "decisions": {
            r.value: value("hybridfleet_edge_decisions_total", reason=r.value) for r in Reason
        },
        "escalations": sum(
            value("hybridfleet_edge_escalations_total", privacy=p.value) for p in PrivacyClass
        ),
        "shed": value("hybridfleet_edge_shed_frames_total"),
        "dead_letters": sum(
            value("hybridfleet_edge_dead_letters_total", kind=k) for k in ("schema", "model")
        ),
        "warnings": warnings_log.count,
        "first_warnings": list(warnings_log.first),
    }


async def _child(
    conn: Connection, url: str, batch: int, manifest: str | None, warnings_log: _WarningLog
) -> None:
    from edge_worker.worker import EdgeWorker

    model = OnnxModel.load("edge", None if manifest is None else Path(manifest))
    settings = Settings(
        nats=NatsSettings(url=url),
        edge=EdgeSettings(
            site=SITE,
            worker_id="bench-edge",
            max_batch_size=batch,
            queue_capacity=max(EdgeSettings.queue_capacity, 2 * batch),
            # The pool's frames were captured when the benchmark started.
            max_clock_skew_s=86_400.0,
        ),
    )
    worker = EdgeWorker(settings, model=model)
    await worker.start()
    try:
        edge = settings.edge
        conn.send(
            (
                "ready",
                {
                    "model": model.name,
                    "model_version": model.version,
                    "max_batch_size": edge.max_batch_size,
                    "latency_target_ms": edge.latency_target_ms,
                    "queue_capacity": edge.queue_capacity,
                    "inference_threads": edge.inference_threads,
                },
            )
        )
        stopped = asyncio.create_task(worker.wait())
        while True:
            command = asyncio.create_task(asyncio.to_thread(conn.recv))
            await asyncio.wait({command, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done():
                stopped.result()  # re-raises what stopped it
                raise BenchError("the edge worker stopped by itself")
            what = command.result()
            if what == "snapshot":
                conn.send(("snapshot", _worker_snapshot(worker, warnings_log)))
            elif what == "stop":
                break
        started = time.monotonic()
        drained = True
        try:
            await asyncio.wait_for(worker.drain(), 30.0)
        except TimeoutError:
            drained = False
        snapshot = _worker_snapshot(worker, warnings_log)
        snapshot["drained"] = drained
        snapshot["drain_s"] = time.monotonic() - started
        conn.send(("stopped", snapshot))
    finally:
        await worker.close()


def _receive(conn: Connection, proc: BaseProcess, expect: str, timeout: float) -> Any:
    """Blocking: the child's next message, which must be ``expect``."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.1):
        if not proc.is_alive() and not conn.poll(0.1):
            raise BenchError(f"the edge worker process exited with code {proc.exitcode}")
        if time.monotonic() > deadline:
            raise BenchError(f"no {expect!r} from the edge worker process within {timeout} s")
    kind, payload = conn.recv()
    if kind == "error":
        raise BenchError(f"the edge worker process failed:\n{payload}")
    if kind != expect:
        raise BenchError(f"expected {expect!r} from the edge worker process, got {kind!r}")
    return payload


async def _ask(conn: Connection, proc: BaseProcess, command: str, expect: str) -> Any:
    conn.send(command)
    return await asyncio.to_thread(_receive, conn, proc, expect, 60.0)


def _stop_process(proc: BaseProcess, grace_s: float) -> None:
    """Wait ``grace_s`` for the child to exit; terminate, then kill it if it does not."""
    proc.join(grace_s)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()


# ---------------------------------------------------------------- publishing and results


@dataclass
class _Results:
    """Counts final results; wakes the publisher once ``wake_at`` have arrived."""

    received: int = 0
    last_at: float = 0.0
    wake_at: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_msg(self, msg: Msg) -> None:
        del msg
        self.received += 1
        self.last_at = time.perf_counter()
        if self.received >= self.wake_at:
            self.event.set()

    async def wait_for(self, count: int, idle_s: float) -> bool:
        """Until ``count`` results in all; False if none came for ``idle_s``."""
        while self.received < count:
            self.wake_at = count
            self.event.clear()
            seen = self.received
            try:
                await asyncio.wait_for(self.event.wait(), idle_s)
            except TimeoutError:
                if self.received == seen:
                    return False
        return True


async def _drive(
    nc: Client,
    results: _Results,
    pool: Sequence[tuple[str, bytes]],
    count: int,
    window: int,
    time_limit_s: float,
    idle_s: float,
) -> dict[str, Any]:
    """Publish ``count`` pre-encoded frames as fast as allowed, then wait for the results.

    At most ``window`` frames are in flight (published, no result yet); the publisher
    resumes when the backlog is down to 7/8 of it. Publishing stops early at
    ``time_limit_s``; waiting gives up when no result came for ``idle_s``.
    """
    base = results.received
    low_water = window - max(1, window // 8)
    sent = 0
    stalled = False
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    for i in range(count):
        in_flight = sent - (results.received - base)
        if in_flight >= window and not await results.wait_for(base + sent - low_water, idle_s):
            stalled = True
            break
        if time.perf_counter() >= deadline:
            break
        subject, data = pool[i % len(pool)]
        await nc.publish(subject, _stamp_id(data))
        sent += 1
    await nc.flush()
    published_at = time.perf_counter()
    complete = not stalled and await results.wait_for(base + sent, idle_s)
    received = results.received - base
    elapsed = results.last_at - t0 if received else math.nan
    return {
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "complete": complete,
        "seconds": elapsed,
        "publish_seconds": published_at - t0,
        "frames_per_s": received / elapsed if received else 0.0,
        "time_limited": sent < count and not stalled,
    }


def _process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (from /proc), NaN if unreadable."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return math.nan


async def measure_worker(
    server: NatsServer,
    pool: Sequence[tuple[str, bytes]],
    manifest: Path | None,
    batch: int,
    *,
    frames: int,
    warmup: int,
    window: int,
    time_limit_s: float,
    idle_s: float,
) -> dict[str, Any]:
    """Start a worker process with ``max_batch_size=batch``, drive it, stop it."""
    context = mp.get_context("spawn")
    conn, child_conn = context.Pipe()
    proc = context.Process(
        target=_child_main,
        args=(child_conn, server.url, batch, None if manifest is None else str(manifest)),
        name=f"bench-edge-worker-{batch}",
        daemon=True,
    )
    proc.start()
    child_conn.close()
    nc_errors: list[str] = []
    stopped: dict[str, Any] | None = None

    async def on_error(exc: Exception) -> None:
        nc_errors.append(f"{type(exc).__name__}: {exc}"[:300])

    try:
        config = await asyncio.to_thread(_receive, conn, proc, "ready", 120.0)
        publisher = await nats.connect(server.url, name="bench-publisher", error_cb=on_error)
        subscriber = await nats.connect(server.url, name="bench-results", error_cb=on_error)
        try:
            results = _Results()
            await subscriber.subscribe(subjects.results(SITE), cb=results.on_msg)
            await subscriber.flush()
            warm = await _drive(publisher, results, pool, warmup, window, time_limit_s, idle_s)
            if not warm["complete"]:
                raise BenchError(f"warm-up did not complete: {warm}")
            before = await _ask(conn, proc, "snapshot", "snapshot")
            here_before = (time.process_time(), _process_cpu_seconds(server.pid))
            run = await _drive(publisher, results, pool, frames, window, time_limit_s, idle_s)
            here_after = (time.process_time(), _process_cpu_seconds(server.pid))
            after = await _ask(conn, proc, "snapshot", "snapshot")
        finally:
            await publisher.close()
            await subscriber.close()
        stopped = await _ask(conn, proc, "stop", "stopped")
    finally:
        conn.close()
        # After "stopped" the child exits by itself; otherwise (an error, Ctrl-C) it
        # is terminated after a short grace.
        grace = 15.0 if stopped is not None else 2.0
        await asyncio.to_thread(_stop_process, proc, grace)

    wall = after["at"] - before["at"]
    batches = after["batch_size_count"] - before["batch_size_count"]
    decisions = {
        k: int(after["decisions"][k] - before["decisions"][k])
        for k in after["decisions"]
        if after["decisions"][k] - before["decisions"][k]
    }
    return {
        "worker_config": config,
        "window": window,
        **run,
        "mean_batch": (after["batch_size_sum"] - before["batch_size_sum"]) / batches
        if batches
        else math.nan,
        "batches": int(batches),
        # Wall time of one _infer call in the worker (thread pool, features + model).
        "worker_ms_per_batch": (after["inference_seconds_sum"] - before["inference_seconds_sum"])
        / batches
        * 1000
        if batches
        else math.nan,
        "model_busy_fraction": (after["inference_seconds_sum"] - before["inference_seconds_sum"])
        / wall,
        "cpu_cores": {
            "worker": (after["cpu_s"] - before["cpu_s"]) / wall,
            "nats_server": (here_after[1] - here_before[1]) / wall,
            "publisher_and_subscriber": (here_after[0] - here_before[0]) / wall,
        },
        "decisions": decisions,
        "escalations": int(after["escalations"] - before["escalations"]),
        "shed": int(after["shed"] - before["shed"]),
        "dead_letters": int(after["dead_letters"] - before["dead_letters"]),
        "worker_warnings": stopped["warnings"],
        "first_worker_warnings": stopped["first_warnings"],
        "client_errors": nc_errors[:5],
        "drained": stopped["drained"],
        "drain_s": stopped["drain_s"],
    }


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


def _print(text: str = "") -> None:
    print(text, flush=True)


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
            _print(f"\n== {model.name} {model.version}")
            for batch in options.batch_sizes:
                raw = measure_raw(model, frames, batch, options.raw_seconds, options.raw_repeats)
                entry["raw"][batch] = raw
                _print(
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
                _print(
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
    try:
        sizes = tuple(int(s) for s in args.batch_sizes.split(",") if s.strip())
    except ValueError:
        parser.error(f"--batch-sizes: not a list of integers: {args.batch_sizes!r}")
    if not sizes or any(not 1 <= s <= 4096 for s in sizes):
        parser.error("--batch-sizes: each must be in 1..4096")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models or any(m not in {"edge", "compute"} for m in models):
        parser.error("--models: choose from edge, compute")
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    _print("hybridfleet edge throughput benchmark")
    shown = sys.argv[1:] if argv is None else list(argv)
    _print(f"command: python -m bench.edge_throughput {' '.join(shown)}".rstrip())
    for key, value in machine.items():
        _print(f"  {key}: {value}")
    _print(
        "frames: 640x480 uint8, one 32x32 digit region each, priority 1 and privacy "
        "local_only, so the worker answers every one on the edge (reason priority_local) "
        "and no CloudWorker is needed (so the worker logs 'link to the cloud is DOWN': "
        "expected, and no matter for priority-1 frames)"
    )
    _print(
        f"per worker point: {options.warmup} warm-up frames, then {options.frames} measured "
        f"(at most {options.time_limit_s:.0f} s of publishing); frames/s = results / "
        "(last result - first publish)"
    )
    load_before = os.getloadavg()
    _print(
        "load average before (1/5/15 min): "
        + " ".join(f"{x:.2f}" for x in load_before)
        + " (anything else running on the machine takes cores from the processes measured)"
    )
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="hybridfleet-bench-") as tmp:
            report = uvloop.run(_run(options, Path(tmp)))
    except KeyboardInterrupt:
        # By now the finally blocks have stopped the worker process and the nats-server.
        print("interrupted: no figures", file=sys.stderr)
        return 130
    total = time.monotonic() - started
    load_after = os.getloadavg()
    _print()
    _print(_table(report, options))
    _print(
        "\nin fly = frames the publisher kept in flight; ratio = worker frames/s / raw "
        "images/s with features at the same batch size; infer ms = mean wall time of one "
        "batch in the worker's _infer (thread pool); model busy = share of wall time spent "
        "there; cores used = CPU seconds per wall second of the worker process / "
        "nats-server / this process (publisher + subscriber)"
    )
    _print(
        f"total run time {total:.0f} s; load average after: "
        + " ".join(f"{x:.2f}" for x in load_after)
    )
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
            "total_seconds": total,
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            **report,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(_finite(document), indent=2, default=_json_default, allow_nan=False)
        json_path.write_text(text + "\n")
        _print(f"figures written to {json_path}")
    return 0


def _finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


if __name__ == "__main__":
    sys.exit(main())
