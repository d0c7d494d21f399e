"""One cloud worker through NATS at one batch size: answered lines/s until its queue drains.

``measure_worker`` starts a nats-server on loopback (a hub's: no fsync on every write),
declares the site ``bench`` and the cloud's streams as the edge and the cloud do,
stores every escalation first (the warm-up ones, then the measured ones: text lines
as JPEG crops, ``lines_per_escalation`` each, encoded before anything is timed), waits
until the cloud's ``ESCALATIONS`` queue holds them all, and only then starts one
``CloudWorker`` in a process of its own (``python -m bench.cloud_worker_run``: what
``hybridfleet cloud`` runs, under uvloop, settings from ``HYBRIDFLEET_*`` variables, so
they are checked at start as in production). Publishing is therefore never the bound.

The worker fetches its queue in order, so the warm-up answers come first: lines/s =
measured lines / (last measured answer - last warm-up answer), answers seen on
``replies.bench.>`` by this process. The worker's own metrics (scraped before and
after the measured lines) give the mean escalations per fetched batch and the time
its model calls took; its process's CPU seconds over the same window (``/proc``) give
lines per CPU second, which other jobs on a shared machine move less than wall time.
Every step has a deadline; the worker and the server are stopped by their pids, also
on error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nats
import uvloop
from nats.aio.msg import Msg

from bench.cloud_lines import Cycle, LinePool
from bench.common import proc_cpu_seconds
from pipeline.config import CloudSettings, StreamSettings, load_settings
from pipeline.messaging.natsio import ensure_cloud_streams, ensure_site_streams
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Encoded, Encoding, Escalation, PrivacyClass, Region

__all__ = ["SITE", "WorkerError", "WorkerPlan", "measure_worker"]

SITE: Final = "bench"
CAMERA: Final = "cam1"
_METRICS = ("batch_size", "inference_seconds")
# The INFO line pipeline.inference.providers.session_for logs for each session.
_RUNNING_ON = r"models\.{role}: running on (\[[^\]]*\]) \("
# The lines' boxes, one below the other in a notional frame.
HEIGHT_STEP: Final = 64


class WorkerError(RuntimeError):
    """The worker could not be measured (it died, or a step ran past its deadline)."""


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker point runs: the model, how it runs, and how many lines."""

    manifest: Path
    role: str
    providers: tuple[str, ...]
    threads: int
    cycle: Cycle
    in_flight: int
    lines_per_escalation: int
    warm_batches: int
    measured_batches: int
    preload_dlls: bool
    step_timeout_s: float

    @property
    def fetch_batch(self) -> int:
        return self.cycle.batch // self.lines_per_escalation

    def cloud_env(self, url: str) -> dict[str, str]:
        """The worker's settings, as ``HYBRIDFLEET_*`` variables."""
        values = {
            "NATS_URL": url,
            "CLOUD_WORKER_ID": "bench-cloud",
            "CLOUD_SITES": SITE,
            "CLOUD_MODELS": self.role,
            "CLOUD_MODEL_MANIFEST": str(self.manifest),
            "CLOUD_PROVIDERS": ",".join(self.providers),
            "CLOUD_INTRA_OP_THREADS": str(self.threads),
            "CLOUD_MAX_BATCH": str(self.cycle.batch),
            "CLOUD_FETCH_BATCH": str(self.fetch_batch),
            "CLOUD_BATCHES_IN_FLIGHT": str(self.in_flight),
        }
        return {f"HYBRIDFLEET_{key}": value for key, value in values.items()}


def _escalations(
    pool: LinePool, plan: WorkerPlan, prefix: str, first: int, count: int
) -> list[tuple[str, bytes]]:
    """``count`` escalations (frame id, encoded), the ``first``-th onwards in queue order."""
    k, now = plan.lines_per_escalation, time.time()
    out = []
    for q in range(first, first + count):
        lines = [plan.cycle.line(q * k + i) for i in range(k)]
        shapes = [pool.images[i].shape for i in lines]
        regions = tuple(Region(0, HEIGHT_STEP * n, s[1], s[0]) for n, s in enumerate(shapes))
        frame_id = f"{prefix}-{q}"
        escalation = Escalation(
            frame_id=frame_id,
            site=SITE,
            camera=CAMERA,
            seq=q,
            captured_at=now,
            deadline_at=now + 3600,
            priority=2,
            privacy=PrivacyClass.CROP,
            regions=regions,
            crops=tuple(Encoded(pool.jpegs[i], Encoding.JPEG) for i in lines),
            image=None,
            reply_to=subjects.replies(SITE, "bench-edge"),
            edge_labels=(0,) * k,
            edge_confidence=0.5,
        )
        out.append((frame_id, encode(escalation)))
    return out


async def _store(js: Any, messages: list[tuple[str, bytes]]) -> None:
    subject = subjects.escalations(SITE, CAMERA)
    for start in range(0, len(messages), 256):
        chunk = messages[start : start + 256]
        await asyncio.gather(
            *(js.publish(subject, data, headers={"Nats-Msg-Id": fid}) for fid, data in chunk)
        )


async def _until(
    condition: Any,
    timeout: float,
    what: str,
    worker: subprocess.Popen[bytes] | None,
    log_path: Path | None,
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if worker is not None and worker.poll() is not None:
            raise WorkerError(f"the worker exited ({worker.returncode}): {_tail(log_path)}")
        if time.monotonic() > deadline:
            raise WorkerError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _cpu(worker: subprocess.Popen[bytes], server: NatsServer) -> tuple[float, float]:
    return proc_cpu_seconds(worker.pid), proc_cpu_seconds(server.pid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    """The worker's batch-size and model-time sums and counts."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = {f"hybridfleet_cloud_{m}_{p}" for m in _METRICS for p in ("sum", "count")}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[name] = float(value)
    return out


def _start(command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The worker's process, its output to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker drains), then SIGKILL after 30 s; by its pid."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


async def measure_worker(folder: Path, pool: LinePool, plan: WorkerPlan) -> dict[str, Any]:
    """The worker's lines/s at ``plan``'s batch size, and what explains it."""
    warm_n = plan.warm_batches * plan.fetch_batch
    measured_n = plan.measured_batches * plan.fetch_batch
    server = NatsServer(folder / "nats", name="bench-hub", sync_always=False)
    server.start()
    worker: subprocess.Popen[bytes] | None = None
    log_path = folder / "worker.log"
    nc = await nats.connect(server.url, name="bench-cloud-throughput")
    try:
        js = nc.jetstream()
        cloud = CloudSettings(worker_id="bench-cloud", sites=SITE, fetch_batch=plan.fetch_batch)
        await ensure_site_streams(js, SITE, StreamSettings())
        await ensure_cloud_streams(js, StreamSettings(), cloud)
        messages = _escalations(pool, plan, "w", 0, warm_n)
        messages += _escalations(pool, plan, "m", warm_n, measured_n)
        stored_at = time.monotonic()
        await _store(js, messages)

        async def queued() -> bool:
            info = await js.stream_info(subjects.ESCALATIONS_STREAM)
            return int(info.state.messages) >= len(messages)

        await _until(queued, plan.step_timeout_s, "the queue to fill", None, None)
        store_s = time.monotonic() - stored_at
        seen = {"w": [0, 0.0], "m": [0, 0.0]}

        async def on_answer(msg: Msg) -> None:
            kind = (msg.headers or {}).get("Nats-Msg-Id", "answer-?")[len("answer-")]
            if kind in seen:
                seen[kind][0] += 1
                seen[kind][1] = time.monotonic()

        await nc.subscribe(subjects.replies(SITE), cb=on_answer)
        await nc.flush()
        port = _free_port()
        env = {**os.environ, **plan.cloud_env(server.url), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "bench.cloud_worker_run", "--metrics-port", str(port)]
        if plan.preload_dlls:
            command.append("--preload-dlls")
        started = time.monotonic()
        worker = _start(command, env, log_path)

        async def warmed() -> bool:
            return seen["w"][0] >= warm_n

        async def drained() -> bool:
            return seen["m"][0] >= measured_n

        await _until(warmed, plan.step_timeout_s, "the warm-up answers", worker, log_path)
        warm_s = time.monotonic() - started
        cpu_before = _cpu(worker, server)
        before = await asyncio.to_thread(_scrape, port)
        await _until(drained, plan.step_timeout_s, "the measured answers", worker, log_path)
        cpu_after = _cpu(worker, server)
        after = await asyncio.to_thread(_scrape, port)
        window = seen["m"][1] - seen["w"][1]
        figures = _figures(plan, window, before, after, warm_s, store_s, log_path)
        worker_cpu, server_cpu = (b - a for a, b in zip(cpu_before, cpu_after, strict=True))
        lines = figures["measured_lines"]
        return figures | {
            "worker_cpu_s": round(worker_cpu, 3),
            "server_cpu_s": round(server_cpu, 3),
            "lines_per_cpu_s": lines / worker_cpu if worker_cpu > 0 else math.nan,
        }
    finally:
        if worker is not None:
            _stop(worker)
        with contextlib.suppress(Exception):
            await nc.close()
        server.stop()


def _figures(
    plan: WorkerPlan,
    window: float,
    before: Mapping[str, float],
    after: Mapping[str, float],
    warm_s: float,
    store_s: float,
    log_path: Path,
) -> dict[str, Any]:
    def delta(name: str) -> float:
        key = f"hybridfleet_cloud_{name}"
        return after.get(key, 0.0) - before.get(key, 0.0)

    lines = plan.measured_batches * plan.cycle.batch
    calls = delta("inference_seconds_count")
    running_on = re.compile(_RUNNING_ON.format(role=re.escape(plan.role)))
    found = running_on.findall(log_path.read_text(errors="replace"))
    return {
        "batch": plan.cycle.batch,
        "in_flight": plan.in_flight,
        "lines_per_escalation": plan.lines_per_escalation,
        "fetch_batch": plan.fetch_batch,
        "threads": plan.threads,
        "warm_lines": plan.warm_batches * plan.cycle.batch,
        "measured_lines": lines,
        "seconds": round(window, 3),
        "lines_per_s": lines / window if window > 0 else math.nan,
        "lines_per_fetched_batch": (
            delta("batch_size_sum") * plan.lines_per_escalation / calls if calls else math.nan
        ),
        "model_call_ms": delta("inference_seconds_sum") / calls * 1000 if calls else math.nan,
        "model_busy": delta("inference_seconds_sum") / window if window > 0 else math.nan,
        "start_and_warm_s": round(warm_s, 1),
        "store_s": round(store_s, 2),
        # What onnxruntime really runs the model on, as the worker logged it.
        "session_providers": found[0] if found else "unknown",
    }


# ---------------------------------------------------------------- the worker's process


async def _serve(metrics_port: int) -> int:
    from prometheus_client import start_http_server

    from cloud_worker.worker import CloudWorker

    worker = CloudWorker.from_settings(load_settings())
    start_http_server(metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """The worker's process: ``hybridfleet cloud`` without the CLI's other imports
    (video, Pillow), which a GPU machine may lack."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.cloud_worker_run")
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument(
        "--preload-dlls",
        action="store_true",
        help="onnxruntime.preload_dlls() first: CUDA and cuDNN from the nvidia-* wheels",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.preload_dlls:
        import onnxruntime

        onnxruntime.preload_dlls()
    return uvloop.run(_serve(args.metrics_port))


if __name__ == "__main__":
    sys.exit(main())
