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

from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.errors import HybridfleetError

__all__ = [
    "POLL_S",
    "Child",
    "FleetMember",
    "connection_ids",
    "healthy",
    "popen_hybridfleet",
    "wait_until",
    "worker_ready",
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
