"""Per-site credentials: a site's users reach only that site's subjects, and the
whole pipeline still works across the leaf link with every permission in force."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.config import NatsSettings, Settings
from pipeline.natsserver import NatsServer
from pipeline.security import Credentials
from pipeline.topology import HUB_DOMAIN, Hub, site_server
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import Reason
from tests.helpers import make_frames, wait_until

pytestmark = pytest.mark.integration

ROLES = ("camera", "edge")


@dataclass
class SecureFleet:
    hub: Hub
    site: NatsServer
    site_users: dict[str, Credentials]
    cloud: Credentials
    leaves: dict[str, Credentials]


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[SecureFleet]:
    cloud = Credentials.generate("cloud")
    leaves = {s: Credentials.generate(f"leaf-{s}") for s in ("site1", "site2")}
    hub = Hub(tmp_path, cloud=cloud, leaves=leaves)
    hub.start()
    users = {role: Credentials.generate(f"{role}-site1") for role in ROLES}
    leaf_urls = [f"nats-leaf://127.0.0.1:{p}" for p in hub.leaf_ports]
    site = site_server(tmp_path, "site1", leaf_urls, users=users, leaf=leaves["site1"])
    site.start()
    try:
        yield SecureFleet(hub, site, users, cloud, leaves)
    finally:
        site.stop()
        hub.stop()


async def _client(url: str, errors: list[str]) -> Client:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0)


async def test_site_credentials_refused_on_another_sites_subjects(secure: SecureFleet) -> None:
    errors: list[str] = []
    camera = await _client(secure.site_users["camera"].url(secure.site.url), errors)
    edge = await _client(secure.site_users["edge"].url(secure.site.url), errors)
    try:
        await camera.publish("frames.site2.cam1", b"x")
        await camera.subscribe("results.site2.>")
        await edge.publish("escalations.site2.cam1", b"x")
        await edge.subscribe("frames.site2.>")
        await camera.publish("frames.site1.cam1", b"allowed")  # no error for its own
        await camera.flush()
        await edge.flush()
        await wait_until(lambda: len(errors) >= 4, 5, "4 permission violations")
    finally:
        await camera.close()
        await edge.close()
    assert any('publish to "frames.site2.cam1"' in e for e in errors), errors
    assert any('subscription to "results.site2.>"' in e for e in errors), errors
    assert any('publish to "escalations.site2.cam1"' in e for e in errors), errors
    assert any('subscription to "frames.site2.>"' in e for e in errors), errors
    assert not any("site1" in e for e in errors), errors


async def test_no_anonymous_access(secure: SecureFleet) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(secure.site.url, max_reconnect_attempts=0, allow_reconnect=False)


async def test_pipeline_works_with_every_permission_enforced(secure: SecureFleet) -> None:
    base = Settings()
    edge_settings = replace(
        base,
        nats=NatsSettings(url=secure.site_users["edge"].url(secure.site.url)),
        edge=replace(base.edge, cloud_domain=HUB_DOMAIN, default_threshold=1.0),
    )
    cloud_settings = replace(
        base,
        nats=NatsSettings(url=secure.cloud.url(secure.hub.urls[0])),
        cloud=replace(base.cloud, sites="site1", sites_are_domains=True),
    )
    errors: list[str] = []
    camera = await _client(secure.site_users["camera"].url(secure.site.url), errors)
    results = []

    async def on_result(msg: Msg) -> None:
        results.append(decode_result(msg.data))

    await camera.subscribe(subjects.results("site1"), cb=on_result)
    frames = make_frames(30, deadline_ms=5000)
    try:
        async with CloudWorker(cloud_settings), EdgeWorker(edge_settings):
            for frame, _ in frames:
                await camera.publish(subjects.frames("site1", frame.camera), encode(frame))
            await wait_until(lambda: len(results) >= len(frames), 30, "every result")
            await asyncio.sleep(0.2)
    finally:
        await camera.close()
    assert errors == []
    assert len(results) == len(frames)
    assert any(r.reason is Reason.CLOUD_ANSWER for r in results), [r.reason for r in results]
    assert not any(r.degraded for r in results), [r.reason for r in results]


async def test_a_sites_leaf_link_carries_only_that_sites_traffic(
    secure: SecureFleet, tmp_path: Path
) -> None:
    # A site server with no local users (say, one an intruder took over) still logs
    # in to the hub as leaf-site1: the hub bounds what it accepts from that link.
    leaf_urls = [f"nats-leaf://127.0.0.1:{p}" for p in secure.hub.leaf_ports]
    rogue = site_server(tmp_path / "rogue", "site1", leaf_urls, leaf=secure.leaves["site1"])
    rogue.start()
    seen: list[str] = []
    hub = await nats.connect(secure.cloud.url(secure.hub.urls[0]))
    intruder = await nats.connect(rogue.url)
    try:

        async def on_msg(msg: Msg) -> None:
            seen.append(msg.subject)

        await hub.subscribe("replies.>", cb=on_msg)
        await hub.subscribe("_INBOX.probe", cb=on_msg)
        await hub.flush()
        await asyncio.sleep(1.0)  # the leaf link learns the hub's interest
        for _ in range(20):
            await intruder.publish("replies.site2.edge-1", b"forged answer")
            await intruder.publish("_INBOX.probe", b"allowed through")
            await intruder.flush()
            if "_INBOX.probe" in seen:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
    finally:
        await intruder.close()
        await hub.close()
        rogue.stop()
    assert "_INBOX.probe" in seen, "the link is up (control)"
    assert "replies.site2.edge-1" not in seen
