"""Heartbeats over a real nats-server: publishers, the HF_FLEET bucket, fleet status."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Callable

import nats
import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.cli.fleet import add_fleet_status_command
from pipeline.fleet.heartbeat import HeartbeatPublisher
from pipeline.fleet.status import (
    Fleet,
    is_stale,
    read_fleet,
    render_json,
    render_table,
)
from pipeline.messaging.server import NatsServer
from schemas.errors import SchemaError
from schemas.heartbeat import FLEET_BUCKET, Heartbeat, Tier
from tests.helpers import wait_until
from tests.unit.test_heartbeat import make_beat

pytestmark = pytest.mark.integration

INTERVAL_S = 0.1


class FakeWorker:
    """A snapshot that changes every beat, remembering the last one it gave."""

    def __init__(self, worker: str, tier: Tier, model: str) -> None:
        self.worker = worker
        self.beats = 0
        self.last: Heartbeat | None = None
        self._base = make_beat(worker=worker, tier=tier, model=model, frames=0, local=0)

    def snapshot(self) -> Heartbeat:
        self.beats += 1
        self.last = dataclasses.replace(
            self._base,
            frames=self.beats * 10,
            local=self.beats * 10,
            at=1_700_000_000.0 + self.beats,
        )
        return self.last


async def _run_publishers(publishers: list[HeartbeatPublisher], until: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        for p in publishers:
            tasks.create_task(p.run(stop))
        await wait_until(until, 10.0, "heartbeats")
        stop.set()


async def test_two_workers_appear_with_their_latest_heartbeat(
    nats_server: NatsServer, nc: Client
) -> None:
    seen: list[Msg] = []

    async def on_beat(msg: Msg) -> None:
        seen.append(msg)

    await nc.subscribe("fleet.heartbeat.>", cb=on_beat)
    edge, cloud = FakeWorker("edge-1", Tier.EDGE, "mlp"), FakeWorker("cloud-1", Tier.CLOUD, "svc")
    workers = [await nats.connect(nats_server.url) for _ in range(2)]
    try:
        publishers = [
            HeartbeatPublisher(c, c.jetstream(), "site1", f.worker, f.snapshot, INTERVAL_S)
            for c, f in zip(workers, [edge, cloud], strict=True)
        ]
        await _run_publishers(publishers, lambda: all(p.published >= 3 for p in publishers))
        assert all(p.failures == 0 for p in publishers)

        fleet = await read_fleet(nc.jetstream())
        assert fleet.skipped == ()
        # Sorted by (site, worker); each is the last snapshot its worker published.
        assert fleet.heartbeats == (cloud.last, edge.last)
        assert edge.last is not None and edge.last.frames >= 30

        await nc.flush()
        subjects = {m.subject for m in seen}
        assert subjects == {"fleet.heartbeat.site1.edge-1", "fleet.heartbeat.site1.cloud-1"}
        last_edge = [m for m in seen if m.subject.endswith("edge-1")][-1]
        assert Heartbeat.from_json(last_edge.data) == edge.last

        table = render_table(fleet.heartbeats, edge.last.at + 0.05, interval_s=INTERVAL_S)
        lines = table.splitlines()
        assert lines[0].split() == [
            "site", "worker", "tier", "model@version", "health",
            "link", "queue", "backlog", "temp", "age",
        ]  # fmt: skip
        assert lines[1].split()[:5] == ["site1", "cloud-1", "cloud", "svc@1.0.0", "healthy"]
        assert lines[2].split()[:5] == ["site1", "edge-1", "edge", "mlp@1.0.0", "healthy"]

        status = await nc.jetstream().key_value(FLEET_BUCKET)
        info = await status.status()
        assert info.history == 1
        assert info.ttl == pytest.approx(10 * INTERVAL_S)
    finally:
        for c in workers:
            await c.close()


async def test_malformed_entries_are_skipped_and_counted(nc: Client) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=FLEET_BUCKET, history=1)
    good = make_beat(worker="edge-2")
    await kv.put("worker.site1.edge-2", good.to_json())
    await kv.put("worker.site1.junk", b"not json")
    await kv.put("worker.site1.wrongkey", make_beat(worker="edge-9").to_json())
    await kv.put("worker.site1.badfield", make_beat().to_json().replace(b'"edge"', b'"fog"'))
    await kv.put("worker.site1.gone", make_beat(worker="gone").to_json())
    await kv.delete("worker.site1.gone")

    fleet = await read_fleet(js)

    assert fleet.heartbeats == (good,)
    reasons = dict(s.split(": ", 1) for s in fleet.skipped)
    assert set(reasons) == {"worker.site1.junk", "worker.site1.wrongkey", "worker.site1.badfield"}
    assert "not JSON" in reasons["worker.site1.junk"]
    assert "edge-9" in reasons["worker.site1.wrongkey"]
    assert reasons["worker.site1.badfield"].startswith("heartbeat.tier:")
    table = render_table(fleet.heartbeats, good.at, skipped=len(fleet.skipped))
    assert table.splitlines()[-1] == "(3 malformed entries skipped)"


async def test_no_bucket_is_an_empty_fleet(nc: Client) -> None:
    fleet = await read_fleet(nc.jetstream())
    assert fleet == Fleet((), ())
    assert "no worker has reported" in render_table(fleet.heartbeats, 0.0)


async def test_publisher_rides_out_a_server_restart(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    worker = FakeWorker("edge-1", Tier.EDGE, "mlp")
    errors: list[Exception] = []
    client = await nats.connect(nats_server.url, reconnect_time_wait=0.2, max_reconnect_attempts=-1)
    try:
        publisher = HeartbeatPublisher(
            client, client.jetstream(), "site1", "edge-1", worker.snapshot, INTERVAL_S,
            on_error=errors.append,
        )  # fmt: skip
        assert await publisher.publish_once()

        nats_server.stop()
        with caplog.at_level(logging.WARNING, logger="pipeline.fleet.heartbeat"):
            assert not await publisher.publish_once()  # does not raise
            assert not await publisher.publish_once()
        assert publisher.failures >= 2 and len(errors) == publisher.failures
        # One warning per outage, not one per beat.
        assert len([r for r in caplog.records if r.name == "pipeline.fleet.heartbeat"]) == 1

        nats_server.start()  # same port; the memory bucket is gone with the old process
        await wait_until(lambda: client.is_connected, 10.0, "the client to reconnect")
        stop = asyncio.Event()
        published_before = publisher.published
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(publisher.run(stop))
            await wait_until(
                lambda: publisher.published > published_before, 10.0, "a beat after restart"
            )
            stop.set()
        fleet = await read_fleet(client.jetstream())
        assert fleet.heartbeats == (worker.last,)
    finally:
        await client.close()


async def test_publisher_refuses_another_workers_snapshot(nc: Client) -> None:
    publisher = HeartbeatPublisher(nc, nc.jetstream(), "site1", "edge-2", make_beat, INTERVAL_S)
    with pytest.raises(SchemaError, match="edge-1"):
        await publisher.publish_once()


# ---------------------------------------------------------------- rendering (pure)


def test_stale_after_three_intervals() -> None:
    beat = make_beat(at=1000.0)
    assert not is_stale(beat, 1006.0, 2.0)
    assert is_stale(beat, 1006.01, 2.0)
    row = render_table([beat], 1010.0, interval_s=2.0).splitlines()[1].split()
    assert row[4] == "STALE"
    assert row[-1] == "10.0s"


def test_table_cells() -> None:
    beat = make_beat(link_up=False, backlog=-1, queue_depth=12, temperature_c=71.25)
    row = render_table([beat], beat.at).splitlines()[1]
    assert row.split()[5:] == ["down", "12", "?", "71.2C", "(sim)", "0.0s"]


def test_json_rendering() -> None:
    fresh, old = make_beat(worker="a", at=1000.0), make_beat(worker="b", at=990.0)
    doc = orjson.loads(render_json([fresh, old], 1001.0, interval_s=2.0, skipped=1))
    assert doc["skipped"] == 1
    assert doc["interval_s"] == 2.0
    assert [w["worker"] for w in doc["workers"]] == ["a", "b"]
    assert [w["stale"] for w in doc["workers"]] == [False, True]
    assert doc["workers"][1]["age_s"] == 11.0
    assert Heartbeat.from_json(orjson.dumps(doc["workers"][0])) == fresh


def test_status_command(nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    async def publish() -> None:
        client = await nats.connect(nats_server.url)
        try:
            beat = make_beat(worker="edge-7")
            publisher = HeartbeatPublisher(
                client, client.jetstream(), "site1", "edge-7", lambda: beat, 2.0
            )
            assert await publisher.publish_once()
        finally:
            await client.close()

    asyncio.run(publish())
    parser = argparse.ArgumentParser()
    fleet = parser.add_subparsers(dest="command").add_parser("fleet").add_subparsers()
    add_fleet_status_command(fleet)

    args = parser.parse_args(["fleet", "status", "--url", nats_server.url, "--json"])
    assert args.run(args) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert [w["worker"] for w in doc["workers"]] == ["edge-7"]

    args = parser.parse_args(["fleet", "status", "--url", nats_server.url])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "edge-7" in out and "STALE" in out  # make_beat's `at` is long past
