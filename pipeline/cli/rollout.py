"""``hybridfleet rollout start | status | run``: canary rollouts from the command line.

``start`` writes the rollout and the canaries' overrides and returns; ``run`` is the
controller that judges it (keep one running); ``status`` reads what is stored. See
docs/rollout.md.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import orjson
import uvloop
from nats.aio.client import Client
from nats.js import JetStreamContext

from pipeline.config import Settings, load_settings
from pipeline.messaging.natsio import connect
from pipeline.release.plan import CLOUD_SITE, RolloutState
from pipeline.release.rollout import RolloutController
from schemas.errors import ConfigError

__all__ = ["add_rollout_commands", "format_state", "parse_share", "parse_target"]


def parse_target(text: str) -> tuple[str, str]:
    """``edge@1.1.0`` -> ("edge", "1.1.0")."""
    tier, at, version = text.partition("@")
    if not at or not tier or not version:
        raise ConfigError(f"target must be <tier>@<version>, e.g. edge@1.1.0, got {text!r}")
    return tier, version


def parse_share(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--canary must be a share like 10% or 0.1, got {text!r}") from None
    return share


def format_state(state: RolloutState, now: float) -> str:
    """A rollout for people: one headline, its history, the judge's latest word."""
    plan = state.plan
    origin = f" (from {plan.previous_version})" if plan.previous_version else ""
    steps = " -> ".join(f"{s:.0%}" for s in plan.steps)
    lines = [
        f"{plan.key}  {plan.tier}@{plan.version}{origin}  {state.phase.value}  "
        f"step {state.step + 1} of {len(plan.steps)} ({steps})  "
        f"canaries {', '.join(state.canary_workers)}"
    ]
    for entry in state.history:
        ago = now - entry.at
        reason = f"  {entry.reason}" if entry.reason else ""
        lines.append(
            f"  {ago:7.0f} s ago  {entry.kind:<11} {entry.share:>4.0%}  "
            f"{', '.join(entry.canary_workers)}{reason}"
        )
    if state.running and state.reason:
        lines.append(f"  judge: {state.reason}")
    return "\n".join(lines)


def _state_json(state: RolloutState) -> dict[str, Any]:
    out = state.as_dict()
    # The seed is the stored heartbeats; people want to know only how many there are.
    out["plan"]["baseline_seed"] = len(state.plan.baseline_seed)
    return out


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.url:
        settings = replace(settings, nats=replace(settings.nats, url=args.url))
    return settings


async def _with_controller(
    args: argparse.Namespace, body: Callable[[RolloutController], Awaitable[int]]
) -> int:
    settings = _settings(args)
    nc: Client = await connect(settings.nats, "hybridfleet-rollout")
    try:
        js: JetStreamContext = nc.jetstream(domain=args.domain or None)
        return await body(RolloutController(nc, js))
    finally:
        await nc.drain()


async def _start(args: argparse.Namespace) -> int:
    tier, version = parse_target(args.target)
    share = parse_share(args.canary)
    settings = _settings(args)
    site = args.site or (CLOUD_SITE if tier == "cloud" else settings.edge.site)

    async def body(controller: RolloutController) -> int:
        state = await controller.start(tier, version, share, site)
        if args.json:
            print(orjson.dumps(_state_json(state), option=orjson.OPT_INDENT_2).decode())
        else:
            print(format_state(state, time.time()))
            print("the controller (hybridfleet rollout run) judges and carries it out")
        return 0

    return await _with_controller(args, body)


async def _status(args: argparse.Namespace) -> int:
    async def body(controller: RolloutController) -> int:
        states = await controller.status(args.tier, args.site)
        if args.json:
            print(
                orjson.dumps([_state_json(s) for s in states], option=orjson.OPT_INDENT_2).decode()
            )
        elif not states:
            print("no rollouts")
        else:
            now = time.time()
            print("\n\n".join(format_state(s, now) for s in states))
        return 0

    return await _with_controller(args, body)


async def _serve(args: argparse.Namespace) -> int:
    async def body(controller: RolloutController) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(controller.run(), name="rollout controller")
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            await controller.stop()
        await runner  # re-raises what stopped the controller
        return 0

    return await _with_controller(args, body)


def _runner(
    make: Callable[[argparse.Namespace], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return uvloop.run(make(args))

    return run


def add_rollout_commands(subparsers: Any) -> None:
    """Add ``rollout start | status | run`` to the ``hybridfleet`` parser's subparsers.

    Each command sets ``run``: a function of the parsed arguments returning the exit
    code, as ``pipeline.cli.main.main`` expects.
    """
    rollout = subparsers.add_parser("rollout", help="canary rollouts of model versions")
    sub = rollout.add_subparsers(dest="rollout_command", required=True)

    def connection(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML settings file (HYBRIDFLEET_* env vars override)")
        p.add_argument("--url", help="NATS URL (overrides the config)")
        p.add_argument("--domain", help="JetStream domain of the KV buckets (default: none)")

    p = sub.add_parser("start", help="start a canary rollout, e.g. edge@1.1.0 --canary 10%%")
    p.add_argument("target", help="<tier>@<version>, tier edge, cloud or device")
    p.add_argument("--canary", default="10%", help="first step's share: 10%% or 0.1")
    p.add_argument(
        "--site", help=f"site (default: edge.site of the settings; {CLOUD_SITE} for cloud)"
    )
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    connection(p)
    p.set_defaults(run=_runner(_start))

    p = sub.add_parser("status", help="stored rollouts, running or ended")
    p.add_argument("--tier", choices=("edge", "cloud", "device"))
    p.add_argument("--site")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    connection(p)
    p.set_defaults(run=_runner(_status))

    p = sub.add_parser("run", help="judge and carry out rollouts until Ctrl-C or SIGTERM")
    connection(p)
    p.set_defaults(run=_runner(_serve))
