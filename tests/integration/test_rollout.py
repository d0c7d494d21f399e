"""RolloutController on a real nats-server, with fake workers made of test code.

A ``FakeWorker`` does what the contract asks of a worker and nothing else: it runs
the version ``HF_DESIRED`` gives it (its override, else the site key), resets its
counters when that changes, and publishes a contract heartbeat on
``fleet.heartbeat.<site>.<worker>`` and in ``HF_FLEET``. How often each version
agrees with the cloud is set per test, deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

import orjson
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from pipeline.release.buckets import DESIRED_BUCKET, override_key, site_key
from pipeline.release.judge import CanaryConfig
from pipeline.release.plan import RolloutPhase
from pipeline.release.rollout import RolloutConfig, RolloutController, heartbeat_subject
from pipeline.release.rolloutstore import FLEET_BUCKET
from schemas.errors import ConfigError, HybridfleetError
from tests.helpers import wait_until
from tests.release_helpers import collect_events, heartbeat

pytestmark = pytest.mark.integration

SITE = "site1"
OLD, NEW = "1.0.0", "1.1.0"
# Small samples so a test takes seconds; the statistics are those of the defaults.
CONFIG = RolloutConfig(
    canary=CanaryConfig(min_compared=40, min_baseline_compared=20, min_baseline_frames=100),
    tick_s=0.05,
    switch_timeout_s=30.0,
    worker_ttl_s=30.0,
)


class FakeWorker:
    """A worker's heartbeat and desired-state behaviour, without a model."""

    def __init__(
        self, nc: Client, js: JetStreamContext, name: str, agreement: dict[str, float]
    ) -> None:
        self.nc, self.js, self.name, self.agreement = nc, js, name, agreement
        self.follows_desired = True
        self.version = OLD
        self.versions_run = [OLD]
        self.beats = 0
        self._since = time.time()
        self._frames = self._compared = 0

    async def run(self, stop: asyncio.Event) -> None:
        desired = await self.js.key_value(DESIRED_BUCKET)
        fleet = await self.js.key_value(FLEET_BUCKET)
        while not stop.is_set():
            version = await self._desired(desired) if self.follows_desired else self.version
            if version != self.version:
                self.version, self._since = version, time.time()
                self.versions_run.append(version)
                self._frames = self._compared = 0
            self._frames += 50
            self._compared += 10
            data = orjson.dumps(self._heartbeat())
            await self.nc.publish(heartbeat_subject(SITE, self.name), data)
            await fleet.put(f"worker.{SITE}.{self.name}", data)
            self.beats += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    async def _desired(self, desired: KeyValue) -> str:
        for key in (override_key("edge", SITE, self.name), site_key("edge", SITE)):
            with contextlib.suppress(KeyNotFoundError):
                entry = await desired.get(key)
                return (entry.value or b"").decode()
        return OLD

    def _heartbeat(self) -> dict[str, Any]:
        now = time.time()
        return heartbeat(
            self.name,
            self.version,
            since=self._since,
            at=now,
            frames=self._frames,
            compared=self._compared,
            agreed=math.floor(self.agreement[self.version] * self._compared),
            site=SITE,
            started_at=now - 60,
            latency_p95_ms=10.0,
            temperature_c=45.0,
        )


@contextlib.asynccontextmanager
async def running(workers: Sequence[FakeWorker]) -> AsyncIterator[None]:
    """The fake workers beat until the block ends; they have beaten 3 times at its start."""
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        for worker in workers:
            tasks.create_task(worker.run(stop))
        try:
            await wait_until(lambda: all(w.beats >= 3 for w in workers), 10, "heartbeats")
            yield
        finally:
            stop.set()


@contextlib.asynccontextmanager
async def controlling(controller: RolloutController) -> AsyncIterator[None]:
    task = asyncio.create_task(controller.run())
    try:
        await asyncio.wait_for(controller.wait_started(), 10)
        yield
    finally:
        await controller.stop()
        await task


async def buckets(js: JetStreamContext) -> KeyValue:
    """HF_FLEET as the workers create it, and HF_DESIRED with the site on ``OLD``."""
    await js.create_key_value(api.KeyValueConfig(bucket=FLEET_BUCKET, history=1))
    desired = await js.create_key_value(api.KeyValueConfig(bucket=DESIRED_BUCKET, history=10))
    await desired.put(site_key("edge", SITE), OLD.encode())
    return desired


class Site(NamedTuple):
    """A site under test: its ``HF_DESIRED``, the fleet events, the workers, a controller."""

    desired: KeyValue
    events: list[dict[str, Any]]
    workers: list[FakeWorker]
    controller: RolloutController


async def a_site(
    nc: Client, workers: int, new_agreement: float, config: RolloutConfig = CONFIG
) -> Site:
    """Workers ``e1``.. on ``OLD`` (95% agreement); ``NEW`` agrees ``new_agreement``."""
    js = nc.jetstream()
    desired = await buckets(js)
    events = await collect_events(nc)
    agreement = {OLD: 0.95, NEW: new_agreement}
    fakes = [FakeWorker(nc, js, f"e{i}", agreement) for i in range(1, workers + 1)]
    return Site(desired, events, fakes, RolloutController(nc, js, config))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def missing(desired: KeyValue, key: str) -> bool:
    try:
        await desired.get(key)
    except KeyNotFoundError:
        return True
    return False


async def test_good_canary_is_promoted_through_the_steps_to_the_site_key(nc: Client) -> None:
    desired, events, workers, controller = await a_site(nc, 4, 1.0)
    async with running(workers):
        state = await controller.start("edge", NEW, 0.25, SITE)
        assert state.canary_workers == ("e1",)
        assert state.plan.steps == (0.25, 0.5, 1.0)
        assert state.plan.previous_version == OLD
        assert (await desired.get(override_key("edge", SITE, "e1"))).value == NEW.encode()
        for name in ("e2", "e3", "e4"):
            assert await missing(desired, override_key("edge", SITE, name))

        async with controlling(controller):
            await wait_until(
                lambda: "rollout_completed" in kinds(events), 60, "the rollout to complete"
            )

    assert kinds(events) == [
        "rollout_started",
        "canary_assigned",
        "promoted",
        "canary_assigned",
        "promoted",
        "rollout_completed",
    ]
    assigned = [e["workers"] for e in events if e["kind"] == "canary_assigned"]
    assert assigned == [["e1"], ["e1", "e2"]]
    assert all(e["version"] == NEW and e["site"] == SITE for e in events)
    assert (await desired.get(site_key("edge", SITE))).value == NEW.encode()
    for name in ("e1", "e2"):
        assert await missing(desired, override_key("edge", SITE, name))
    # The canaries switched when they were assigned.
    assert workers[0].versions_run[:2] == workers[1].versions_run[:2] == [OLD, NEW]

    [stored] = await controller.status()
    assert stored.phase is RolloutPhase.COMPLETED
    assert [h.kind for h in stored.history] == ["started", "promoted", "completed"]
    assert "canary agrees with the cloud on 100.0%" in stored.history[1].reason


async def test_bad_canary_is_rolled_back_and_goes_back_to_the_site_version(nc: Client) -> None:
    desired, events, workers, controller = await a_site(nc, 4, 0.1)
    async with running(workers):
        await controller.start("edge", NEW, 0.25, SITE)
        async with controlling(controller):
            await wait_until(lambda: "rolled_back" in kinds(events), 60, "the roll back")
        # With its override gone, the canary goes back to the site's version.
        await wait_until(lambda: workers[0].version == OLD, 10, "e1 back on the old version")

    assert workers[0].versions_run == [OLD, NEW, OLD]
    assert all(w.versions_run == [OLD] for w in workers[1:])
    rolled_back = events[-1]
    assert rolled_back["kind"] == "rolled_back"
    assert rolled_back["check"] == "agreement"
    assert rolled_back["workers"] == ["e1"]
    assert "canary agrees with the cloud on 10.0%" in rolled_back["reason"]
    assert await missing(desired, override_key("edge", SITE, "e1"))
    assert (await desired.get(site_key("edge", SITE))).value == OLD.encode()
    [stored] = await controller.status("edge", SITE)
    assert stored.phase is RolloutPhase.ROLLED_BACK
    assert stored.reason == rolled_back["reason"]


async def test_canary_that_never_loads_the_version_is_rolled_back(nc: Client) -> None:
    config = RolloutConfig(canary=CONFIG.canary, tick_s=0.05, switch_timeout_s=0.5)
    desired, events, workers, controller = await a_site(nc, 2, 1.0, config)
    workers[0].follows_desired = False  # e.g. it refused the bundle
    async with running(workers):
        await controller.start("edge", NEW, 0.1, SITE)
        async with controlling(controller):
            await wait_until(lambda: "rolled_back" in kinds(events), 30, "the roll back")
    assert events[-1]["check"] == "switch"
    assert "no canary worker (e1) reported version 1.1.0 within 0.5 s" in events[-1]["reason"]
    assert await missing(desired, override_key("edge", SITE, "e1"))


async def test_start_refuses_without_workers_and_while_a_rollout_runs(nc: Client) -> None:
    js = nc.jetstream()
    await buckets(js)
    controller = RolloutController(nc, js, CONFIG)
    with pytest.raises(ConfigError, match="no live edge workers at site site1"):
        await controller.start("edge", NEW, 0.1, SITE)
    with pytest.raises(ConfigError, match=r"version 1\.0\.0 is already the site's version"):
        await controller.start("edge", OLD, 0.1, SITE)
    workers = [FakeWorker(nc, js, "e1", {OLD: 0.95, NEW: 1.0})]
    async with running(workers):
        await controller.start("edge", NEW, 0.1, SITE)
        with pytest.raises(HybridfleetError, match=r"a rollout of edge@1\.1\.0 is already running"):
            await controller.start("edge", "1.2.0", 0.1, SITE)
    assert [s.plan.version for s in await controller.status()] == [NEW]
