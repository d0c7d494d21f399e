"""A whole fleet as local processes on loopback: ``hybridfleet fleet up``.

The shape is the real one (docs/architecture.md): a hub of 1 or 3 nats-servers
(JetStream domain ``hub``), one nats-server per site as a leaf node of the hub with
its own JetStream domain, and as separate ``hybridfleet`` processes: K edge workers
per site, M cloud workers, and one camera simulator per site.

Workers are started with the same command lines as the services of
``docker-compose.yml`` (``worker_command``, ``camera_command``), with the settings
files of ``deploy/fleet/`` and what differs per process in ``HYBRIDFLEET_*``
variables (``worker_env``). ``tests/unit/test_compose.py`` holds the two together.

Everything started is supervised: a process that exits when it should not stops the
fleet with a report. ``stop()`` ends cameras, then edge workers (SIGTERM: they drain,
waiting for their escalations' answers), then cloud workers, then the servers.
``fleet.json`` in the working directory lists every process (pid, URLs, metrics
endpoint) for ``hybridfleet fleet status``, and ``prometheus-targets.json`` lists the
metrics endpoints in Prometheus's file-based discovery format.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import nats

from pipeline.natsserver import NatsServer
from pipeline.topology import HUB_DOMAIN, Hub, free_port, site_server
from schemas import subjects
from schemas.errors import ConfigError, HybridfleetError

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_WORKDIR",
    "FLEET_FILE",
    "PROMETHEUS_TARGETS_FILE",
    "FleetLauncher",
    "FleetMember",
    "FleetOptions",
    "camera_command",
    "site_names",
    "worker_command",
    "worker_env",
]

FLEET_FILE = "fleet.json"
PROMETHEUS_TARGETS_FILE = "prometheus-targets.json"
DEFAULT_WORKDIR = Path(".hybridfleet")
# The settings files docker-compose.yml mounts at /etc/hybridfleet.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[1] / "deploy" / "fleet"

_READY_TIMEOUT_S = 60.0  # worker start includes loading onnxruntime on a busy machine
_DRAIN_TIMEOUT_S = 30.0  # an edge worker waits for its escalations' deadlines
_POLL_S = 0.2


def site_names(count: int) -> list[str]:
    """The sites of a fleet of ``count`` sites: ``site1`` .. ``site<count>``."""
    return [f"site{i}" for i in range(1, count + 1)]


def worker_command(role: str, config_file: str, metrics_port: int) -> list[str]:
    """The ``hybridfleet`` arguments of an edge or cloud worker (as in docker-compose.yml)."""
    if role not in ("edge", "cloud"):
        raise ValueError(f"role must be edge or cloud, got {role!r}")
    return [
        "--log-level",
        "INFO",
        role,
        "--config",
        config_file,
        "--metrics-port",
        str(metrics_port),
    ]


def camera_command(site: str, cameras: int, rate_hz: float, seconds: float) -> list[str]:
    """The ``hybridfleet`` arguments of a site's camera simulator."""
    return [
        "--log-level",
        "INFO",
        "camera",
        "--site",
        site,
        "--cameras",
        str(cameras),
        "--rate",
        f"{rate_hz:g}",
        "--seconds",
        f"{seconds:g}",
    ]


def worker_env(
    role: str,
    *,
    nats_url: str,
    site: str = "",
    worker: str = "",
    sites: Sequence[str] = (),
    replicas: int = 1,
) -> dict[str, str]:
    """The per-process settings, as ``HYBRIDFLEET_*`` variables (they win over the file).

    An edge worker needs its site server's URL, its site and its id. A cloud worker
    needs every hub node's URL, its id, the sites it sources, and the replica count
    that the hub's size allows. A camera needs only its site server's URL.
    """
    env = {"HYBRIDFLEET_NATS_URL": nats_url}
    if role == "edge":
        env.update(HYBRIDFLEET_EDGE_SITE=site, HYBRIDFLEET_EDGE_WORKER_ID=worker)
    elif role == "cloud":
        env.update(
            HYBRIDFLEET_CLOUD_WORKER_ID=worker,
            HYBRIDFLEET_CLOUD_SITES=",".join(sites),
            HYBRIDFLEET_STREAM_REPLICAS=str(replicas),
        )
    elif role != "camera":
        raise ValueError(f"role must be edge, cloud or camera, got {role!r}")
    return env


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What ``fleet up`` runs. Cameras and rate are per site; rate is frames/s per camera."""

    sites: int = 2
    edge_workers: int = 1
    cloud_workers: int = 1
    hub_nodes: int = 3
    cameras: int = 2
    rate_hz: float = 10.0
    # The simulators stop after this long; the workers keep running until stopped.
    camera_seconds: float = 600.0
    workdir: Path = DEFAULT_WORKDIR
    config_dir: Path = DEFAULT_CONFIG_DIR

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.sites <= 99, "sites must be 1..99"),
            (1 <= self.edge_workers <= 64, "edge_workers must be 1..64"),
            (1 <= self.cloud_workers <= 64, "cloud_workers must be 1..64"),
            (self.hub_nodes in (1, 3), "hub_nodes must be 1 or 3"),
            (self.cameras >= 1, "cameras must be >= 1"),
            (self.rate_hz > 0 and self.camera_seconds > 0, "rate and camera seconds must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def config_file(self, role: str) -> Path:
        """The settings file of ``role`` (``edge`` or ``cloud``) in ``config_dir``."""
        path = Path(self.config_dir) / f"{role}.toml"
        if not path.is_file():
            raise ConfigError(f"settings file {path} does not exist (see --config-dir)")
        return path


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One process of the fleet, as written to ``fleet.json``.

    ``role`` is ``hub``, ``site``, ``edge``, ``cloud`` or ``camera``. ``url`` is a
    server's client URL, or the URL a worker connects to. ``monitor_url`` is a server's
    HTTP monitoring endpoint; ``metrics_url`` a worker's Prometheus endpoint.
    """

    name: str
    role: str
    pid: int
    url: str
    log: str
    site: str = ""
    worker: str = ""
    monitor_url: str = ""
    metrics_port: int = 0
    metrics_url: str = ""


@dataclass
class _Child:
    """A ``hybridfleet`` subprocess and what the launcher knows of it."""

    member: FleetMember
    proc: subprocess.Popen[bytes]
    # A camera that finishes its run is done, not failed.
    may_finish: bool = False
    finished: bool = False

    def tail(self, chars: int = 2000) -> str:
        try:
            return Path(self.member.log).read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class FleetLauncher:
    """Start, supervise and stop a fleet. Use as ``async with FleetLauncher(options)``.

    ``start()`` returns when every server is up, every site's leaf link reaches the
    hub's JetStream, every worker has subscribed to its inputs, and the cameras run.
    If anything fails on the way, what was started is stopped again. ``stop()`` is
    idempotent. Progress lines go to ``out``.
    """

    def __init__(self, options: FleetOptions, out: TextIO | None = sys.stderr) -> None:
        self.options = options
        self.workdir = Path(options.workdir).resolve()
        self._out = out
        self.hub: Hub | None = None
        self.site_servers: dict[str, NatsServer] = {}
        self._server_members: list[FleetMember] = []  # kept after stop, pids included
        self._children: list[_Child] = []
        self._started_at = 0.0
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the servers, then cloud workers, edge workers and cameras, in order."""
        self._refuse_running_fleet()
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
            await self.stop()
            raise
        self._write_files("running")
        self._say(f"fleet up: {self.workdir / FLEET_FILE}")

    async def stop(self) -> None:
        """Cameras, then edge workers (they drain), cloud workers, sites, the hub."""
        if self._stopped:
            return
        self._stopped = True
        for role in ("camera", "edge", "cloud"):
            await self._stop_role(role)
        for name, server in self.site_servers.items():
            await asyncio.to_thread(server.stop)
            self._say(f"site {name} server stopped")
        if self.hub is not None:
            await asyncio.to_thread(self.hub.stop)
            self._say("hub stopped")
        if self._started_at:
            self._write_files("stopped")

    async def run(self, seconds: float | None = None, stop: asyncio.Event | None = None) -> int:
        """Supervise until ``seconds`` pass or ``stop`` is set (0), or a process dies (1).

        The caller stops the fleet afterwards (``stop()`` or leaving ``async with``).
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            failure = self.check()
            if failure is not None:
                self._say(f"fleet failed: {failure}")
                return 1
            if stop is not None and stop.is_set():
                return 0
            await asyncio.sleep(0.5)
        return 0

    def check(self) -> str | None:
        """What died unexpectedly since the last check (None: all is well)."""
        for child in self._children:
            code = child.proc.poll()
            if code is None or child.finished:
                continue
            if child.may_finish and code == 0:
                child.finished = True
                self._say(f"{child.member.name} finished")
                continue
            return f"{child.member.name} (pid {child.member.pid}) exited with {code}; " + (
                f"log {child.member.log}:\n{child.tail()}"
            )
        servers = list(self.site_servers.values()) + (self.hub.servers if self.hub else [])
        for server in servers:
            if not server.running:
                return f"nats-server {server.name} exited; see {server.workdir}"
        return None

    @property
    def members(self) -> list[FleetMember]:
        """Every process of the fleet: servers first, then workers in start order."""
        return self._server_members + [child.member for child in self._children]

    def __del__(self) -> None:
        # Warn only: stopping needs the event loop, and the processes outlive us anyway.
        if self._started_at and not self._stopped:
            warnings.warn(
                f"FleetLauncher of {self.workdir} dropped without stop(); its processes run on",
                ResourceWarning,
                stacklevel=1,
            )

    async def __aenter__(self) -> FleetLauncher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ servers

    async def _start_servers(self) -> None:
        self.hub = Hub(self.workdir, nodes=self.options.hub_nodes)
        await asyncio.to_thread(self.hub.start)
        for server in self.hub.servers:
            await _wait_until(partial(_healthy, server), f"hub node {server.name}", 30)
            self._server_members.append(_server_member(server, "hub"))
            self._say(f"hub node {server.name} up {server.url} (pid {server.pid})")
        leaf_urls = [f"nats-leaf://127.0.0.1:{port}" for port in self.hub.leaf_ports]
        for site in site_names(self.options.sites):
            server = site_server(self.workdir, site, leaf_urls)
            self.site_servers[site] = server
            await asyncio.to_thread(server.start)
            await _wait_for_leaf(server.url)
            self._server_members.append(_server_member(server, "site", site))
            self._say(f"site {site} server up {server.url} (pid {server.pid}), linked to the hub")

    # ------------------------------------------------------------------ workers

    async def _start_workers(self, role: str) -> None:
        assert self.hub is not None
        config = str(self.options.config_file(role))
        sites = site_names(self.options.sites)
        started: list[tuple[_Child, Callable[[], bool]]] = []
        if role == "cloud":
            for i in range(1, self.options.cloud_workers + 1):
                worker = f"cloud-{i}"
                env = worker_env(
                    "cloud",
                    nats_url=",".join(self.hub.urls),
                    worker=worker,
                    sites=sites,
                    replicas=self.options.hub_nodes,
                )
                child = self._spawn(worker, "cloud", "", worker, config, env)
                started.append((child, partial(_cloud_ready, self.hub.servers, worker)))
        else:
            for site in sites:
                server = self.site_servers[site]
                for i in range(1, self.options.edge_workers + 1):
                    worker = f"edge-{i}"
                    env = worker_env("edge", nats_url=server.url, site=site, worker=worker)
                    child = self._spawn(f"edge-{site}-{i}", "edge", site, worker, config, env)
                    started.append((child, partial(_edge_ready, server, site, worker)))
        # Started together, waited for together: each loads its model at the same time.
        for child, ready in started:
            await self._wait_ready(child, ready)
            self._say(
                f"{child.member.name} up (pid {child.member.pid}) "
                f"metrics {child.member.metrics_url}"
            )

    def _spawn(
        self, name: str, role: str, site: str, worker: str, config: str, env: dict[str, str]
    ) -> _Child:
        port = free_port()
        args = worker_command(role, config, port)
        return self._popen(name, role, site, worker, args, env, metrics_port=port)

    def _start_cameras(self) -> None:
        o = self.options
        for site, server in self.site_servers.items():
            args = camera_command(site, o.cameras, o.rate_hz, o.camera_seconds)
            env = worker_env("camera", nats_url=server.url)
            child = self._popen(f"camera-{site}", "camera", site, "", args, env, metrics_port=0)
            child.may_finish = True
            self._say(
                f"{child.member.name} up (pid {child.member.pid}): {o.cameras} cameras at "
                f"{o.rate_hz:g} frames/s for {o.camera_seconds:g} s"
            )

    def _popen(
        self,
        name: str,
        role: str,
        site: str,
        worker: str,
        args: list[str],
        env: dict[str, str],
        *,
        metrics_port: int,
    ) -> _Child:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", *args],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C in a terminal goes to the launcher only: it stops the workers in
                # order rather than all at once.
                start_new_session=True,
            )
        finally:
            log.close()
        member = FleetMember(
            name=name,
            role=role,
            pid=proc.pid,
            url=env["HYBRIDFLEET_NATS_URL"],
            log=str(log_path),
            site=site,
            worker=worker,
            metrics_port=metrics_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "",
        )
        child = _Child(member, proc)
        self._children.append(child)
        return child

    async def _wait_ready(self, child: _Child, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not await asyncio.to_thread(ready):
            code = child.proc.poll()
            if code is not None:
                raise HybridfleetError(
                    f"{child.member.name} exited with {code} while starting; "
                    f"log {child.member.log}:\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise HybridfleetError(
                    f"{child.member.name} did not start within {_READY_TIMEOUT_S:g} s; "
                    f"log {child.member.log}"
                )
            await asyncio.sleep(_POLL_S)

    async def _stop_role(self, role: str) -> None:
        children = [c for c in self._children if c.member.role == role]
        for child in children:
            if child.proc.poll() is None:
                child.proc.terminate()
        for child in children:
            try:
                code = await asyncio.to_thread(child.proc.wait, _DRAIN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                code = await asyncio.to_thread(child.proc.wait)
                self._say(f"{child.member.name} did not drain in {_DRAIN_TIMEOUT_S:g} s: killed")
            self._say(f"{child.member.name} stopped (exit {code})")

    # ------------------------------------------------------------------ files

    def _refuse_running_fleet(self) -> None:
        path = self.workdir / FLEET_FILE
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if previous.get("state") != "running":
            return
        alive = [m["name"] for m in previous.get("members", []) if _pid_alive(int(m["pid"]))]
        if alive:
            raise ConfigError(
                f"a fleet is already running in {self.workdir} ({', '.join(alive[:3])} ...); "
                "stop it first or use another --workdir"
            )

    def _write_files(self, state: str) -> None:
        members = self.members
        fleet: dict[str, Any] = {
            "schema": 1,
            "state": state,
            "started_at": self._started_at,
            "updated_at": time.time(),
            "workdir": str(self.workdir),
            "hub_domain": HUB_DOMAIN,
            "sites": site_names(self.options.sites),
            "members": [asdict(m) for m in members],
        }
        _write_atomic(self.workdir / FLEET_FILE, fleet)
        targets = [
            {
                "targets": [f"127.0.0.1:{m.metrics_port}"],
                "labels": {"job": m.role, "site": m.site, "worker": m.worker},
            }
            for m in members
            if m.metrics_port and state == "running"
        ]
        _write_atomic(self.workdir / PROMETHEUS_TARGETS_FILE, targets)

    def _say(self, line: str) -> None:
        if self._out is not None:
            print(f"[fleet] {line}", file=self._out, flush=True)


# ---------------------------------------------------------------------- helpers


def _server_member(server: NatsServer, role: str, site: str = "") -> FleetMember:
    return FleetMember(
        name=server.name,
        role=role,
        pid=server.pid or 0,
        url=server.url,
        log=str(server.workdir / f"{server.name}.log"),
        site=site,
        monitor_url=f"http://127.0.0.1:{server.monitor_port}" if server.monitor_port else "",
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _monitor(server: NatsServer, path: str) -> Any:
    url = f"http://127.0.0.1:{server.monitor_port}{path}"
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def _healthy(server: NatsServer) -> bool:
    """The server's own readiness check: JetStream is up and current with its cluster."""
    try:
        _monitor(server, "/healthz")
    except (OSError, ValueError):  # HTTPError 503 is an OSError
        return False
    return True


def _subscriptions(server: NatsServer, connection: str) -> list[str] | None:
    """The subjects a named client of ``server`` subscribes to (None: not connected)."""
    try:
        data = _monitor(server, "/connz?subs=1&limit=4096")
    except (OSError, ValueError):
        return None
    for conn in data.get("connections") or []:
        if conn.get("name") == connection:
            return list(conn.get("subscriptions_list") or [])
    return None


def _edge_ready(server: NatsServer, site: str, worker: str) -> bool:
    # It subscribes to its inputs last, once its streams are declared.
    subs = _subscriptions(server, f"hybridfleet-{worker}")
    return subs is not None and subjects.infer(site) in subs


def _cloud_ready(servers: Sequence[NatsServer], worker: str) -> bool:
    # Three subscriptions: the JetStream API inbox (its streams are declared) and the
    # pull subscriptions of both of its consumers.
    for server in servers:
        subs = _subscriptions(server, f"hybridfleet-{worker}")
        if subs is not None and len(subs) >= 3:
            return True
    return False


async def _wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise HybridfleetError(f"{what} not ready within {timeout:g} s")
        await asyncio.sleep(_POLL_S)


async def _wait_for_leaf(site_url: str, timeout: float = 30.0) -> None:
    """Wait until the hub's JetStream answers through the site's leaf link."""
    nc = await nats.connect(site_url, name="hybridfleet-fleet")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await nc.jetstream(domain=HUB_DOMAIN, timeout=1.0).account_info()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise HybridfleetError(
                        f"the hub's JetStream does not answer through {site_url}: {exc!r}"
                    ) from exc
                await asyncio.sleep(_POLL_S)
    finally:
        await nc.close()
