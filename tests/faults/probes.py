"""What the fault tests measure with: metrics, memory, streams, subscriptions, replies.

Functions of a running ``tests.faults.harness.Fleet``: a worker's Prometheus metrics
(``scrape``) and resident memory (``rss_mb``), when final results and raw escalations
arrive, what a stream holds, request/reply on ``infer.<site>`` (``probe_until`` sends
probes until the answers have a given reason), how a signalled worker exits, and a
nearest-rank ``percentile``.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from prometheus_client.parser import text_string_to_metric_families

from schemas import subjects
from schemas.codec import decode_escalation, decode_result, encode
from schemas.messages import Frame, InferenceResult
from tests.faults.harness import SITE, Fleet, uncertain


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


async def scrape(port: int, timeout: float = 5.0) -> dict[str, float]:
    """A worker's Prometheus metrics: sample name -> value summed over its labels."""
    url = f"http://127.0.0.1:{port}/metrics"
    text = (await asyncio.wait_for(asyncio.to_thread(_get, url, timeout), timeout + 1)).decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def rss_mb(fleet: Fleet, worker: str) -> float:
    """Resident memory of a worker process (VmRSS), in MiB."""
    status = Path(f"/proc/{fleet.workers[worker].pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {worker}")


async def site_subscriptions(fleet: Fleet, connection_name: str) -> list[str] | None:
    """Subjects a client of the site server is subscribed to (None: not connected)."""
    assert fleet.site is not None and fleet.site.monitor_port is not None
    url = f"http://127.0.0.1:{fleet.site.monitor_port}/connz?subs=1&limit=1024"
    data: dict[str, Any] = json.loads(await asyncio.wait_for(asyncio.to_thread(_get, url, 5), 6))
    for conn in data.get("connections") or []:
        if conn.get("name") == connection_name:
            return list(conn.get("subscriptions_list") or [])
    return None


async def record_final_arrivals(fleet: Fleet) -> dict[str, float]:
    """From now on, the Unix time each frame's first final result reached the test."""
    assert fleet.site_nc is not None
    arrivals: dict[str, float] = {}

    async def on_final(msg: Msg) -> None:
        arrivals.setdefault(decode_result(msg.data).frame_id, time.time())

    await fleet.site_nc.subscribe(subjects.results(SITE), cb=on_final)
    await fleet.site_nc.flush()
    return arrivals


async def record_raw(fleet: Fleet, subject: str, *, hub: bool = False) -> dict[str, bytes]:
    """From now on, the first raw bytes seen on ``subject`` per frame id (escalations)."""
    nc = fleet.hub_nc if hub else fleet.site_nc
    assert nc is not None
    seen: dict[str, bytes] = {}

    async def on_msg(msg: Msg) -> None:
        seen.setdefault(decode_escalation(msg.data).frame_id, bytes(msg.data))

    await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    return seen


def site_js(fleet: Fleet) -> JetStreamContext:
    assert fleet.site_nc is not None
    return fleet.site_nc.jetstream(timeout=5.0)


def hub_js(fleet: Fleet) -> JetStreamContext:
    assert fleet.hub_nc is not None
    return fleet.hub_nc.jetstream(timeout=5.0)


async def stream_messages(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def read_stream(js: JetStreamContext, stream: str) -> list[RawStreamMsg]:
    """Every message stored in ``stream`` now, oldest first (for small streams)."""
    state = (await js.stream_info(stream)).state
    out = []
    for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
        try:
            out.append(await js.get_msg(stream, seq))
        except Exception:  # deleted (interior gap)
            continue
    return out


async def infer(fleet: Fleet, frame: Frame, timeout: float) -> InferenceResult:
    """Request/reply on ``infer.<site>``: the frame's final result."""
    assert fleet.site_nc is not None
    reply = await fleet.site_nc.request(subjects.infer(SITE), encode(frame), timeout=timeout)
    return decode_result(reply.data)


async def probe_until(fleet: Fleet, reason: str, timeout: float) -> int:
    """Send uncertain frames (escalated unless the link is down) by request/reply, one
    at a time, until one's final result has ``reason``; returns how many it took.

    ``cloud_answer``: escalations reach the cloud and answers come back (the hub's
    source of the site stream can take seconds to start). ``link_down``: the edge
    itself has noticed a cut link. Each probe has its final result like any frame.
    """
    probes = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = replace(uncertain()(fleet.next_frame()), frame_id=f"warmup-{time.monotonic_ns()}")
        probes += 1
        try:
            result = await infer(fleet, frame, timeout=3.0)
        except Exception:
            continue
        if result.reason.value == reason:
            return probes
        await asyncio.sleep(0.2)
    raise AssertionError(f"no final result with reason {reason} within {timeout} s")


async def start_cloud_and_edge(fleet: Fleet, warm_up_s: float = 30) -> None:
    """``cloud-1`` and ``edge-1``, and escalations answered end to end (the hub's source
    of the site stream has started)."""
    await fleet.start_worker("cloud", "cloud-1")
    await fleet.start_worker("edge", "edge-1")
    await probe_until(fleet, "cloud_answer", warm_up_s)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code, or None (the process is then killed) if it ran past ``timeout``."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return None
        await asyncio.sleep(0.05)
    return proc.returncode


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (an observed value); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
