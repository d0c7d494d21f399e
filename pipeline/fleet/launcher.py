"""A whole fleet as local processes on loopback: ``hybridfleet fleet up``.

The shape is the real one (docs/topology.md): a hub of 1 or 3 nats-servers
(JetStream domain ``hub``), one nats-server per site as a leaf node of the hub with
its own JetStream domain, and as separate ``hybridfleet`` processes: K edge workers
per site, M cloud workers, and one camera simulator per site. Command lines and
options are in ``pipeline.fleet.spec``.

Security is on unless ``FleetOptions.secure`` is False: every process logs in as a
user of ``pipeline.messaging.security`` (``pipeline.fleet.auth`` keeps them in
``credentials.json``), so a camera may only publish frames and only edge workers may
publish escalations of their site.

Everything started is supervised. A worker or camera that exits when it should not is
started again after an exponential backoff (``pipeline.fleet.supervisor``); one that keeps
failing, or a server that dies, stops the fleet with a report. ``rolling_restart()``
replaces every worker one at a time: the new process first, and only once it has
subscribed, SIGTERM to the old one, which drains, so no frame is left without a
worker. The launcher is a ``pipeline.service.Service``: ``drain()`` and ``close()`` end
cameras, then edge workers (SIGTERM: they drain, waiting for their escalations'
answers), then cloud workers, then the servers. ``fleet.json`` and
``prometheus-targets.json`` in the working directory (``pipeline.fleet.record``) list
every process for ``hybridfleet fleet status`` and Prometheus.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from pipeline.fleet.auth import CREDENTIALS_FILE, FleetCredentials
from pipeline.fleet.pool import ProcessPool
from pipeline.fleet.procs import Child, FleetMember, healthy, wait_until
from pipeline.fleet.record import (
    fleet_document,
    prometheus_targets,
    refuse_running_fleet,
    server_member,
    write_atomic,
)
from pipeline.fleet.spec import (
    FLEET_FILE,
    PROMETHEUS_TARGETS_FILE,
    FleetOptions,
    camera_command,
    site_names,
    worker_command,
    worker_env,
)
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import Hub, free_port, site_server, wait_for_leaf
from pipeline.service import Service
from schemas.errors import HybridfleetError

__all__ = ["FleetLauncher"]

SUPERVISE_S = 0.5  # how often crashed processes and dead servers are looked for


class FleetLauncher(Service):
    """Start, supervise and stop a fleet. Use as ``async with FleetLauncher(options)``.

    ``start()`` returns when every server is up, every site's leaf link reaches the
    hub's JetStream, every worker has subscribed to its inputs, and the cameras run;
    from then on the fleet is supervised. If anything fails on the way, what was
    started is stopped again. ``failure`` says why the fleet failed, if it did.
    Progress lines go to ``out``.
    """

    def __init__(self, options: FleetOptions, out: TextIO | None = sys.stderr) -> None:
        self.options = options
        self.workdir = Path(options.workdir).resolve()
        self._out = out
        self.hub: Hub | None = None
        self.site_servers: dict[str, NatsServer] = {}
        self.credentials: FleetCredentials | None = None
        self._server_members: list[FleetMember] = []  # kept after stop, pids included
        self.pool = ProcessPool(
            self.workdir,
            options.restart,
            self._servers_of,
            self._say,
            lambda: self._write_files("running"),
        )
        self.failure: str | None = None
        self._roll_requests = asyncio.Event()
        self._roll: asyncio.Task[bool] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.rolls = {"started": 0, "done": 0, "failed": 0}
        self._started_at = 0.0

    @property
    def name(self) -> str:
        return "fleet up"

    def __repr__(self) -> str:
        return f"FleetLauncher({str(self.workdir)!r})"

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        """Start the servers, then cloud workers, edge workers and cameras, in order."""
        refuse_running_fleet(self.workdir / FLEET_FILE)
        for role in ("edge", "cloud"):
            self.options.config_file(role)  # fail before anything is started
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._started_at = time.time()
        try:
            await self._start_servers()
            await self._start_workers("cloud")
            await self._start_workers("edge")
            self._start_cameras()
        except BaseException:
            await self.close()
            raise
        self._write_files("running")
        self._say(f"fleet up: {self.workdir / FLEET_FILE}")

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        self._supervisor = tasks.create_task(self._supervise(tasks), name="fleet supervisor")

    async def _stop_taking(self) -> None:
        """No restart and no rolling restart from now on."""
        for task in (self._supervisor, self._roll):
            if task is not None:
                task.cancel()

    async def _release(self) -> None:
        """Cameras, then edge workers (they drain), cloud workers, sites, the hub."""
        await self.pool.cancel_background()
        for role in ("camera", "edge", "cloud"):
            await self.pool.stop_role(role)
        for name, server in self.site_servers.items():
            await asyncio.to_thread(server.stop)
            self._say(f"site {name} server stopped")
        if self.hub is not None:
            await asyncio.to_thread(self.hub.stop)
            self._say("hub stopped")
        if self._started_at:
            self._write_files("stopped")

    async def _supervise(self, tasks: asyncio.TaskGroup) -> None:
        """Restart what exits (``FleetOptions.restart``) and start the rolling restarts
        asked for; return when one process keeps failing or a server dies."""
        while True:
            failure = self.pool.supervise() or self.check()
            if failure is not None:
                self.failure = failure
                self._say(f"fleet failed: {failure}")
                if self._roll is not None:
                    self._roll.cancel()
                return
            if self._roll_requests.is_set():
                self._roll_requests.clear()
                if self._roll is None or self._roll.done():
                    self._roll = tasks.create_task(self.rolling_restart(), name="rolling restart")
                else:
                    self._say("a rolling restart is running already: request ignored")
            await asyncio.sleep(SUPERVISE_S)

    def request_roll(self) -> None:
        """Ask for a rolling restart of every worker (what SIGHUP does to ``fleet up``);
        ignored, with a note, while one runs."""
        self._roll_requests.set()

    async def run(
        self,
        seconds: float | None = None,
        stop: asyncio.Event | None = None,
        roll: asyncio.Event | None = None,
    ) -> int:
        """Until ``seconds`` pass or ``stop`` is set (0), or the fleet fails (1).

        Setting ``roll`` asks for a rolling restart (``request_roll``). The caller stops
        the fleet afterwards (``drain()``, ``close()`` or leaving ``async with``).
        """
        if self._runner is None:
            raise RuntimeError("FleetLauncher: call start() (or use async with) first")
        if roll is not None:
            self._roll_requests = roll
        waiters: list[asyncio.Future[Any]] = [self._runner]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters[1:]:
                waiter.cancel()
        if self._runner.done() and not self._runner.cancelled():
            await self._runner  # raise what broke the supervision, if anything did
        return 0 if self.failure is None else 1

    def check(self) -> str | None:
        """Which server died (None: all run). Servers are not restarted: the fleet fails."""
        servers = list(self.site_servers.values()) + (self.hub.servers if self.hub else [])
        for server in servers:
            if not server.running:
                return f"nats-server {server.name} exited; see {server.workdir}"
        return None

    async def rolling_restart(self) -> bool:
        """Replace every cloud worker, then every edge worker, one at a time.

        Each new process starts beside the one it replaces (same worker id, same queue
        group, a new metrics port), and only once it has subscribed does the old one
        get SIGTERM and drain, so frames always have a subscribed edge worker. When a
        new process does not start, it is stopped, the old one keeps running, and the
        restart ends there (False).
        """
        self.rolls["started"] += 1
        self._write_files("running")
        self._say("rolling restart: cloud workers, then edge workers, one at a time")
        try:
            ok = await self._roll_workers()
        except HybridfleetError as exc:  # e.g. a settings file removed meanwhile
            self._say(f"rolling restart stopped: {exc}")
            ok = False
        self.rolls["done" if ok else "failed"] += 1
        self._write_files("running")
        self._say(f"rolling restart {'done' if ok else 'failed'}")
        return ok

    async def _roll_workers(self) -> bool:
        for role in ("cloud", "edge"):
            for child in [c for c in self.pool.children if c.member.role == role]:
                if child.proc.poll() is not None or child.restart_at is not None:
                    self._say(f"{child.member.name} is not running: not restarted")
                    continue
                port = free_port()
                config = str(self.options.config_file(role))
                if not await self.pool.replace(child, worker_command(role, config, port), port):
                    return False
        return True

    @property
    def members(self) -> list[FleetMember]:
        """Every process of the fleet: servers first, then workers in start order."""
        return self._server_members + self.pool.members

    # ------------------------------------------------------------------ servers

    async def _start_servers(self) -> None:
        sites = site_names(self.options.sites)
        if self.options.secure:
            path = self.workdir / CREDENTIALS_FILE
            self.credentials = FleetCredentials.load_or_generate(
                path, sites, self.options.edge_worker_ids
            )
            self.credentials.save(path)
        creds = self.credentials
        self.hub = Hub(
            self.workdir,
            nodes=self.options.hub_nodes,
            cloud=creds.cloud if creds else None,
            leaves=creds.leaves() if creds else None,
        )
        await asyncio.to_thread(self.hub.start)
        for server in self.hub.servers:
            await wait_until(partial(healthy, server), f"hub node {server.name}", 30)
            self._server_members.append(server_member(server, "hub"))
            self._say(f"hub node {server.name} up {server.url} (pid {server.pid})")
        leaf_urls = [f"nats-leaf://127.0.0.1:{port}" for port in self.hub.leaf_ports]
        for site in sites:
            server = site_server(
                self.workdir,
                site,
                leaf_urls,
                users=creds.site_users(site) if creds else None,
                leaf=creds.sites[site]["leaf"] if creds else None,
            )
            self.site_servers[site] = server
            await asyncio.to_thread(server.start)
            await wait_for_leaf(self._url(server.url, site, "operator"))
            self._server_members.append(server_member(server, "site", site))
            self._say(f"site {site} server up {server.url} (pid {server.pid}), linked to the hub")
        if creds:
            self._say(f"site permissions on; users in {self.workdir / CREDENTIALS_FILE}")

    def _url(self, url: str, site: str | None, role: str) -> str:
        """``url`` with the credentials of ``role`` at ``site`` (None: the hub), if secure."""
        if self.credentials is None:
            return url
        return self.credentials.user(site, role).url(url)

    def _servers_of(self, member: FleetMember) -> list[NatsServer]:
        """Where a worker's connection shows up: every hub node, or its site's server."""
        if member.role == "cloud":
            return list(self.hub.servers) if self.hub else []
        return [self.site_servers[member.site]]

    # ------------------------------------------------------------------ workers

    async def _start_workers(self, role: str) -> None:
        assert self.hub is not None
        config = str(self.options.config_file(role))
        sites = site_names(self.options.sites)
        started: list[Child] = []
        if role == "cloud":
            urls = ",".join(self.hub.urls)
            for i in range(1, self.options.cloud_workers + 1):
                worker = f"cloud-{i}"
                env = worker_env(
                    "cloud",
                    nats_url=self._url(urls, None, "cloud"),
                    worker=worker,
                    sites=sites,
                    replicas=self.options.hub_nodes,
                )
                started.append(self._start_worker(worker, "cloud", "", worker, config, env, urls))
        else:
            for site in sites:
                url = self.site_servers[site].url
                for worker in self.options.edge_worker_ids:
                    env = worker_env(
                        "edge", nats_url=self._url(url, site, "edge"), site=site, worker=worker
                    )
                    name = f"edge-{site}-{worker.removeprefix('edge-')}"
                    started.append(self._start_worker(name, "edge", site, worker, config, env, url))
        # Started together, waited for together: each loads its model at the same time.
        for child in started:
            await self.pool.wait_ready(child)
            self._say(
                f"{child.member.name} up (pid {child.member.pid}) "
                f"metrics {child.member.metrics_url}"
            )

    def _start_worker(
        self,
        name: str,
        role: str,
        site: str,
        worker: str,
        config: str,
        env: dict[str, str],
        url: str,
    ) -> Child:
        port = free_port()
        args = worker_command(role, config, port)
        return self.pool.start(name, role, site, worker, args, env, url=url, metrics_port=port)

    def _start_cameras(self) -> None:
        o = self.options
        for site, server in self.site_servers.items():
            args = camera_command(site, o.cameras, o.rate_hz, o.camera_seconds)
            env = worker_env("camera", nats_url=self._url(server.url, site, "camera"))
            child = self.pool.start(f"camera-{site}", "camera", site, "", args, env, url=server.url)
            child.may_finish = True
            self._say(
                f"{child.member.name} up (pid {child.member.pid}): {o.cameras} cameras at "
                f"{o.rate_hz:g} frames/s for {o.camera_seconds:g} s"
            )

    # ------------------------------------------------------------------ files

    def _write_files(self, state: str) -> None:
        members = self.members
        document = fleet_document(
            state,
            workdir=self.workdir,
            secure=self.credentials is not None,
            started_at=self._started_at,
            updated_at=time.time(),
            sites=site_names(self.options.sites),
            rolls=self.rolls,
            members=members,
        )
        write_atomic(self.workdir / FLEET_FILE, document)
        write_atomic(self.workdir / PROMETHEUS_TARGETS_FILE, prometheus_targets(state, members))

    def _say(self, line: str) -> None:
        if self._out is not None:
            print(f"[fleet] {line}", file=self._out, flush=True)
