"""What a running ``fleet up`` writes down: ``fleet.json`` and ``prometheus-targets.json``.

``fleet.json`` lists every process (pid, URLs, metrics endpoint) for ``hybridfleet
fleet status``, ``fleet restart`` and the commands that take ``--fleet DIR``;
``prometheus-targets.json`` lists the metrics endpoints in Prometheus's file-based
discovery format. The documents are built by pure functions and written atomically.
``refuse_running_fleet`` reads ``fleet.json`` back to keep two fleets out of one
directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.fleet.procs import FleetMember
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN
from schemas.errors import ConfigError

__all__ = [
    "fleet_document",
    "pid_alive",
    "prometheus_targets",
    "refuse_running_fleet",
    "server_member",
    "write_atomic",
]


def server_member(server: NatsServer, role: str, site: str = "") -> FleetMember:
    """The ``fleet.json`` entry of a nats-server (``role`` ``hub`` or ``site``)."""
    return FleetMember(
        name=server.name,
        role=role,
        pid=server.pid or 0,
        url=server.url,
        log=str(server.workdir / f"{server.name}.log"),
        site=site,
        monitor_url=f"http://127.0.0.1:{server.monitor_port}" if server.monitor_port else "",
    )


def fleet_document(
    state: str,
    *,
    workdir: Path,
    secure: bool,
    started_at: float,
    updated_at: float,
    sites: Sequence[str],
    rolls: Mapping[str, int],
    members: Sequence[FleetMember],
) -> dict[str, Any]:
    """``fleet.json``: the fleet's state (``running`` or ``stopped``) and its processes."""
    return {
        "schema": 1,
        "state": state,
        "launcher_pid": os.getpid(),
        "secure": secure,
        "started_at": started_at,
        "updated_at": updated_at,
        "workdir": str(workdir),
        "hub_domain": HUB_DOMAIN,
        "sites": list(sites),
        "rolling_restarts": dict(rolls),
        "members": [asdict(m) for m in members],
    }


def prometheus_targets(state: str, members: Sequence[FleetMember]) -> list[dict[str, Any]]:
    """Every metrics endpoint while the fleet runs; none once it stopped."""
    return [
        {
            "targets": [f"127.0.0.1:{m.metrics_port}"],
            "labels": {"job": m.role, "site": m.site, "worker": m.worker},
        }
        for m in members
        if m.metrics_port and state == "running"
    ]


def write_atomic(path: Path, data: object) -> None:
    """``data`` as indented JSON, replacing ``path`` in one step."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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
