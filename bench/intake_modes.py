"""The edge's two intakes side by side: what each costs in throughput, what overload does.

Run ``python -m bench.intake_modes`` (``--quick`` for a smoke run, ``--rounds N``,
``--workloads a,b``, ``--overload X``, ``--json PATH``, default
``bench/results/intake_modes.json``). One nats-server; for each round and each workload
of ``bench.roofline`` chosen (default ``a``, raw 640x480 frames, and ``b``, 720p JPEG),
both intakes (``edge.intake``: ``subscription`` and ``stream``, the order alternating by
round), each in a fresh worker process (``bench.roofline_procs.worker_main``, default
settings but for the intake and the model):

* throughput as ``bench.roofline`` measures it (``bench.roofline_worker.worker_runs``):
  the closed-loop pilot, the open-loop frames/s above capacity (its publisher pauses at
  40 MiB of frames without a result, so neither intake drops there), and latency p50
  and p99 at 50% and 90% of that;
* overload: frames published open loop at ``--overload`` (5) times the subscription
  intake's frames/s of the same round (as fast as this process can publish, if less),
  with no pause, bounded in count and time, and every frame accounted for: answered,
  shed (a ``shed`` result), dropped unread at the worker's intake, discarded unread by
  the site stream (the site's count in KV ``HF_SITE``), dead-lettered, or lost (none of
  these: gone unseen). Also the server's slow-consumer cut-offs and the largest size
  of the stream and of the worker's memory (RSS) seen.

Then, per round, stream / subscription for each throughput figure. Between runs the
site stream is deleted, so the subscription intake does not pay for a stream it does
not read. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Final

import nats
from nats.aio.client import Client

from bench.common import begin_run, echo, timed_run, write_figures
from bench.roofline_procs import SITE, Child, forget_site_frames, worker_main
from bench.roofline_publish import Ids, Results, publish
from bench.roofline_worker import clamp, slow_consumers, worker_runs
from bench.roofline_workloads import ROOT, WORKLOADS, Options, make_setup
from pipeline.messaging.server import NatsServer
from schemas import subjects

__all__ = ["main"]

DEFAULT_JSON: Final = ROOT / "bench" / "results" / "intake_modes.json"
INTAKES: Final = ("subscription", "stream")


def _rss_mb(pid: int | None) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return math.nan


async def _discarded(nc: Client) -> int:
    """The site stream's discards counted so far (the site's mark in KV HF_SITE)."""
    try:
        kv = await nc.jetstream().key_value(subjects.SITE_BUCKET)
        entry = await kv.get(f"{SITE}.frames-discarded")
        return int((entry.value or b"0 0").split()[1])
    except Exception:
        return 0


@contextlib.asynccontextmanager
async def _sampling(nc: Client, pid: int | None) -> AsyncIterator[dict[str, float]]:
    """The largest stream bytes and worker RSS (MiB) seen every 0.1 s in the block."""
    peaks = {"stream_mib": 0.0, "worker_rss_mib": 0.0}
    js = nc.jetstream()

    async def sample() -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(subjects.frames_stream(SITE))
                peaks["stream_mib"] = max(peaks["stream_mib"], info.state.bytes / 2**20)
            rss = _rss_mb(pid)
            if math.isfinite(rss):
                peaks["worker_rss_mib"] = max(peaks["worker_rss_mib"], rss)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield peaks
    finally:
        task.cancel()


async def _overload(
    server: NatsServer,
    nc: Client,
    results: Results,
    worker: Child,
    pool: list[tuple[str, bytes]],
    ids: Ids,
    rate: float,
    count: int,
    options: Options,
) -> dict[str, Any]:
    """Publish ``count`` frames open loop at ``rate``/s, unguarded; account for each."""
    before = await worker.snapshot()
    base, base_shed = results.count, results.shed
    discarded_before = await _discarded(nc)
    cuts_before = await asyncio.to_thread(slow_consumers, server)
    async with _sampling(nc, worker.pid) as peaks:
        sent, t0, t1 = await publish(nc, pool, ids, count, rate, options.time_limit_s)
        # Until every frame is counted somewhere, or nothing changed for quiet_s.
        last, changed_at = -1.0, time.monotonic()
        while True:
            after = await worker.snapshot()
            discarded = await _discarded(nc) - discarded_before
            seen = results.count - base + after["dropped"] - before["dropped"] + discarded
            if seen >= sent:
                break
            if seen != last:
                last, changed_at = seen, time.monotonic()
            elif time.monotonic() - changed_at > options.quiet_s:
                break
            await asyncio.sleep(0.1)
    cuts = await asyncio.to_thread(slow_consumers, server)
    shed = results.shed - base_shed
    answered = results.count - base - shed
    dropped = int(after["dropped"] - before["dropped"])
    dead = int(after["dead_letters"] - before["dead_letters"])
    lost = sent - answered - shed - dropped - discarded - dead
    return {
        "target_rate": rate,
        "offered_per_s": sent / (t1 - t0) if t1 > t0 else math.nan,
        "sent": sent,
        "answered": answered,
        "shed": shed,
        "dropped_intake": dropped,
        "discarded_site_stream": discarded,
        "dead_letters": dead,
        "lost": lost,
        "accounted_share": (sent - lost) / sent if sent else math.nan,
        "server_slow_consumer_cuts": cuts - cuts_before if min(cuts, cuts_before) >= 0 else None,
        **peaks,
    }


async def _one(
    server: NatsServer,
    key: str,
    intake: str,
    rate: float | None,
    factor: float,
    options: Options,
    tmp: Path,
) -> dict[str, Any]:
    """Both measurements of one intake on one workload, in a fresh worker process."""
    workload = next(w for w in WORKLOADS if w.key == key)
    setup = await asyncio.to_thread(make_setup, workload, options, tmp)
    setup.overrides["intake"] = intake
    nc = await nats.connect(server.url, name="intake-modes")
    try:
        await forget_site_frames(nc)
        results = Results()
        await nc.subscribe(subjects.results(SITE), cb=results.on_msg)
        ids = Ids()
        worker = await worker_runs(server, nc, results, setup, ids, options, estimate=100.0)
        sat = worker["saturated"]
        capacity = sat["frames_per_s"]
        offered = rate if rate is not None else factor * capacity
        count = clamp(offered * options.saturate_seconds, 100, options.max_frames)
        async with Child(
            worker_main, f"intake-{intake}", server.url, "roofline-edge", setup.overrides
        ) as overloaded:
            warm = results.count + 20
            await publish(nc, setup.pool, ids, 20, 20.0, 5.0)  # warm-up
            await results.wait_for(warm, options.quiet_s)
            overload = await _overload(
                server, nc, results, overloaded, setup.pool, ids, offered, count, options
            )
            await overloaded.stop()
    finally:
        await forget_site_frames(nc)
        await nc.close()
    paced = {k: p["latency_ms"] for k, p in worker["paced"].items()}
    return {
        "intake": intake,
        "frame_bytes": setup.frame_bytes,
        "pilot_frames_per_s": worker["pilot"]["frames_per_s"],
        "saturated_frames_per_s": capacity,
        "saturated": sat,
        "latency_ms": paced,
        "overload": overload,
    }


def _line(r: dict[str, Any]) -> str:
    o = r["overload"]
    lat = r["latency_ms"]
    return (
        f"    {r['intake']:<12} pilot {r['pilot_frames_per_s']:7,.0f}/s  saturated "
        f"{r['saturated_frames_per_s']:7,.0f}/s  p50/p99 at 50% "
        f"{lat['50%']['p50']:.1f}/{lat['50%']['p99']:.1f} ms, at 90% "
        f"{lat['90%']['p50']:.1f}/{lat['90%']['p99']:.1f} ms\n"
        f"    {'':<12} overload {o['offered_per_s']:,.0f}/s: {o['sent']} sent = "
        f"{o['answered']} answered + {o['shed']} shed + {o['dropped_intake']} dropped at "
        f"intake + {o['discarded_site_stream']} discarded by the stream + "
        f"{o['dead_letters']} dead + {o['lost']} LOST ({o['accounted_share']:.1%} accounted "
        f"for); server cut-offs {o['server_slow_consumer_cuts']}; stream max "
        f"{o['stream_mib']:.1f} MiB, worker RSS max {o['worker_rss_mib']:.0f} MiB"
    )


async def _run(options: Options, rounds: int, factor: float, workdir: Path) -> list[dict[str, Any]]:
    server = NatsServer(workdir / "nats", name="intake-modes")
    await asyncio.to_thread(server.start)
    out: list[dict[str, Any]] = []
    try:
        for n in range(rounds):
            for key in options.workloads:
                echo(f"\n== round {n + 1}, workload {key}")
                order = INTAKES if n % 2 == 0 else INTAKES[::-1]
                runs: dict[str, dict[str, Any]] = {}
                rate: float | None = None
                for intake in order:
                    runs[intake] = await _one(server, key, intake, rate, factor, options, workdir)
                    # Both intakes get the same offered rate: 5x the first one's capacity.
                    rate = runs[intake]["overload"]["target_rate"]
                    echo(_line(runs[intake]))
                ratio = {
                    figure: runs["stream"][figure] / runs["subscription"][figure]
                    for figure in ("pilot_frames_per_s", "saturated_frames_per_s")
                }
                echo(
                    f"    stream / subscription: pilot {ratio['pilot_frames_per_s']:.3f}, "
                    f"saturated {ratio['saturated_frames_per_s']:.3f}"
                )
                out.append({"round": n + 1, "workload": key, "runs": runs, "ratio": ratio})
    finally:
        await asyncio.to_thread(server.stop)
    return out


def _parse(argv: Sequence[str] | None) -> tuple[Options, int, float, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_modes", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--workloads", default="a,b", help="bench.roofline workloads (a,b)")
    parser.add_argument("--overload", type=float, default=5.0, help="x capacity (default 5)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH")
    args = parser.parse_args(argv)
    keys = tuple(k.strip() for k in args.workloads.split(",") if k.strip())
    if not keys or any(k not in {w.key for w in WORKLOADS} for k in keys):
        parser.error("--workloads: keys of bench.roofline's workloads (a..e)")
    if not 1 <= args.rounds <= 10 or not 1 < args.overload <= 50:
        parser.error("--rounds must be 1..10 and --overload in (1, 50]")
    quick = args.quick
    options = Options(
        workloads=keys,
        pool=8 if quick else 16,
        limit_seconds=0.1,
        limit_repeats=1,
        nats_messages=0,
        saturate_seconds=1.0 if quick else 3.0,
        max_frames=400 if quick else 3000,
        pilot_seconds=0.5 if quick else 1.5,
        latency_seconds=0.5 if quick else 2.0,
        max_latency_frames=150 if quick else 1000,
        overload=1.5,  # bench.roofline's open loop, for the throughput
        quiet_s=3.0,
        time_limit_s=10.0 if quick else 30.0,
        inference_threads=1,
        workers=1,
        intake="",  # each round sets its own
        ort_threads=(1,),
        plot=None,
    )
    return options, args.rounds, args.overload, args.json


def main(argv: Sequence[str] | None = None) -> int:
    options, rounds, factor, json_path = _parse(argv)
    machine, command = begin_run(
        "hybridfleet intake modes: subscription vs stream", "bench.intake_modes", argv
    )
    timed = timed_run(
        lambda tmp: _run(options, rounds, factor, tmp),
        "hybridfleet-intake-",
        " (anything else running takes cores from the processes measured)",
    )
    if timed is None:
        return 130
    report, times = timed
    echo(times.line())
    write_figures(
        json_path,
        {
            "benchmark": "intake_modes",
            "command": command,
            "machine": machine,
            "total_seconds": times.seconds,
            "load_average_before": list(times.load_before),
            "load_average_after": list(times.load_after),
            "rounds": report,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
