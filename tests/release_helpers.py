"""What the release tests share: signed bundles of shipped models, the ``models``
commands, the fleet events a test listens to, rollout plans and worker heartbeats."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.cli.models import add_model_commands
from pipeline.inference.model import OnnxModel
from pipeline.release.bundle import make_bundle
from pipeline.release.plan import RolloutPlan
from schemas import subjects


def edge_bundle(
    out: Path,
    model: OnnxModel,
    private_key: str,
    version: str,
    *,
    threshold: float = 0.9,
    heldout: Mapping[str, float] | None = None,
    commit: str = "unknown",
) -> Path:
    """A bundle of ``model`` for the edge tier, signed with ``private_key``; its folder."""
    return make_bundle(
        out,
        "edge",
        model.path,
        model.declaration,
        version=version,
        default_threshold=threshold,
        heldout={"accuracy": model.declaration.heldout_accuracy or 0.0}
        if heldout is None
        else heldout,
        trained_by="models/build.py",
        commit=commit,
        signing_key=private_key,
    )


def models_cli(argv: list[str]) -> int:
    """Run ``hybridfleet models ARGV``; its exit code."""
    parser = argparse.ArgumentParser()
    add_model_commands(parser.add_subparsers(dest="models_command", required=True))
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


async def collect_events(nc: Client) -> list[dict[str, Any]]:
    """A list that fills with every event published on ``fleet.events`` from now on."""
    events: list[dict[str, Any]] = []

    async def on_event(msg: Msg) -> None:
        events.append(orjson.loads(msg.data))

    await nc.subscribe(subjects.FLEET_EVENTS, cb=on_event)
    return events


def rollout_plan(**changes: Any) -> RolloutPlan:
    """A plan of edge 1.1.0 (from 1.0.0) at site1 with a 10% canary, but for ``changes``."""
    values: dict[str, Any] = {
        "tier": "edge",
        "site": "site1",
        "version": "1.1.0",
        "canary_share": 0.1,
        "previous_version": "1.0.0",
        "started_at": 1.0,
    }
    values.update(changes)
    return RolloutPlan.with_canary(**values)


def heartbeat(
    worker: str,
    version: str,
    *,
    since: float,
    at: float,
    frames: int,
    compared: int,
    agreed: int,
    **changes: Any,
) -> dict[str, Any]:
    """An edge worker's contract heartbeat at site1 (a twentieth of its frames escalated),
    with ``changes`` applied last."""
    escalated = frames // 20
    beat: dict[str, Any] = {
        "schema": 1,
        "site": "site1",
        "worker": worker,
        "tier": "edge",
        "model": "digits-mlp32",
        "model_version": version,
        "at": at,
        "started_at": 0.0,
        "model_since": since,
        "frames": frames,
        "local": frames - escalated,
        "escalated": escalated,
        "shed": 0,
        "dead_letters": 0,
        "errors": 0,
        "compared": compared,
        "agreed": agreed,
        "latency_p95_ms": 12.0,
        "queue_depth": 0,
        "pending": 0,
        "link_up": True,
        "temperature_c": 40.0,
        "temperature_source": "simulated",
        "health": "healthy",
        "backlog": 0,
    }
    beat.update(changes)
    return beat
