"""``hybridfleet fleet up``: the command-line glue around ``pipeline.fleet.FleetLauncher``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from pipeline.fleet import DEFAULT_CONFIG_DIR, DEFAULT_WORKDIR, FleetLauncher, FleetOptions

__all__ = ["add_fleet_up_command"]


def add_fleet_up_command(fleet_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``up`` to the subcommands of ``hybridfleet fleet``; it sets ``run`` on args."""
    p = fleet_subparsers.add_parser(
        "up",
        help="run a hub, N sites and their workers as local processes until Ctrl-C",
        description=(
            "Start a 1- or 3-node hub, one leaf nats-server per site (its own JetStream "
            "domain), K edge workers per site, M cloud workers and a camera simulator per "
            "site, all on loopback. Stops everything on Ctrl-C, SIGTERM or after --seconds; "
            "exits 1 if a process dies."
        ),
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
        help=f"logs, JetStream data and fleet.json (default: ./{DEFAULT_WORKDIR})",
    )
    p.add_argument(
        "--config-dir",
        type=Path,
        default=DEFAULT_CONFIG_DIR,
        help="folder with edge.toml and cloud.toml (default: the repository's deploy/fleet)",
    )
    p.set_defaults(run=_fleet_up)


def _fleet_up(args: argparse.Namespace) -> int:
    camera_seconds = args.camera_seconds or args.seconds or 600.0
    options = FleetOptions(
        sites=args.sites,
        edge_workers=args.edge_workers,
        cloud_workers=args.cloud_workers,
        hub_nodes=args.hub_nodes,
        cameras=args.cameras,
        rate_hz=args.rate,
        camera_seconds=camera_seconds,
        workdir=args.workdir,
        config_dir=args.config_dir,
    )
    return asyncio.run(_up(options, args.seconds))


async def _up(options: FleetOptions, seconds: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FleetLauncher(options) as fleet:
        code = await fleet.run(seconds, stop)
        print("[fleet] stopping", file=sys.stderr, flush=True)
    return code
