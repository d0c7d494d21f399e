"""The fleet at a glance: every worker's latest heartbeat, read from the ``HF_FLEET`` bucket.

``read_fleet`` reads the bucket once (a KV watch of each key's latest value, one round
trip however many workers there are) and skips entries that are not valid heartbeats,
saying which and why; ``listen_fleet`` hears the live heartbeats instead, from every
site. ``render_table`` and ``render_json`` are pure, given the time.
``hybridfleet fleet status`` (``pipeline.cli.fleet``) shows them.

A heartbeat does not carry its worker's interval, so staleness is judged against the
one given here (default: the default interval): a worker is *stale* when its latest
heartbeat is more than three intervals old.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE

from pipeline.fleet.heartbeat import DEFAULT_INTERVAL_S
from schemas.errors import SchemaError
from schemas.heartbeat import FLEET_BUCKET, Heartbeat, fleet_key

__all__ = [
    "STALE_INTERVALS",
    "Fleet",
    "is_stale",
    "listen_fleet",
    "merge_fleets",
    "read_fleet",
    "render_json",
    "render_table",
]

# Missing three beats in a row is not a hiccup.
STALE_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Fleet:
    """What ``read_fleet`` found: valid heartbeats by (site, worker), and what it skipped."""

    heartbeats: tuple[Heartbeat, ...]
    skipped: tuple[str, ...]  # one "<key>: <reason>" per malformed entry


def _fleet(beats: Iterable[Heartbeat], skipped: Iterable[str]) -> Fleet:
    return Fleet(tuple(sorted(beats, key=lambda b: (b.site, b.worker))), tuple(skipped))


async def listen_fleet(nc: Client, *, seconds: float) -> Fleet:
    """The heartbeats published on ``fleet.heartbeat.>`` during ``seconds``.

    Subject messages cross leaf links wherever there is interest, so this sees every
    site's workers from the hub, unlike a bucket, which lives in one domain.
    """
    beats: dict[tuple[str, str], Heartbeat] = {}
    skipped: list[str] = []

    async def on_beat(msg: Msg) -> None:
        try:
            beat = Heartbeat.from_json(msg.data)
        except SchemaError as exc:
            skipped.append(f"{msg.subject}: {exc}")
            return
        beats[(beat.site, beat.worker)] = beat

    sub = await nc.subscribe("fleet.heartbeat.>", cb=on_beat)
    try:
        await asyncio.sleep(seconds)
    finally:
        await sub.unsubscribe()
    return _fleet(beats.values(), skipped)


def merge_fleets(*fleets: Fleet) -> Fleet:
    """One heartbeat per worker, the latest of all the fleets given."""
    latest: dict[tuple[str, str], Heartbeat] = {}
    for fleet in fleets:
        for beat in fleet.heartbeats:
            key = (beat.site, beat.worker)
            if key not in latest or beat.at > latest[key].at:
                latest[key] = beat
    return _fleet(latest.values(), (reason for fleet in fleets for reason in fleet.skipped))


async def read_fleet(js: JetStreamContext, *, timeout_s: float = 5.0) -> Fleet:
    """The latest heartbeat of every worker in ``HF_FLEET`` (empty if there is no bucket).

    An entry is skipped when it is not a valid heartbeat or when its key is not
    ``worker.<site>.<worker>`` of the heartbeat's own site and worker.
    """
    try:
        kv = await js.key_value(FLEET_BUCKET)
    except BucketNotFoundError:
        return Fleet((), ())
    beats: list[Heartbeat] = []
    skipped: list[str] = []
    watcher = await kv.watchall()
    try:
        # The watcher delivers each key's latest value, then None: "that was all".
        # (nats-py leaves the watcher's methods untyped.)
        updates = watcher.updates
        while (entry := await updates(timeout=timeout_s)) is not None:  # type: ignore[no-untyped-call]
            if entry.operation in (KV_DEL, KV_PURGE):
                continue
            try:
                beat = Heartbeat.from_json(entry.value or b"")
                if entry.key != fleet_key(beat.site, beat.worker):
                    raise SchemaError(f"heartbeat of {beat.site}/{beat.worker} under this key")
            except SchemaError as exc:
                skipped.append(f"{entry.key}: {exc}")
                continue
            beats.append(beat)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return _fleet(beats, skipped)


def is_stale(beat: Heartbeat, now: float, interval_s: float = DEFAULT_INTERVAL_S) -> bool:
    """True when the heartbeat is more than ``STALE_INTERVALS`` intervals old."""
    return now - beat.at > STALE_INTERVALS * interval_s


_COLUMNS = (
    "site",
    "worker",
    "tier",
    "model@version",
    "health",
    "link",
    "queue",
    "backlog",
    "temp",
    "age",
)


def _row(beat: Heartbeat, now: float, interval_s: float) -> tuple[str, ...]:
    temp = f"{beat.temperature_c:.1f}C"
    if beat.temperature_source == "simulated":
        temp += " (sim)"
    return (
        beat.site,
        beat.worker,
        beat.tier.value,
        f"{beat.model}@{beat.model_version}",
        "STALE" if is_stale(beat, now, interval_s) else beat.health.value,
        "up" if beat.link_up else "down",
        str(beat.queue_depth),
        "?" if beat.backlog < 0 else str(beat.backlog),
        temp,
        f"{max(0.0, now - beat.at):.1f}s",
    )


def render_table(
    heartbeats: Sequence[Heartbeat],
    now: float,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    skipped: int = 0,
) -> str:
    """One line per worker under a header, columns aligned; a note of what was skipped."""
    rows = [_COLUMNS, *(_row(b, now, interval_s) for b in heartbeats)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    if not heartbeats:
        lines.append(f"(no worker has reported in {FLEET_BUCKET})")
    if skipped:
        lines.append(f"({skipped} malformed {'entry' if skipped == 1 else 'entries'} skipped)")
    return "\n".join(lines)


def render_json(
    heartbeats: Sequence[Heartbeat],
    now: float,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    skipped: int = 0,
) -> str:
    """``{"at", "interval_s", "skipped", "workers": [heartbeat + age_s + stale]}``."""
    workers: list[dict[str, Any]] = []
    for beat in heartbeats:
        worker = orjson.loads(beat.to_json())
        worker["age_s"] = now - beat.at
        worker["stale"] = is_stale(beat, now, interval_s)
        workers.append(worker)
    document = {"at": now, "interval_s": interval_s, "skipped": skipped, "workers": workers}
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
