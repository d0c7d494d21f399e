"""The edge worker in a process of its own, driven through a real nats-server.

The harness of ``bench.edge_throughput``: ``make_frames`` makes the frames (each
publish stamps a fresh frame id into a pooled one), ``measure_worker`` starts an
``EdgeWorker`` in a child process with a batch cap (bench/worker_process.py),
publishes pre-encoded frames at it with at most ``window`` in flight, counts the
final results, reads the worker's metrics before and after, and stops it. The
publisher and the result subscriber share the calling process. Every process started
here is stopped, also on error.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing as mp
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.common import proc_cpu_seconds
from bench.worker_process import SITE, BenchError, ask, child_main, receive, stop_process
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.messages import Frame, PrivacyClass

__all__ = ["DEADLINE_MS", "make_frames", "measure_worker"]

# The frame deadline is set far out, so that only the worker's own latency target
# (EdgeSettings.latency_target_ms) bounds how long the batcher waits.
DEADLINE_MS: Final = 3_600_000


# ---------------------------------------------------------------- frames


# Every pooled frame's id holds this placeholder; each publish stamps a new number into
# it, so that the worker never sees a repeated id (it would dead-letter the repeat).
_ID_PLACEHOLDER = b"N" * 16
_sent_ids = itertools.count()


def _stamp_id(data: bytes) -> bytes:
    """``data`` with the next frame id: one copy of the message, as a camera would make."""
    at = data.find(_ID_PLACEHOLDER, 0, 256)  # the id is among the first keys
    if at < 0:
        raise ValueError("no frame id placeholder in the first 256 bytes of the message")
    view = memoryview(data)
    return b"".join((view[:at], b"%016d" % next(_sent_ids), view[at + len(_ID_PLACEHOLDER) :]))


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
        target=child_main,
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
        config = await asyncio.to_thread(receive, conn, proc, "ready", 120.0)
        publisher = await nats.connect(server.url, name="bench-publisher", error_cb=on_error)
        subscriber = await nats.connect(server.url, name="bench-results", error_cb=on_error)
        try:
            results = _Results()
            await subscriber.subscribe(subjects.results(SITE), cb=results.on_msg)
            await subscriber.flush()
            warm = await _drive(publisher, results, pool, warmup, window, time_limit_s, idle_s)
            if not warm["complete"]:
                raise BenchError(f"warm-up did not complete: {warm}")
            before = await ask(conn, proc, "snapshot", "snapshot")
            here_before = (time.process_time(), proc_cpu_seconds(server.pid))
            run = await _drive(publisher, results, pool, frames, window, time_limit_s, idle_s)
            here_after = (time.process_time(), proc_cpu_seconds(server.pid))
            after = await ask(conn, proc, "snapshot", "snapshot")
        finally:
            await publisher.close()
            await subscriber.close()
        stopped = await ask(conn, proc, "stop", "stopped")
    finally:
        conn.close()
        # After "stopped" the child exits by itself; otherwise (an error, Ctrl-C) it
        # is terminated after a short grace.
        grace = 15.0 if stopped is not None else 2.0
        await asyncio.to_thread(stop_process, proc, grace)

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
