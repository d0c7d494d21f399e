"""One run of ``bench.roofline``: each workload's limits and the worker against them.

``run`` starts a nats-server and, for each workload chosen, ``_workload``: the
NATS limit (a bare subscriber in a process of its own, ``_nats_limit``), the decode
and ONNX Runtime limits and the edge path (``bench.roofline_limits``), then the
worker itself (``bench.roofline_worker``); it prints each figure as it comes and
returns one report (a dict, the JSON's ``workloads`` entry) per workload.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from bench.common import echo, proc_cpu_seconds
from bench.roofline_limits import (
    chain_ort_limit,
    decode_limit,
    edge_path,
    model_inputs,
    ort_limit,
)
from bench.roofline_procs import SITE, Child, forget_site_frames, subscriber_main
from bench.roofline_publish import Ids, Results, publish
from bench.roofline_report import rate_text
from bench.roofline_worker import worker_runs
from bench.roofline_workloads import (
    OCR_ROLES,
    WORKLOADS,
    Options,
    Setup,
    Workload,
    make_analyser,
    make_setup,
)
from edge_worker.inference import pixels_of
from pipeline.config import EdgeSettings
from pipeline.messaging.server import NatsServer
from schemas import subjects

__all__ = ["run"]

log = logging.getLogger("bench.roofline")


async def _nats_limit(
    server: NatsServer, nc: Client, setup: Setup, ids: Ids, options: Options
) -> dict[str, Any]:
    """Messages/s a bare subscriber in its own process takes of these frames."""
    async with Child(subscriber_main, "roofline-bare-subscriber", server.url) as sub:
        before = await sub.snapshot()
        cpu_before = time.process_time()
        server_before = proc_cpu_seconds(server.pid)
        sent, t0, t1 = await publish(
            nc, setup.pool, ids, options.nats_messages, math.inf, options.time_limit_s
        )
        cpu_after = time.process_time()
        # Until all arrived, or nothing more came for quiet_s.
        last_seen, last_change = -1, time.monotonic()
        while True:
            now_snap = await sub.snapshot()
            got = now_snap["received"] - before["received"]
            if got + now_snap["dropped"] - before["dropped"] >= sent:
                break
            if got != last_seen:
                last_seen, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > options.quiet_s:
                break
            await asyncio.sleep(0.05)
        server_after = proc_cpu_seconds(server.pid)
        after = await sub.stop()
    received = after["received"] - before["received"]
    span = after["last_at"] - after["first_at"]
    wall = after["at"] - before["at"]
    return {
        "msgs_per_s": (received - 1) / span if received > 1 and span > 0 else math.nan,
        "sent": sent,
        "received": received,
        "dropped": after["dropped"] - before["dropped"],
        "lost": sent - received - (after["dropped"] - before["dropped"]),
        "publisher_msgs_per_s": sent / (t1 - t0),
        "publisher_cores": (cpu_after - cpu_before) / (t1 - t0),
        "subscriber_cores": (after["cpu_s"] - before["cpu_s"]) / wall if wall > 0 else math.nan,
        "nats_server_cores": (server_after - server_before) / wall if wall > 0 else math.nan,
    }


async def _workload(
    server: NatsServer, w: Workload, options: Options, workdir: Path, ids: Ids
) -> dict[str, Any]:
    echo(f"\n== ({w.key}) {w.title}")
    setup = await asyncio.to_thread(make_setup, w, options, workdir)
    frame_bytes = setup.frame_bytes
    echo(f"  {len(setup.pool)} distinct frames, {frame_bytes:,.0f} B a message on average")
    cores = len(os.sched_getaffinity(0))
    limits: dict[str, Any] = {}

    publisher = await _connect(server.url, "roofline-publisher")
    subscriber = await _connect(server.url, "roofline-results")
    try:
        # The bare subscriber's frames must not wait in the site's frame stream (a
        # previous workload's worker declared it) for this workload's worker.
        await forget_site_frames(publisher)
        limits["nats"] = await _nats_limit(server, publisher, setup, ids, options)
        n = limits["nats"]
        echo(
            f"  limit NATS bare subscriber: {n['msgs_per_s']:,.0f} msgs/s "
            f"({n['received']}/{n['sent']} received, {n['dropped']} dropped; publisher "
            f"{n['publisher_msgs_per_s']:,.0f}/s at {n['publisher_cores']:.2f} cores; cores "
            f"subscriber {n['subscriber_cores']:.2f}, server {n['nats_server_cores']:.2f})"
        )
        if setup.jpegs:
            limits["decode"] = await asyncio.to_thread(
                decode_limit, setup.jpegs, cores, options.limit_seconds, options.limit_repeats
            )
            d = limits["decode"]
            echo(
                f"  limit JPEG decode: {d['images_per_s']:,.0f} images/s on {cores} threads "
                f"({d['one_thread_images_per_s']:,.0f} on one)"
            )
        if w.model == "ocr":
            assert setup.manifest is not None
            images = [await asyncio.to_thread(pixels_of, f) for f in setup.frames]
            limits["ort"] = await asyncio.to_thread(
                chain_ort_limit,
                OCR_ROLES,
                setup.manifest,
                images,
                (1, 6),
                options.ort_threads,
                options.limit_seconds,
                options.limit_repeats,
            )
            o = limits["ort"]
            echo(
                f"  limit ONNX Runtime: {o['images_per_s']:,.1f} frames/s of the chain "
                f"({o['lines_per_frame']:.1f} lines a frame; "
                + "; ".join(f"{role} {_points(m)}" for role, m in o["models"].items())
                + ")"
            )
        else:
            inputs = await asyncio.to_thread(model_inputs, setup.frames, setup.role, setup.manifest)
            batches = (1, 4, 8) if w.model == "detect" else (1, 8, 32)
            limits["ort"] = await asyncio.to_thread(
                ort_limit,
                setup.role,
                setup.manifest,
                inputs,
                batches,
                options.ort_threads,
                options.limit_seconds,
                options.limit_repeats,
            )
            o = limits["ort"]
            echo(f"  limit ONNX Runtime: {o['images_per_s']:,.0f} images/s ({_points(o)})")
        named = {
            "nats": limits["nats"]["msgs_per_s"],
            "ort": limits["ort"]["images_per_s"],
        }
        if "decode" in limits:
            named["decode"] = limits["decode"]["images_per_s"]
        finite = {k: v for k, v in named.items() if math.isfinite(v)}
        lowest_name = min(finite, key=lambda k: finite[k])
        lowest = finite[lowest_name]

        analyser = await asyncio.to_thread(make_analyser, setup)
        path_batch = EdgeSettings().max_batch_size  # the worker's cap, by default 32
        path_rate = await asyncio.to_thread(
            edge_path,
            analyser,
            setup.frames,
            path_batch,
            options.limit_seconds,
            options.limit_repeats,
        )
        echo(
            f"  edge path (decode + analyser, batch {path_batch}, one thread, no NATS): "
            f"{rate_text(path_rate)} frames/s"
        )
        threads = EdgeSettings(inference_threads=options.inference_threads).threads
        estimate = min(lowest, path_rate * threads * options.workers)

        await forget_site_frames(publisher)
        results = Results()
        await subscriber.subscribe(subjects.results(SITE), cb=results.on_msg)
        await subscriber.flush()
        worker = await worker_runs(server, publisher, results, setup, ids, options, estimate)
    finally:
        await publisher.close()
        await subscriber.close()

    sat = worker["saturated"]
    # Open loop above capacity: the worker fell behind what was offered. If not, the
    # figure is the offered rate, not the worker's capacity.
    sat["above_capacity"] = bool(sat["publisher_pauses"]) or sat["backlog_at_end"] > max(
        0.1 * sat["sent"], 2 * sat["mean_batch"]
    )
    if not sat["above_capacity"]:
        echo(
            f"  NOTE: only {sat['backlog_at_end']} frames were behind when publishing ended: "
            "the worker nearly kept up, so its capacity may be higher than measured"
        )
    share = sat["frames_per_s"] / lowest if lowest else math.nan
    c = sat["cores"]
    echo(
        f"  worker: {rate_text(sat['frames_per_s'])} frames/s = {share:.0%} of the lowest limit "
        f"({lowest_name}); offered {sat['offered_per_s']:,.0f}/s, mean batch "
        f"{sat['mean_batch']:.1f}, cores worker {c['worker']:.2f} server "
        f"{c['nats_server']:.2f} bench {c['bench']:.2f}"
    )
    pilot = worker["pilot"]
    if sat["publisher_pauses"]:
        echo(
            f"  the publisher paused {sat['publisher_pauses']} times "
            f"({sat['publisher_paused_s']:.1f} s) at {sat['backlog_limit']} frames without "
            "a result"
        )
    echo(
        f"  pilot (closed loop, {pilot['window']} in flight): {rate_text(pilot['frames_per_s'])} "
        f"frames/s; open loop at {options.overload:g}x the higher of that and the "
        f"estimate {worker['estimate_per_s']:,.0f}/s (lowest limit, edge path)"
    )
    echo(
        f"  frames: {sat['sent']} sent = {sat['answered']} answered + {sat['shed']} shed + "
        f"{sat['dropped_intake']} dropped at intake + {sat['dead_letters']} dead-lettered + "
        f"{sat['lost']} lost"
        + (
            f" (the server cut the worker off {sat['server_slow_consumer_cuts']} times)"
            if sat["server_slow_consumer_cuts"]
            else ""
        )
    )
    for key, point in worker["paced"].items():
        lat = point["latency_ms"]
        echo(
            f"  at {key} ({point['offered_per_s']:,.0f}/s, {point['sent']} frames): latency "
            f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; {point['answered']} answered, "
            f"{point['shed']} shed, {point['dropped_intake']} dropped, {point['lost']} lost"
            + (
                f" (the server cut the worker off {point['server_slow_consumer_cuts']} times)"
                if point["server_slow_consumer_cuts"]
                else ""
            )
        )
    return {
        "workload": asdict(w),
        "frame_bytes": frame_bytes,
        "frames_in_pool": len(setup.pool),
        "worker_settings": setup.overrides,
        "worker_processes": options.workers,
        "limits": limits,
        "lowest_limit": {"name": lowest_name, "per_s": lowest},
        "edge_path": {"batch": path_batch, "threads": 1, "frames_per_s": path_rate},
        "estimate_per_s": estimate,
        "worker": worker,
        "worker_frames_per_s": sat["frames_per_s"],
        "share_of_lowest_limit": share,
    }


def _points(limit: dict[str, Any]) -> str:
    """Each point of an ORT limit: batch/threads(xcallers) images/s."""
    return ", ".join(
        f"b{p['batch']}/t{p['threads']}{'x' if p['callers'] > 1 else ''} {p['images_per_s']:,.0f}"
        for p in limit["points"]
    )


async def _connect(url: str, name: str) -> Client:
    import nats

    async def on_error(exc: Exception) -> None:
        log.warning("%s: %s: %s", name, type(exc).__name__, exc)

    return await nats.connect(url, name=name, error_cb=on_error)


async def run(options: Options, workdir: Path) -> list[dict[str, Any]]:
    server = NatsServer(workdir / "nats", name="roofline")
    await asyncio.to_thread(server.start)
    ids = Ids()
    out = []
    try:
        for w in WORKLOADS:
            if w.key in options.workloads:
                out.append(await _workload(server, w, options, workdir, ids))
    finally:
        await asyncio.to_thread(server.stop)
    return out
