"""The processes of ``bench.roofline``: the edge worker and a bare subscriber, each alone.

* ``worker_main``: an ``EdgeWorker`` built by ``EdgeWorker.from_settings`` from
  ``EdgeSettings`` with the given overrides (``models``, ``model_manifest``,
  ``inference_threads``; everything else the defaults ``hybridfleet edge`` runs with),
  answering the parent over a pipe: ``ready`` once serving, a metrics ``snapshot``
  (intake drops and shed frames included) when asked, ``stopped`` after draining.
* ``subscriber_main``: a bare nats-py subscriber on the same frames subject, with the
  worker's intake limits, that only counts what arrives: the messaging limit.

``Child`` is the parent's end of either: start, ask, stop by pid (also on error).
The protocol helpers (``receive``, ``ask``, ``stop_process``) and the child's side
(``run_child``, ``serve``, ``serve_worker``, ``worker_snapshot``) are those of
``bench.worker_process``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Final

from nats.aio.client import Client

from bench.worker_process import (
    SITE,
    WarningLog,
    ask,
    receive,
    run_child,
    serve,
    serve_worker,
    stop_process,
)
from pipeline.config import EdgeSettings, NatsSettings, Settings
from schemas import subjects

__all__ = ["SITE", "Child", "forget_site_frames", "subscriber_main", "worker_main"]

# The pool's frames were captured when the run started; frames carry a far deadline.
_SKEW_S: Final = 86_400.0


# ---------------------------------------------------------------- the edge worker


def worker_main(conn: Connection, url: str, worker_id: str, overrides: dict[str, Any]) -> None:
    """Entry point of the worker's process: run an EdgeWorker until told to stop."""

    async def body(warnings_log: WarningLog) -> None:
        await _worker(conn, url, worker_id, overrides, warnings_log)

    # The worker has no cloud here: its 'link is down' warnings are expected noise.
    run_child(conn, "edge worker process", body, quiet=())


async def _worker(
    conn: Connection,
    url: str,
    worker_id: str,
    overrides: dict[str, Any],
    warnings_log: WarningLog,
) -> None:
    from edge_worker.worker import EdgeWorker

    settings = Settings(
        nats=NatsSettings(url=url),
        edge=EdgeSettings(site=SITE, worker_id=worker_id, max_clock_skew_s=_SKEW_S, **overrides),
    )
    worker = EdgeWorker.from_settings(settings)
    edge = settings.edge

    def ready() -> dict[str, Any]:
        return {
            "analyser": worker.analyser.name,
            "analyser_version": worker.analyser.version,
            "models": edge.models,
            "model_manifest": edge.model_manifest,
            "max_batch_size": edge.max_batch_size,
            "latency_target_ms": edge.latency_target_ms,
            "queue_capacity": edge.queue_capacity,
            "inference_threads": edge.inference_threads,
            "intake_pending_frames": edge.intake_pending_frames,
            "intake_pending_bytes": edge.intake_pending_bytes,
        }

    await serve_worker(conn, worker, ready, warnings_log, "the child's service")


# ---------------------------------------------------------------- the bare subscriber


def subscriber_main(conn: Connection, url: str) -> None:
    """Entry point of the bare subscriber's process: count frames until told to stop."""

    async def body(warnings_log: WarningLog) -> None:
        del warnings_log
        await _subscriber(conn, url)

    run_child(conn, "bare subscriber process", body, quiet=("nats", "nats.aio.client"))


async def _subscriber(conn: Connection, url: str) -> None:
    import nats
    from nats.aio.msg import Msg
    from nats.errors import SlowConsumerError

    edge = EdgeSettings()
    counts = {"received": 0, "bytes": 0, "dropped": 0, "errors": 0}
    times = {"first": 0.0, "last": 0.0}

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            counts["dropped"] += 1
        else:
            counts["errors"] += 1

    async def on_msg(msg: Msg) -> None:
        now = time.perf_counter()
        if not counts["received"]:
            times["first"] = now
        times["last"] = now
        counts["received"] += 1
        counts["bytes"] += len(msg.data)

    def snapshot() -> dict[str, Any]:
        return {
            **counts,
            "first_at": times["first"],
            "last_at": times["last"],
            "cpu_s": time.process_time(),
            "at": time.monotonic(),
        }

    nc = await nats.connect(url, name="roofline-bare-subscriber", error_cb=on_error)
    try:
        # The worker's intake limits (EdgeSettings.intake_pending_*): past them frames
        # are dropped by the client and counted, not cut off by the server.
        await nc.subscribe(
            subjects.frames(SITE),
            cb=on_msg,
            pending_msgs_limit=edge.intake_pending_frames,
            pending_bytes_limit=edge.intake_pending_bytes,
        )
        await nc.flush()
        conn.send(("ready", {"subject": subjects.frames(SITE)}))
        forever = asyncio.create_task(asyncio.Event().wait())
        try:
            await serve(conn, snapshot, forever, "the child's service")
        finally:
            forever.cancel()
        conn.send(("stopped", snapshot()))
    finally:
        await nc.close()


# ---------------------------------------------------------------- the parent's end


async def forget_site_frames(nc: Client) -> None:
    """Delete the site's frame stream and its count of discards, if any: frames
    published for a run before (or for the bare subscriber) must not wait there for
    the next worker, which declares the stream again."""
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(subjects.frames_stream(SITE))
    with contextlib.suppress(Exception):
        await (await js.key_value(subjects.SITE_BUCKET)).purge(f"{SITE}.frames-discarded")


class Child:
    """A child process of this module, started on ``__aenter__``, stopped on exit."""

    def __init__(self, target: Callable[..., None], name: str, *args: Any) -> None:
        self._target = target
        self._name = name
        self._args = args
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None
        self.ready: dict[str, Any] = {}
        self.stopped: dict[str, Any] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def __aenter__(self) -> Child:
        context = mp.get_context("spawn")
        conn, child_conn = context.Pipe()
        proc = context.Process(
            target=self._target, args=(child_conn, *self._args), name=self._name, daemon=True
        )
        proc.start()
        child_conn.close()
        self._proc, self._conn = proc, conn
        try:
            self.ready = await asyncio.to_thread(receive, conn, proc, "ready", 120.0)
        except BaseException:
            await self._close(2.0)
            raise
        return self

    async def snapshot(self) -> dict[str, Any]:
        assert self._conn is not None and self._proc is not None
        result: dict[str, Any] = await ask(self._conn, self._proc, "snapshot", "snapshot")
        return result

    async def stop(self) -> dict[str, Any]:
        """Ask the child to stop (a worker drains first); its last snapshot."""
        assert self._conn is not None and self._proc is not None
        self.stopped = await ask(self._conn, self._proc, "stop", "stopped")
        return self.stopped

    async def _close(self, grace_s: float) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            await asyncio.to_thread(stop_process, self._proc, grace_s)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # After "stopped" the child exits by itself; otherwise it is terminated by its
        # pid after a short grace, then killed.
        await self._close(15.0 if self.stopped is not None else 2.0)
