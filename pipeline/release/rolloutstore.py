"""What the rollout controller reads and writes in JetStream KV.

* ``HF_ROLLOUT``, key ``<tier>.<site>``: each rollout's state (``RolloutState`` JSON);
  the controller reads and writes it with revisions (pipeline/release/rollout.py).
* ``HF_DESIRED``: the site's version and the canaries' per-worker overrides
  (pipeline/release/buckets.py names the keys).
* ``HF_FLEET``, key ``worker.<site>.<worker>``: each worker's latest heartbeat; read,
  never written (the workers own it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Final

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from pipeline.release.buckets import (
    DESIRED_BUCKET,
    ROLLOUT_BUCKET,
    open_bucket,
    override_key,
    site_key,
)
from pipeline.release.plan import RolloutPlan
from schemas import subjects

__all__ = ["FLEET_BUCKET", "RolloutStore", "read_entry"]

# The controller's logger: what it logs keeps its name wherever the code sits.
log = logging.getLogger("pipeline.release.rollout")

FLEET_BUCKET: Final = subjects.FLEET_BUCKET
# How long to wait for HF_FLEET to deliver what it holds.
_FLEET_READ_S: Final = 5.0


class RolloutStore:
    """The rollout controller's buckets; ``HF_ROLLOUT`` and ``HF_DESIRED`` are created
    when missing, ``HF_FLEET`` never."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def rollouts(self) -> KeyValue:
        """``HF_ROLLOUT``."""
        return await open_bucket(self._js, ROLLOUT_BUCKET)

    async def desired(self) -> KeyValue:
        """``HF_DESIRED``."""
        return await open_bucket(self._js, DESIRED_BUCKET)

    async def site_version(self, tier: str, site: str) -> str | None:
        """The version ``HF_DESIRED`` holds for the site, None if none is set."""
        found = await read_entry(await self.desired(), site_key(tier, site))
        return found[0].decode() if found else None

    async def set_site_version(self, plan: RolloutPlan) -> None:
        """Make the plan's version the site's."""
        desired = await self.desired()
        await desired.put(site_key(plan.tier, plan.site), plan.version.encode())

    async def assign(self, plan: RolloutPlan, workers: Iterable[str]) -> None:
        """Give each of ``workers`` an override to the plan's version."""
        desired = await self.desired()
        for worker in workers:
            await desired.put(override_key(plan.tier, plan.site, worker), plan.version.encode())

    async def unassign(self, plan: RolloutPlan, workers: Iterable[str]) -> None:
        """Delete the overrides of ``workers``: they go back to the site's version."""
        desired = await self.desired()
        for worker in workers:
            await desired.delete(override_key(plan.tier, plan.site, worker))

    async def fleet(self, site: str) -> list[dict[str, Any]]:
        """The heartbeats ``HF_FLEET`` holds for ``site`` (none if the bucket is missing)."""
        try:
            fleet = await self._js.key_value(FLEET_BUCKET)
        except BucketNotFoundError:
            return []
        watcher = await fleet.watch(f"worker.{site}.*", ignore_deletes=True)
        beats = []
        try:
            while True:
                entry = await watcher.updates(timeout=_FLEET_READ_S)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                try:
                    beat = orjson.loads(entry.value or b"")
                except orjson.JSONDecodeError:
                    log.warning("ignoring %s in %s: not JSON", entry.key, FLEET_BUCKET)
                    continue
                if isinstance(beat, dict) and isinstance(beat.get("worker"), str):
                    beats.append(beat)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py
        return beats


async def read_entry(kv: KeyValue, key: str) -> tuple[bytes, int] | None:
    """A key's value and revision, None if it is missing or deleted."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value or b"", entry.revision or 0
