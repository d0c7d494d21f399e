"""The processes of ``fleet up``: one record per process, and how to tell it is ready.

``FleetMember`` is what ``fleet.json`` holds per process. ``Child`` is a running
``hybridfleet`` subprocess with what is needed to start it again (its arguments and
environment). Readiness is read from the servers' monitoring endpoints: a worker is
ready when a connection of its name, *new since a given set of connection ids*, has
subscribed to its inputs. That is how a replacement started beside the worker it
replaces (a rolling restart, same worker id) is told apart from the old one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.js.errors import NotFoundError

from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN
from schemas import subjects
from schemas.errors import ConfigError, HybridfleetError

__all__ = [
    "POLL_S",
    "Child",
    "FleetMember",
    "connection_ids",
    "healthy",
    "pid_alive",
    "popen_hybridfleet",
    "refuse_running_fleet",
    "wait_for_leaf",
    "wait_until",
    "worker_ready",
    "write_atomic",
]

POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class FleetMember:
    """One process of the fleet, as written to ``fleet.json``.

    ``role`` is ``hub``, ``site``, ``edge``, ``cloud`` or ``camera``. ``url`` is a
    server's client URL, or the URL a worker connects to (never with credentials).
    ``monitor_url`` is a server's HTTP monitoring endpoint; ``metrics_url`` a worker's
    Prometheus endpoint. ``restarts`` counts the times ``fleet up`` started it again
    after a crash.
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
    restarts: int = 0


@dataclass
class Child:
    """A ``hybridfleet`` subprocess, what the launcher knows of it, and how to start it."""

    member: FleetMember
    proc: subprocess.Popen[bytes]
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # A camera that finishes its run is done, not failed.
    may_finish: bool = False
    finished: bool = False
    # Set while a crashed process waits for its restart (time.monotonic()).
    restart_at: float | None = None

    def tail(self, chars: int = 2000) -> str:
        try:
            return Path(self.member.log).read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def popen_hybridfleet(args: Sequence[str], env: dict[str, str], log_path: Path) -> Any:
    """Start ``python -m pipeline.cli.main ARGS`` with ``env`` added, output appended to a log."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            # Ctrl-C in a terminal goes to the launcher only: it stops the workers in
            # order rather than all at once.
            start_new_session=True,
        )
    finally:
        log.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def refuse_running_fleet(fleet_file: Path) -> None:
    """Raise ``ConfigError`` if ``fleet.json`` says a fleet runs there and one of its
    processes is alive."""
    try:
        previous = json.loads(fleet_file.read_text())
    except (OSError, ValueError):
        return
    if previous.get("state") != "running":
        return
    alive = [m["name"] for m in previous.get("members", []) if pid_alive(int(m["pid"]))]
    if alive:
        raise ConfigError(
            f"a fleet is already running in {fleet_file.parent} ({', '.join(alive[:3])} ...); "
            "stop it first or use another --workdir"
        )


def write_atomic(path: Path, data: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _monitor(server: NatsServer, path: str) -> Any:
    url = f"http://127.0.0.1:{server.monitor_port}{path}"
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def healthy(server: NatsServer) -> bool:
    """The server's own readiness check: JetStream is up and current with its cluster."""
    try:
        _monitor(server, "/healthz")
    except (OSError, ValueError):  # HTTPError 503 is an OSError
        return False
    return True


def _connections(server: NatsServer, name: str) -> list[dict[str, Any]] | None:
    """The client connections of ``server`` named ``name`` (None: no answer)."""
    try:
        data = _monitor(server, "/connz?subs=1&limit=4096")
    except (OSError, ValueError):
        return None
    return [c for c in data.get("connections") or [] if c.get("name") == name]


def connection_ids(servers: Sequence[NatsServer], worker: str) -> set[int]:
    """The connection ids of ``worker`` (``hybridfleet-<worker>``) on ``servers`` now."""
    ids: set[int] = set()
    for server in servers:
        for conn in _connections(server, f"hybridfleet-{worker}") or []:
            ids.add(int(conn.get("cid", -1)))
    return ids


def worker_ready(
    role: str, servers: Sequence[NatsServer], site: str, worker: str, old: Collection[int] = ()
) -> bool:
    """Whether a connection of ``worker`` not in ``old`` has subscribed to its inputs.

    An edge worker subscribes to ``infer.<site>`` last, once its streams are declared.
    A cloud worker has three subscriptions when ready: the JetStream API inbox (its
    streams are declared) and the pull subscriptions of both of its consumers.
    """
    for server in servers:
        for conn in _connections(server, f"hybridfleet-{worker}") or []:
            if int(conn.get("cid", -1)) in old:
                continue
            subs = list(conn.get("subscriptions_list") or [])
            if role == "edge" and subjects.infer(site) in subs:
                return True
            if role == "cloud" and len(subs) >= 3:
                return True
    return False


async def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise HybridfleetError(f"{what} not ready within {timeout:g} s")
        await asyncio.sleep(POLL_S)


async def wait_for_leaf(site_url: str, timeout: float = 30.0) -> None:
    """Wait until the hub's JetStream answers through the site's leaf link.

    ``site_url`` carries the credentials of a user who may ask (the site's operator).
    The question is one a secure leaf link lets through (the edge asks it too): the
    ``REPLIES`` stream's info. "No such stream" (before a cloud worker made it) is an
    answer from the hub as well.
    """
    nc = await nats.connect(site_url, name="hybridfleet-fleet", max_reconnect_attempts=0)
    try:
        deadline = time.monotonic() + timeout
        js = nc.jetstream(domain=HUB_DOMAIN, timeout=1.0)
        while True:
            try:
                await js.stream_info(subjects.REPLIES_STREAM)
                return
            except NotFoundError:
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise HybridfleetError(
                        f"the hub's JetStream does not answer through the site server: {exc!r}"
                    ) from exc
                await asyncio.sleep(POLL_S)
    finally:
        await nc.close()
