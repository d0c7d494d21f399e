"""A whole fleet on loopback for fault tests: hub, WAN proxy, site, workers as processes.

Workers run as real ``hybridfleet edge|cloud`` processes so that a test can SIGKILL
or SIGTERM them. A ``Ledger`` listens to what crosses NATS (frames published,
escalations stored, cloud answers, final results) so each test can count published
against answered, lost and duplicated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.camera import CameraOptions, CameraSimulator
from pipeline.natsserver import NatsServer
from pipeline.topology import HUB_DOMAIN, Hub, site_server
from pipeline.wanproxy import WanProxy
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
                [sys.executable, "-m", "pipeline.cli", "--log-level", "INFO", role],
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
