"""Measuring the edge worker for ``bench.roofline``: open loop, paced latency, accounting.

``worker_runs`` starts the site's ``EdgeWorker``s (``Workers``: ``options.workers``
of them, each in a process of its own, a ``Child`` of ``bench.roofline_procs``) and,
against them:

* a closed-loop pilot (a window of frames in flight, at most ``PILOT_WINDOW_BYTES``;
  also the warm-up) that estimates its capacity;
* an open-loop run at ``options.overload`` times the higher of that and the estimate,
  paused while ``BACKLOG_BYTES`` of frames have no result (past 64 MiB waiting for the
  worker the nats-server cuts it off as a slow consumer, and every frame waiting is
  lost): its answered frames / (last answer - first publish) is the worker's capacity;
* paced runs (evenly spaced) at 50% and 90% of that capacity, for latency from
  publish to result.

Each run accounts for every frame: answered, shed, dropped unread at the worker's
intake, dead-lettered, or lost; and for where the CPU went (the worker, the
nats-server, this process), read from /proc (``bench.common.proc_cpu_seconds``) and
the server's /varz (``slow_consumers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from nats.aio.client import Client

from bench.common import proc_cpu_seconds
from bench.roofline_procs import Child, worker_main
from bench.roofline_publish import Guard, Ids, Results, publish
from bench.roofline_workloads import Options, Setup
from pipeline.messaging.server import NatsServer

__all__ = [
    "BACKLOG_BYTES",
    "PILOT_WINDOW_BYTES",
    "clamp",
    "slow_consumers",
    "worker_runs",
]

# The most frame bytes the open-loop run lets go without a result (see worker_runs);
# the nats-server cuts a client off at 64 MiB pending.
BACKLOG_BYTES: Final = 40 << 20
# Frames in flight in the closed-loop pilot: at most this many bytes of them.
PILOT_WINDOW_BYTES: Final = 24 << 20


def slow_consumers(server: NatsServer) -> int:
    """The nats-server's count of clients it cut off as slow consumers (/varz), -1 if
    it cannot be read."""
    if server.monitor_port is None:
        return -1
    try:
        url = f"http://127.0.0.1:{server.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(json.loads(answer.read())["slow_consumers"])
    except (OSError, ValueError, KeyError):
        return -1


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values), q))


class Workers:
    """The site's edge worker processes (``count``, one ``Child`` each, sharing the
    site's frames): started on ``__aenter__``, stopped on exit; their snapshots summed."""

    def __init__(self, count: int, url: str, name: str, overrides: dict[str, Any]) -> None:
        self._children = [
            Child(worker_main, f"{name}-{i}", url, f"roofline-edge-{i}", overrides)
            for i in range(1, count + 1)
        ]
        self._stack = contextlib.AsyncExitStack()

    @property
    def ready(self) -> dict[str, Any]:
        return self._children[0].ready

    async def __aenter__(self) -> Workers:
        async with contextlib.AsyncExitStack() as stack:
            for child in self._children:
                await stack.enter_async_context(child)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def snapshot(self) -> dict[str, Any]:
        return _summed([await child.snapshot() for child in self._children])

    async def stop(self) -> dict[str, Any]:
        return _summed([await child.stop() for child in self._children])


def _summed(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts added up over the workers (also in a dict of counts); ``at`` the latest;
    lists joined; a flag true only if true for all."""
    total: dict[str, Any] = {}
    for key, value in snapshots[0].items():
        values = [s[key] for s in snapshots]
        if key == "at":
            total[key] = max(values)
        elif isinstance(value, bool):
            total[key] = all(values)
        elif isinstance(value, list):
            total[key] = [item for v in values for item in v]
        elif isinstance(value, dict):
            total[key] = _summed(values)
        elif isinstance(value, int | float):
            total[key] = sum(values)
        else:
            total[key] = value
    return total


@dataclass
class _Rig:
    """What every run against the site's workers shares."""

    worker: Workers
    server: NatsServer
    nc: Client
    results: Results
    setup: Setup
    ids: Ids
    options: Options
    # Waiting for results gives up after this long without one: at least the option,
    # and long enough for a batch of a slow model (PP-OCR reads about a frame a second
    # a core).
    quiet_s: float


async def _phase(
    rig: _Rig, *, count: int, rate: float, latency: bool, guard: bool = False
) -> dict[str, Any]:
    """One run against the worker: publish, wait for the results, account for each frame."""
    worker, server, results, options = rig.worker, rig.server, rig.results, rig.options
    before = await worker.snapshot()
    base_count, base_answered, base_shed = results.count, results.answered, results.shed
    results.sent_at = {} if latency else None
    results.latencies = []
    cpu_before = (time.process_time(), proc_cpu_seconds(server.pid))
    slow_before = await asyncio.to_thread(slow_consumers, server)
    limit = clamp(BACKLOG_BYTES / rig.setup.frame_bytes, 8, 100_000)
    backlog = Guard(results, base_count, limit, rig.quiet_s) if guard else None
    sent, t0, t1 = await publish(
        rig.nc, rig.setup.pool, rig.ids, count, rate, options.time_limit_s, results.sent_at, backlog
    )
    results_by_end = results.count - base_count
    complete = await results.wait_for(base_count + sent, rig.quiet_s)
    cpu_after = (time.process_time(), proc_cpu_seconds(server.pid))
    after = await worker.snapshot()
    slow_after = await asyncio.to_thread(slow_consumers, server)
    answered = results.answered - base_answered
    elapsed = results.last_answered_at - t0 if answered else math.nan
    dropped = int(after["dropped"] - before["dropped"])
    dead = int(after["dead_letters"] - before["dead_letters"])
    shed = results.shed - base_shed
    batches = after["batch_size_count"] - before["batch_size_count"]
    wall = after["at"] - before["at"]
    point: dict[str, Any] = {
        "offered_per_s": sent / (t1 - t0) if t1 > t0 else math.nan,
        "target_rate": rate,
        "sent": sent,
        "answered": answered,
        "shed": shed,
        "shed_by_worker": int(after["shed"] - before["shed"]),
        "dropped_intake": dropped,
        "dead_letters": dead,
        "lost": sent - answered - shed - dropped - dead,
        # Times the nats-server cut a client (the worker) off as a slow consumer.
        "server_slow_consumer_cuts": slow_after - slow_before
        if min(slow_before, slow_after) >= 0
        else None,
        "complete": complete,
        # Frames without a result when publishing ended: a backlog means the worker
        # fell behind what was offered (then frames/s is its capacity).
        "backlog_at_end": sent - results_by_end,
        "backlog_limit": limit if guard else None,
        "publisher_pauses": backlog.pauses if backlog else 0,
        "publisher_paused_s": backlog.paused_s if backlog else 0.0,
        "seconds": elapsed,
        "frames_per_s": answered / elapsed if answered and elapsed > 0 else 0.0,
        "mean_batch": (after["batch_size_sum"] - before["batch_size_sum"]) / batches
        if batches
        else math.nan,
        "batch_ms": (after["inference_seconds_sum"] - before["inference_seconds_sum"])
        / batches
        * 1000
        if batches
        else math.nan,
        "inference_busy": (after["inference_seconds_sum"] - before["inference_seconds_sum"]) / wall,
        "cores": {
            "worker": (after["cpu_s"] - before["cpu_s"]) / wall,
            "nats_server": (cpu_after[1] - cpu_before[1]) / wall,
            "bench": (cpu_after[0] - cpu_before[0]) / wall,
        },
    }
    if latency:
        lat = results.latencies
        point["latency_ms"] = {
            "n": len(lat),
            "p50": _percentile(lat, 50) * 1000,
            "p99": _percentile(lat, 99) * 1000,
            "mean": statistics.fmean(lat) * 1000 if lat else math.nan,
            "max": max(lat) * 1000 if lat else math.nan,
        }
    results.sent_at = None
    return point


async def _closed_loop(rig: _Rig, seconds: float, estimate: float) -> dict[str, Any]:
    """Keep ``window`` frames in flight for ``seconds``; answered frames/s."""
    results = rig.results
    # At most a second's worth of frames in flight: a window of large frames for a slow
    # model would take minutes to answer.
    window = clamp(min(PILOT_WINDOW_BYTES / rig.setup.frame_bytes, estimate), 4, 96)
    limit = clamp(estimate * seconds * 2, 2 * window, 20_000)
    base_count, base_answered = results.count, results.answered
    t0 = time.perf_counter()
    sent = 0
    while sent < limit and time.perf_counter() - t0 < seconds:
        if sent - (results.count - base_count) >= window and not await results.wait_for(
            base_count + sent - window + 1, rig.quiet_s
        ):
            break
        subject, data = rig.setup.pool[sent % len(rig.setup.pool)]
        await rig.nc.publish(subject, rig.ids.stamp(data)[1])
        sent += 1
    await rig.nc.flush()
    complete = await results.wait_for(base_count + sent, rig.quiet_s)
    answered = results.answered - base_answered
    elapsed = results.last_answered_at - t0
    return {
        "window": window,
        "sent": sent,
        "answered": answered,
        "complete": complete,
        "frames_per_s": answered / elapsed if answered and elapsed > 0 else estimate,
    }


def clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


async def worker_runs(
    server: NatsServer,
    nc: Client,
    results: Results,
    setup: Setup,
    ids: Ids,
    options: Options,
    estimate: float,
) -> dict[str, Any]:
    """Warm up, saturate (open loop above ``estimate``), then paced runs at 50%/90%."""
    async with Workers(
        options.workers, server.url, f"roofline-edge-{setup.workload.key}", setup.overrides
    ) as worker:
        quiet_s = max(options.quiet_s, 40 / estimate)
        rig = _Rig(worker, server, nc, results, setup, ids, options, quiet_s)
        # Warm-up and pilot: closed loop, `window` frames in flight, so that nothing
        # piles up anywhere; its frames/s sets the open-loop rate.
        pilot = await _closed_loop(rig, options.pilot_seconds, estimate)
        # Above capacity even if the pilot ran slow (anything else on the machine): the
        # estimate (the lowest limit, or the edge path per inference thread) is at or
        # above what the worker can do.
        rate = options.overload * max(pilot["frames_per_s"], estimate)
        # Open loop above capacity, but never more than BACKLOG_BYTES of frames without
        # a result: when the worker's event loop is what limits it, the backlog waits
        # in the nats-server's buffer for the worker, and the server cuts the worker
        # off (slow consumer) at 64 MiB, losing every frame in that buffer.
        count = clamp(rate * options.saturate_seconds, 50, options.max_frames)
        saturated = await _phase(rig, count=count, rate=rate, latency=False, guard=True)
        capacity = saturated["frames_per_s"]
        paced: dict[str, Any] = {}
        for share in (0.5, 0.9):
            paced_rate = share * capacity
            n = clamp(paced_rate * options.latency_seconds, 20, options.max_latency_frames)
            paced[f"{share:.0%}"] = await _phase(rig, count=n, rate=paced_rate, latency=True)
        stopped = await worker.stop()
        return {
            "config": worker.ready,
            "pilot": pilot,
            "estimate_per_s": estimate,
            "saturated": saturated,
            "paced": paced,
            "warnings": stopped["warnings"],
            "first_warnings": stopped["first_warnings"],
            "drained": stopped["drained"],
        }
