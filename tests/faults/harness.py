"""A whole fleet on loopback for fault tests: hub, WAN proxy, site, workers as processes.

Workers run as real ``hybridfleet edge|cloud`` processes so that a test can SIGKILL
or SIGTERM them. A ``Ledger`` listens to what crosses NATS (frames published,
escalations stored, cloud answers, final results) so each test can count published
against answered, lost and duplicated.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN, Hub, site_server
from pipeline.messaging.wanproxy import WanProxy
from schemas import subjects
from schemas.codec import decode_escalation, decode_result, encode
from schemas.messages import Frame, InferenceResult, PrivacyClass

SITE = "site1"


@dataclass
class Ledger:
    """Everything seen on the wire, keyed by frame id."""

    published: dict[str, int] = field(default_factory=dict)  # frame id -> priority
    escalated: set[str] = field(default_factory=set)
    answered: Counter[str] = field(default_factory=Counter)
    finals: Counter[str] = field(default_factory=Counter)
    final_results: dict[str, InferenceResult] = field(default_factory=dict)

    async def on_escalation(self, msg: Msg) -> None:
        self.escalated.add(decode_escalation(msg.data).frame_id)

    async def on_answer(self, msg: Msg) -> None:
        self.answered[decode_result(msg.data).frame_id] += 1

    async def on_final(self, msg: Msg) -> None:
        result = decode_result(msg.data)
        self.finals[result.frame_id] += 1
        self.final_results.setdefault(result.frame_id, result)

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.finals.values() if n > 1)

    def lost(self, frame_ids: set[str]) -> set[str]:
        return {f for f in frame_ids if self.finals[f] == 0}

    def report(self, test: str, frame_ids: set[str]) -> str:
        """One line of counts for docs/reliability.md (printed with ``pytest -s``)."""
        escalated = self.escalated & frame_ids
        finals = [self.final_results[f] for f in frame_ids if f in self.final_results]
        line = (
            f"FAULT {test}: published {len(frame_ids)}, final results {len(finals)}, "
            f"lost {len(self.lost(frame_ids))}, duplicates {self.duplicates()}, "
            f"escalated {len(escalated)}, answered {sum(1 for f in escalated if self.answered[f])}"
            f", degraded {sum(r.degraded for r in finals)}, "
            f"shed {sum(r.reason.value == 'shed' for r in finals)}"
        )
        print(line)
        return line

    def reasons(self) -> Counter[str]:
        return Counter(r.reason.value for r in self.final_results.values())


class Fleet:
    """Hub (1 or 3 nodes) <- WAN proxy <- site server; workers as subprocesses."""

    def __init__(self, workdir: Path, *, hub_nodes: int = 1) -> None:
        self.workdir = workdir
        self.hub = Hub(workdir, nodes=hub_nodes)
        self.proxies: list[WanProxy] = []
        self.site: NatsServer | None = None
        self.site_nc: Client | None = None
        self.hub_nc: Client | None = None
        self.ledger = Ledger()
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._camera = CameraSimulator(CameraOptions(site=SITE, cameras=2, width=160, height=120))
        self._seq = 0

    async def start(self) -> None:
        self.hub.start()
        for port in self.hub.leaf_ports:
            proxy = WanProxy(port)
            await proxy.start()
            self.proxies.append(proxy)
        self.site = site_server(self.workdir, SITE, [p.url for p in self.proxies])
        self.site.start()
        self.site_nc = await nats.connect(self.site.url, name="ledger-site")
        self.hub_nc = await nats.connect(self.hub.urls, name="ledger-hub")
        await self.site_nc.subscribe(subjects.escalations(SITE), cb=self.ledger.on_escalation)
        await self.site_nc.subscribe(subjects.results(SITE), cb=self.ledger.on_final)
        await self.hub_nc.subscribe(subjects.replies(SITE), cb=self.ledger.on_answer)
        await self.wait_for_link(True, 20)

    async def stop(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        for nc in (self.site_nc, self.hub_nc):
            if nc is not None and not nc.is_closed:
                await nc.close()
        if self.site is not None:
            self.site.stop()
        for proxy in self.proxies:
            await proxy.close()
        self.hub.stop()

    # ------------------------------------------------------------------ the link

    async def link_is_up(self) -> bool:
        """True when the hub's JetStream answers through the site's leaf link."""
        assert self.site_nc is not None
        try:
            await self.site_nc.jetstream(domain=HUB_DOMAIN, timeout=1.0).account_info()
        except Exception:
            return False
        return True

    async def wait_for_link(self, up: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while await self.link_is_up() != up:
            if time.monotonic() > deadline:
                raise AssertionError(f"link not {'up' if up else 'down'} after {timeout} s")
            await asyncio.sleep(0.2)

    async def cut(self) -> None:
        for proxy in self.proxies:
            await proxy.cut()

    def restore(self) -> None:
        for proxy in self.proxies:
            proxy.restore()

    async def stream_state(self) -> str:
        """Where escalations sit now: the site's stream and source consumer, the hub's."""
        assert self.site_nc is not None and self.hub_nc is not None
        site, hub = self.site_nc.jetstream(), self.hub_nc.jetstream()
        parts = []
        for label, coro in (
            ("site stream", site.stream_info(subjects.site_escalations_stream(SITE))),
            (
                "to-cloud",
                site.consumer_info(
                    subjects.site_escalations_stream(SITE), subjects.SOURCE_CONSUMER
                ),
            ),
            ("hub stream", hub.stream_info(subjects.ESCALATIONS_STREAM)),
            (
                "cloud consumer",
                hub.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER),
            ),
        ):
            try:
                parts.append(f"{label}: {await coro}")
            except Exception as exc:
                parts.append(f"{label}: {exc!r}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ workers

    def _env(self, role: str, worker: str, extra: dict[str, str]) -> dict[str, str]:
        assert self.site is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDFLEET_")}
        if role == "edge":
            env.update(
                HYBRIDFLEET_NATS_URL=self.site.url,
                HYBRIDFLEET_EDGE_SITE=SITE,
                HYBRIDFLEET_EDGE_WORKER_ID=worker,
                HYBRIDFLEET_EDGE_CLOUD_DOMAIN=HUB_DOMAIN,
            )
        else:
            env.update(
                HYBRIDFLEET_NATS_URL=",".join(self.hub.urls),
                HYBRIDFLEET_CLOUD_WORKER_ID=worker,
                HYBRIDFLEET_CLOUD_SITES=SITE,
                HYBRIDFLEET_CLOUD_SITES_ARE_DOMAINS="true",
                HYBRIDFLEET_STREAM_REPLICAS=str(len(self.hub.servers)),
            )
        env.update({f"HYBRIDFLEET_{k.upper()}": v for k, v in extra.items()})
        return env

    async def start_worker(self, role: str, worker: str, **settings: str) -> None:
        """Start ``hybridfleet <role>`` and wait until it does its job."""
        log = open(self.workdir / f"{worker}.log", "ab")  # noqa: SIM115, ASYNC230
        try:
            self.workers[worker] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "pipeline.cli.main", "--log-level", "INFO", role],
                env=self._env(role, worker, settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        if role == "edge":
            await self._wait_edge_ready(worker)
        else:
            await self._wait_cloud_ready(worker)

    async def _wait_edge_ready(self, worker: str) -> None:
        assert self.site_nc is not None
        probe, _ = self._camera.make_frame("cam1", 0, time.time())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive(worker)
            try:
                await self.site_nc.request(subjects.infer(SITE), encode(_probe(probe)), timeout=0.5)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise AssertionError(f"{worker} did not answer within 30 s")

    async def _wait_cloud_ready(self, worker: str) -> None:
        assert self.hub_nc is not None
        js = self.hub_nc.jetstream()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive(worker)
            try:
                info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
                if info.num_waiting > 0:  # someone is pulling
                    return
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{worker} did not start pulling within 30 s")

    def _check_alive(self, worker: str) -> None:
        code = self.workers[worker].poll()
        if code is not None:
            log = (self.workdir / f"{worker}.log").read_text()[-3000:]
            raise AssertionError(f"{worker} exited with {code}:\n{log}")

    def kill_worker(self, worker: str) -> None:
        """SIGKILL, as a crash or power loss would."""
        proc = self.workers.pop(worker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_worker(self, worker: str, timeout: float = 30) -> int:
        """SIGTERM and wait: the worker drains. Returns its exit code."""
        proc = self.workers.pop(worker)
        if proc.poll() is None:
            proc.terminate()
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
        return proc.returncode

    # ------------------------------------------------------------------ frames

    async def publish(
        self, count: int, rate_hz: float, *, uncertain: bool = True, prefix: str = ""
    ) -> list[str]:
        """Publish ``count`` frames at ``rate_hz``; return their ids.

        With ``uncertain`` every frame asks for a confidence no answer reaches, and is
        priority 2 with privacy ``crop``: each one is escalated while the link is up.
        """
        assert self.site_nc is not None
        ids = []
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate_hz
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            camera = f"cam{1 + i % 2}"
            frame, _ = self._camera.make_frame(camera, self._seq, time.time())
            self._seq += 1
            if uncertain:
                frame = _uncertain(frame)
            if prefix:
                frame = _renamed(frame, prefix + frame.frame_id)
            self.ledger.published[frame.frame_id] = frame.priority
            await self.site_nc.publish(subjects.frames(SITE, camera), encode(frame))
            ids.append(frame.frame_id)
        await self.site_nc.flush()
        return ids

    async def wait_for_finals(self, frame_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.ledger.lost(frame_ids):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)

    async def wait_for_answers(self, frame_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(self.ledger.answered[f] == 0 for f in frame_ids):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.1)


def _probe(frame: Frame) -> Frame:
    return replace(frame, frame_id=f"probe-{time.monotonic_ns()}", priority=1)


def _uncertain(frame: Frame) -> Frame:
    return replace(frame, threshold=1.0, priority=2, privacy=PrivacyClass.CROP, deadline_ms=2000)


def _renamed(frame: Frame, frame_id: str) -> Frame:
    return replace(frame, frame_id=frame_id)


# ---------------------------------------------------------------------------------------
# Helpers for faults 6-10 (poison, overload, slow cloud, stream full, SIGTERM). Module
# functions taking the Fleet, so that nothing above changes.


async def start_worker_with_metrics(fleet: Fleet, role: str, worker: str, **settings: str) -> int:
    """``Fleet.start_worker`` with ``--metrics-port``; returns the port to ``scrape``."""
    from pipeline.messaging.topology import free_port

    port = free_port()
    _spawn(fleet, role, worker, settings, ["--metrics-port", str(port)])
    if role == "edge":
        await fleet._wait_edge_ready(worker)
    else:
        await fleet._wait_cloud_ready(worker)
    return port


def _spawn(fleet: Fleet, role: str, worker: str, settings: dict[str, str], args: list[str]) -> None:
    log = open(fleet.workdir / f"{worker}.log", "ab")  # noqa: SIM115 - child owns it
    try:
        fleet.workers[worker] = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "--log-level", "INFO", role, *args],
            env=fleet._env(role, worker, settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


async def scrape(port: int, timeout: float = 5.0) -> dict[str, float]:
    """A worker's Prometheus metrics: sample name -> value summed over its labels."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return str(r.read().decode())

    text = await asyncio.wait_for(asyncio.to_thread(get), timeout + 1)
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


async def publish_frames(
    fleet: Fleet,
    count: int,
    rate_hz: float,
    *,
    change: Callable[[Frame], Frame] | None = None,
    prefix: str = "",
) -> list[Frame]:
    """Like ``Fleet.publish``, but each frame goes through ``change``; returns the frames.

    The frames are the camera's own (priorities 10/60/30, privacy 20/60/20, threshold
    none, deadline 250 ms) unless ``change`` says otherwise.
    """
    assert fleet.site_nc is not None
    frames = []
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate_hz
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        camera = f"cam{1 + i % 2}"
        frame, _ = fleet._camera.make_frame(camera, fleet._seq, time.time())
        fleet._seq += 1
        if change is not None:
            frame = change(frame)
        if prefix:
            frame = _renamed(frame, prefix + frame.frame_id)
        fleet.ledger.published[frame.frame_id] = frame.priority
        await fleet.site_nc.publish(subjects.frames(SITE, camera), encode(frame))
        frames.append(frame)
    await fleet.site_nc.flush()
    return frames


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
        frame, _ = fleet._camera.make_frame("cam1", fleet._seq, time.time())
        fleet._seq += 1
        frame = replace(_uncertain(frame), frame_id=f"warmup-{time.monotonic_ns()}")
        probes += 1
        try:
            result = await infer(fleet, frame, timeout=3.0)
        except Exception:
            continue
        if result.reason.value == reason:
            return probes
        await asyncio.sleep(0.2)
    raise AssertionError(f"no final result with reason {reason} within {timeout} s")


def signal_worker(fleet: Fleet, worker: str, sig: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
    """Send ``sig`` without waiting; the caller owns the process from now on."""
    proc = fleet.workers.pop(worker)
    proc.send_signal(sig)
    return proc


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


async def site_subscriptions(fleet: Fleet, connection_name: str) -> list[str] | None:
    """Subjects a client of the site server is subscribed to (None: not connected)."""
    import json
    import urllib.request

    assert fleet.site is not None and fleet.site.monitor_port is not None
    url = f"http://127.0.0.1:{fleet.site.monitor_port}/connz?subs=1&limit=1024"

    def get() -> dict[str, object]:
        with urllib.request.urlopen(url, timeout=5) as r:
            data: dict[str, object] = json.loads(r.read())
            return data

    data = await asyncio.wait_for(asyncio.to_thread(get), 6)
    for conn in data.get("connections") or []:  # type: ignore[attr-defined]
        if conn.get("name") == connection_name:
            return list(conn.get("subscriptions_list") or [])
    return None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (an observed value); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
