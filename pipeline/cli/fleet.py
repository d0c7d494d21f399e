"""``hybridfleet fleet up``, ``fleet restart`` and ``fleet status``: command-line glue
around ``pipeline.fleet.launcher.FleetLauncher`` and ``pipeline.fleet.status``.

``fleet up`` runs until Ctrl-C or SIGTERM; SIGHUP makes it do a rolling restart of
every worker. ``fleet restart`` sends that SIGHUP to the launcher named in
``fleet.json`` and, with ``--wait``, waits until the restart is done. ``fleet status``
prints every worker's latest heartbeat: 0 once it has read them, whatever the fleet's
health.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.cli.options import options_from
from pipeline.cli.target import add_target_arguments, target_url
from pipeline.config import load_settings
from pipeline.fleet.heartbeat import DEFAULT_INTERVAL_S
from pipeline.fleet.launcher import FleetLauncher
from pipeline.fleet.spec import DEFAULT_CONFIG_DIR, DEFAULT_WORKDIR, FLEET_FILE, FleetOptions
from pipeline.fleet.status import (
    STALE_INTERVALS,
    listen_fleet,
    merge_fleets,
    read_fleet,
    render_json,
    render_table,
)
from pipeline.fleet.supervisor import RestartPolicy
from pipeline.messaging.natsio import connect
from schemas.errors import ConfigError, HybridfleetError

__all__ = ["add_fleet_restart_command", "add_fleet_status_command", "add_fleet_up_command"]


def add_fleet_up_command(fleet_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``up`` to the subcommands of ``hybridfleet fleet``; it sets ``run`` on args."""
    p = fleet_subparsers.add_parser(
        "up",
        help="run a hub, N sites and their workers as local processes until Ctrl-C",
        description=_fleet_up.__doc__,
    )
    p.add_argument("--sites", type=int, default=2, help="number of sites (site1..siteN)")
    p.add_argument("--edge-workers", type=int, default=1, help="edge workers per site")
    p.add_argument("--cloud-workers", type=int, default=1)
    p.add_argument("--hub-nodes", type=int, choices=(1, 3), default=3)
    p.add_argument("--cameras", type=int, default=2, help="simulated cameras per site")
    p.add_argument("--rate", type=float, default=10.0, help="frames/s per camera")
    p.add_argument("--seconds", type=float, help="stop after this long (default: at Ctrl-C)")
    p.add_argument(
        "--camera-seconds",
        type=float,
        help="how long the simulators publish (default: --seconds, else 600)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"logs, JetStream data, fleet.json, credentials.json (default: ./{DEFAULT_WORKDIR})",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="folder with edge.toml and cloud.toml (default: the repository's deploy/fleet)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="no users and no permissions: any client may publish anything (tests, demos)",
    )
    default = RestartPolicy()
    p.add_argument(
        "--max-restarts",
        type=int,
        default=default.max_restarts,
        help=f"restarts of one worker within --restart-window-s before the fleet stops "
        f"(default: {default.max_restarts}; 0: never restart)",
    )
    p.add_argument(
        "--restart-window-s",
        type=float,
        default=default.window_s,
        help=f"(default: {default.window_s:g})",
    )
    p.set_defaults(run=_fleet_up)


def add_fleet_restart_command(fleet_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``restart`` to the subcommands of ``hybridfleet fleet``."""
    p = fleet_subparsers.add_parser(
        "restart",
        help="rolling restart of a running fleet's workers (SIGHUP to `fleet up`)",
        description=_fleet_restart.__doc__,
    )
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--wait", action="store_true", help="return when the restart is done")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds --wait waits")
    p.set_defaults(run=_fleet_restart)


def _fleet_up(args: argparse.Namespace) -> int:
    """Start a 1- or 3-node hub, one leaf nats-server per site (its own JetStream
    domain), K edge workers per site, M cloud workers and a camera simulator per
    site, all on loopback, with per-site users and permissions (unless
    --insecure). A worker that exits is restarted with a backoff; the fleet
    stops (exit 1) when one keeps failing. SIGHUP: a rolling restart of every
    worker. Stops everything on Ctrl-C, SIGTERM or after --seconds.
    """
    options = options_from(
        FleetOptions,
        args,
        rate_hz=args.rate,
        camera_seconds=args.camera_seconds or args.seconds or 600.0,
        secure=not args.insecure,
        restart=RestartPolicy(max_restarts=args.max_restarts, window_s=args.restart_window_s),
    )
    return asyncio.run(_up(options, args.seconds))


async def _up(options: FleetOptions, seconds: float | None) -> int:
    stop = asyncio.Event()
    roll = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, roll.set)
    async with FleetLauncher(options) as fleet:
        code = await fleet.run(seconds, stop, roll)
        print("[fleet] stopping", file=sys.stderr, flush=True)
    return code


def _read_fleet(workdir: Path) -> dict[str, Any]:
    path = workdir / FLEET_FILE
    try:
        fleet: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); is a fleet running there?") from exc
    return fleet


def _finished(fleet: dict[str, Any]) -> int:
    rolls = fleet.get("rolling_restarts", {})
    return int(rolls.get("done", 0)) + int(rolls.get("failed", 0))


def _fleet_restart(args: argparse.Namespace) -> int:
    """Ask the `fleet up` of --workdir for a rolling restart: every cloud worker,
    then every edge worker, one at a time, each replaced by a new process that
    subscribes before the old one drains. No frame is left without a worker.
    """
    fleet = _read_fleet(args.workdir)
    pid = int(fleet.get("launcher_pid", 0))
    if fleet.get("state") != "running" or pid <= 0:
        raise ConfigError(f"the fleet in {args.workdir} is not running (fleet.json: {FLEET_FILE})")
    before = _finished(fleet)
    failed_before = int(fleet.get("rolling_restarts", {}).get("failed", 0))
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ConfigError(
            f"the launcher of {args.workdir} (pid {pid}) is gone; start the fleet again"
        ) from None
    print(f"asked fleet up (pid {pid}) for a rolling restart; its output reports progress")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        fleet = _read_fleet(args.workdir)
        if _finished(fleet) > before:
            ok = int(fleet["rolling_restarts"].get("failed", 0)) == failed_before
            print("rolling restart done" if ok else "rolling restart failed: see its output")
            return 0 if ok else 1
    raise HybridfleetError(f"the rolling restart did not finish within {args.timeout:g} s")


def add_fleet_status_command(
    fleet_subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``status`` to the ``fleet`` command's subparsers; return its parser.

    ``args.run(args)`` runs it and returns the exit code, like every other command of
    ``pipeline.cli.main``.
    """
    p = fleet_subparsers.add_parser("status", help="every worker's latest heartbeat")
    add_target_arguments(
        p,
        url_help="NATS URL (overrides the config)",
        fleet_help="a `fleet up` working directory: ask its hub, with its credentials",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--interval-s",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"the workers' heartbeat interval: stale after {STALE_INTERVALS} (default: "
        f"{DEFAULT_INTERVAL_S})",
    )
    p.add_argument("--domain", help="JetStream domain that holds the bucket (default: none)")
    p.set_defaults(run=lambda a: asyncio.run(_status(a)))
    return p


async def _status(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    settings = replace(settings, nats=replace(settings.nats, url=target_url(args, None)))
    try:
        # connect() retries forever, which suits a worker, not a command a person waits on.
        nc = await asyncio.wait_for(
            connect(settings.nats, "hybridfleet-status"), settings.nats.connect_timeout_s
        )
    except TimeoutError:
        raise HybridfleetError(
            f"cannot reach NATS at {settings.nats.url.split('@')[-1]} within "
            f"{settings.nats.connect_timeout_s} s"
        ) from None
    try:
        # Live heartbeats reach here from every site across the leaf links; the bucket
        # adds workers of this domain that are silent now (shown as stale).
        live = await listen_fleet(nc, seconds=args.interval_s * 1.5)
        stored = await read_fleet(nc.jetstream(domain=args.domain or None))
    finally:
        await nc.close()
    fleet = merge_fleets(stored, live)
    for reason in fleet.skipped:
        print(f"skipped {reason}", file=sys.stderr)
    render = render_json if args.json else render_table
    print(
        render(
            fleet.heartbeats, time.time(), interval_s=args.interval_s, skipped=len(fleet.skipped)
        )
    )
    return 0
