"""A whole fleet on loopback for fault tests: hub, WAN proxy, site, workers as processes.

Workers run as real ``hybridfleet edge|cloud`` processes so that a test can SIGKILL
or SIGTERM them. The fleet's ``Ledger`` (``tests.faults.ledger``) listens to what
crosses NATS. ``tests.faults.probes`` holds what the tests measure with.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import nats
from nats.aio.client import Client

from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN, Hub, ask_hub, free_port, site_server
from pipeline.messaging.wanproxy import WanProxy
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Frame, PrivacyClass
from tests.faults.ledger import Ledger

SITE = "site1"
READY_S = 30  # how long a worker may take to start doing its job


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, poll_s: float = 0.2
) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        done = await result if inspect.isawaitable(result) else result
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)


def uncertain(deadline_ms: int = 2000) -> Callable[[Frame], Frame]:
    """A change that gets a frame escalated while the link is up: it asks for a
    confidence no answer reaches, and is priority 2 with privacy ``crop``."""

    def change(frame: Frame) -> Frame:
        return replace(
            frame, threshold=1.0, priority=2, privacy=PrivacyClass.CROP, deadline_ms=deadline_ms
        )

    return change


class Fleet:
    """Hub (1 or 3 nodes) <- WAN proxy <- site server; workers as subprocesses.

    ``start()`` starts the servers; ``stop()`` stops everything it started, by pid.
    """

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
        return await ask_hub(self.site_nc) is None

    async def wait_for_link(self, up: bool, timeout: float) -> None:
        async def as_wanted() -> bool:
            return await self.link_is_up() == up

        if not await until(as_wanted, timeout):
            raise AssertionError(f"link not {'up' if up else 'down'} after {timeout} s")

    async def cut(self) -> None:
        for proxy in self.proxies:
            await proxy.cut()

    async def cut_and_wait(self) -> None:
        """Cut the WAN link and wait until the hub no longer answers through it."""
        await self.cut()
        await self.wait_for_link(False, 5)

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
        await self._start(role, worker, settings, [])

    async def start_worker_with_metrics(self, role: str, worker: str, **settings: str) -> int:
        """``start_worker`` with ``--metrics-port``; returns the port to ``scrape``."""
        port = free_port()
        await self._start(role, worker, settings, ["--metrics-port", str(port)])
        return port

    async def start_edge_of_capacity(self, max_batch: int, batch_ms: int, **settings: str) -> int:
        """``edge-1`` with a small, known capacity: batches of at most ``max_batch``
        frames, each ``batch_ms`` longer (``edge.inject_latency_ms``). Returns its
        metrics port."""
        return await self.start_worker_with_metrics(
            "edge",
            "edge-1",
            edge_max_batch_size=str(max_batch),
            edge_inject_latency_ms=str(batch_ms),
            **settings,
        )

    async def _start(
        self, role: str, worker: str, settings: dict[str, str], args: list[str]
    ) -> None:
        log = open(self.workdir / f"{worker}.log", "ab")  # noqa: SIM115, ASYNC230
        try:
            self.workers[worker] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                [sys.executable, "-m", "pipeline.cli.main", "--log-level", "INFO", role, *args],
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
        site_nc = self.site_nc
        frame, _ = self._camera.make_frame("cam1", 0, time.time())

        async def answers() -> bool:
            self._check_alive(worker)
            probe = replace(frame, frame_id=f"probe-{time.monotonic_ns()}", priority=1)
            try:
                await site_nc.request(subjects.infer(SITE), encode(probe), timeout=0.5)
            except Exception:
                return False
            return True

        if not await until(answers, READY_S, poll_s=0.1):
            raise AssertionError(f"{worker} did not answer within {READY_S} s")

    async def _wait_cloud_ready(self, worker: str) -> None:
        assert self.hub_nc is not None
        js = self.hub_nc.jetstream()

        async def pulls() -> bool:
            self._check_alive(worker)
            try:
                info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
            except Exception:
                return False
            return bool(info.num_waiting > 0)  # someone is pulling

        if not await until(pulls, READY_S, poll_s=0.1):
            raise AssertionError(f"{worker} did not start pulling within {READY_S} s")

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

    def signal_worker(self, worker: str, sig: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
        """Send ``sig`` without waiting; the caller owns the process from now on."""
        proc = self.workers.pop(worker)
        proc.send_signal(sig)
        return proc

    # ------------------------------------------------------------------ frames

    def next_frame(self, camera: str = "cam1") -> Frame:
        """The camera's next frame, captured now."""
        frame, _ = self._camera.make_frame(camera, self._seq, time.time())
        self._seq += 1
        return frame

    async def publish_frames(
        self,
        count: int,
        rate_hz: float,
        *,
        change: Callable[[Frame], Frame] | None = None,
        prefix: str = "",
    ) -> list[Frame]:
        """Publish ``count`` frames at ``rate_hz``, each through ``change``; return them.

        The frames are the camera's own (priorities 10/60/30, privacy 20/60/20, threshold
        none, deadline 250 ms) unless ``change`` says otherwise.
        """
        assert self.site_nc is not None
        frames = []
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate_hz
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            camera = f"cam{1 + i % 2}"
            frame = self.next_frame(camera)
            if change is not None:
                frame = change(frame)
            if prefix:
                frame = replace(frame, frame_id=prefix + frame.frame_id)
            self.ledger.published[frame.frame_id] = frame.priority
            await self.site_nc.publish(subjects.frames(SITE, camera), encode(frame))
            frames.append(frame)
        await self.site_nc.flush()
        return frames

    async def publish(
        self, count: int, rate_hz: float, *, uncertain: bool = True, prefix: str = ""
    ) -> list[str]:
        """Publish ``count`` frames at ``rate_hz``; return their ids.

        With ``uncertain`` every frame is escalated while the link is up (``uncertain()``).
        """
        change = _UNCERTAIN if uncertain else None
        frames = await self.publish_frames(count, rate_hz, change=change, prefix=prefix)
        return [frame.frame_id for frame in frames]

    async def wait_for_finals(self, frame_ids: set[str], timeout: float) -> None:
        await until(lambda: not self.ledger.lost(frame_ids), timeout, poll_s=0.1)

    async def wait_for_answers(self, frame_ids: set[str], timeout: float) -> None:
        await until(lambda: not self.ledger.unanswered(frame_ids), timeout, poll_s=0.1)


_UNCERTAIN = uncertain()
