"""The edge worker's side of the harness: an ``EdgeWorker`` in a process of its own.

``child_main`` is the child process: it runs an ``EdgeWorker`` with a batch cap (as
``hybridfleet edge`` runs in production) against a nats-server, and answers the
parent over a pipe: ``ready`` once serving, a metrics ``snapshot`` when asked, and
``stopped`` after draining on ``stop``. ``receive``, ``ask`` and ``stop_process`` are
the parent's end (bench/worker_harness.py).

The child's side is shared with ``bench.roofline_procs``: ``run_child`` runs a
child's coroutine and reports a failure, ``WarningLog`` counts its warnings,
``serve_worker`` runs an ``EdgeWorker`` until told to stop (``serve`` answers the
parent's ``snapshot``; ``worker_snapshot`` is the worker's metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import uvloop

from pipeline.config import EdgeSettings, NatsSettings, Settings
from pipeline.inference.model import OnnxModel
from schemas.messages import PrivacyClass, Reason

__all__ = [
    "SITE",
    "BenchError",
    "WarningLog",
    "ask",
    "child_main",
    "receive",
    "run_child",
    "serve",
    "serve_worker",
    "stop_process",
    "worker_snapshot",
]

SITE: Final = "bench"


class BenchError(RuntimeError):
    """The benchmark could not measure (a process died, a step timed out)."""


class WarningLog(logging.Handler):
    """Counts warnings in the child's process and keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.name}: {record.getMessage()}"[:300])


def run_child(
    conn: Connection,
    what: str,
    body: Callable[[WarningLog], Coroutine[Any, Any, None]],
    *,
    quiet: tuple[str, ...] = (),
) -> None:
    """Run the coroutine ``body(warnings)`` under uvloop; report a failure over ``conn``.

    ``what`` names the process in its log lines; the loggers in ``quiet`` log errors only.
    """
    warnings_log = WarningLog()
    logging.basicConfig(
        level=logging.WARNING, format=f"[{what}] %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger().addHandler(warnings_log)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        uvloop.run(body(warnings_log))
    except BaseException:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        conn.close()


def child_main(conn: Connection, url: str, batch: int, manifest: str | None) -> None:
    """Entry point of the worker's process: run an EdgeWorker until told to stop."""

    async def body(warnings_log: WarningLog) -> None:
        await _child(conn, url, batch, manifest, warnings_log)

    run_child(conn, "edge worker process", body)


def worker_snapshot(worker: Any, warnings_log: WarningLog) -> dict[str, Any]:
    """The worker's metrics (intake drops, shed frames, dead letters...) and warnings."""
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
        # Dropped unread: at the worker's own intake, or by the site's frame stream
        # (counted once over the site's workers, edge_worker/discards.py).
        "dropped": sum(
            value("hybridfleet_edge_dropped_frames_total", place=place)
            for place in ("intake", "site_stream")
        ),
        "dead_letters": sum(
            value("hybridfleet_edge_dead_letters_total", kind=k) for k in ("schema", "model")
        ),
        "warnings": warnings_log.count,
        "first_warnings": list(warnings_log.first),
    }


async def _child(
    conn: Connection, url: str, batch: int, manifest: str | None, warnings_log: WarningLog
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
    worker = EdgeWorker.from_settings(settings, model=model)
    edge = settings.edge

    def ready() -> dict[str, Any]:
        return {
            "model": model.name,
            "model_version": model.version,
            "max_batch_size": edge.max_batch_size,
            "latency_target_ms": edge.latency_target_ms,
            "queue_capacity": edge.queue_capacity,
            "inference_threads": edge.inference_threads,
        }

    await serve_worker(conn, worker, ready, warnings_log, "the edge worker")


async def serve(
    conn: Connection, answer: Callable[[], dict[str, Any]], done: asyncio.Task[Any], name: str
) -> None:
    """Answer ``snapshot`` until ``stop`` (return) or until ``done`` ends (BenchError,
    "``name`` stopped by itself", unless ``done`` raised)."""
    while True:
        command = asyncio.create_task(asyncio.to_thread(conn.recv))
        await asyncio.wait({command, done}, return_when=asyncio.FIRST_COMPLETED)
        if done.done():
            done.result()  # re-raises what stopped it
            raise BenchError(f"{name} stopped by itself")
        what = command.result()
        if what == "snapshot":
            conn.send(("snapshot", answer()))
        elif what == "stop":
            return


async def serve_worker(
    conn: Connection,
    worker: Any,
    ready: Callable[[], dict[str, Any]],
    warnings_log: WarningLog,
    name: str,
) -> None:
    """Start ``worker``, send ``ready()``, answer snapshots until ``stop``, then drain
    (30 s at most), send ``stopped`` with its last snapshot, and close it."""
    await worker.start()
    try:
        conn.send(("ready", ready()))
        stopped = asyncio.create_task(worker.wait())
        await serve(conn, lambda: worker_snapshot(worker, warnings_log), stopped, name)
        started = time.monotonic()
        drained = True
        try:
            await asyncio.wait_for(worker.drain(), 30.0)
        except TimeoutError:
            drained = False
        snapshot = worker_snapshot(worker, warnings_log)
        snapshot["drained"] = drained
        snapshot["drain_s"] = time.monotonic() - started
        conn.send(("stopped", snapshot))
    finally:
        await worker.close()


def receive(conn: Connection, proc: BaseProcess, expect: str, timeout: float) -> Any:
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


async def ask(conn: Connection, proc: BaseProcess, command: str, expect: str) -> Any:
    conn.send(command)
    return await asyncio.to_thread(receive, conn, proc, expect, 60.0)


def stop_process(proc: BaseProcess, grace_s: float) -> None:
    """Wait ``grace_s`` for the child to exit; terminate, then kill it if it does not."""
    proc.join(grace_s)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
