"""Per-site credentials: a site's users reach only that site's subjects, and the
whole pipeline still works across the leaf link with every permission in force."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.config import NatsSettings
from pipeline.fleet.launcher import FleetLauncher
from pipeline.fleet.spec import FleetOptions
from pipeline.messaging.security import Credentials
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import Hub, site_server
from pipeline.tools import probe as ops
from schemas import subjects
from schemas.messages import Reason
from tests.helpers import answer_across_leaf, make_frames, wait_until

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
    errors: list[str] = []
    camera = await _client(secure.site_users["camera"].url(secure.site.url), errors)
    frames = [frame for frame, _ in make_frames(30, deadline_ms=5000)]
    try:
        results = await answer_across_leaf(
            camera,
            frames,
            edge_nats=NatsSettings(url=secure.site_users["edge"].url(secure.site.url)),
            cloud_nats=NatsSettings(url=secure.cloud.url(secure.hub.urls[0])),
        )
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


def _violations(workdir: Path) -> list[str]:
    """The permission violations every server of a fleet logged."""
    logs = [path.read_text() for path in workdir.glob("*/*.log")]
    return [line for log in logs for line in log.splitlines() if "Violation" in line]


async def test_fleet_up_is_secure_by_default(tmp_path: Path) -> None:
    out = io.StringIO()
    options = FleetOptions(sites=1, hub_nodes=1, cameras=1, rate_hz=5.0, workdir=tmp_path)
    async with FleetLauncher(options, out=out) as launcher:
        creds = launcher.credentials
        assert creds is not None
        url = launcher.site_servers["site1"].url
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False)
        errors: list[str] = []
        camera = await _client(creds.user("site1", "camera").url(url), errors)
        operator = await _client(creds.user("site1", "operator").url(url), errors)
        try:
            # A camera may send frames and ask for results, but never forge an
            # escalation nor read the site's secrets (the escalation tag key).
            await camera.publish("escalations.site1.x", b"forged")
            await camera.publish(f"$JS.API.STREAM.INFO.KV_{subjects.SITE_BUCKET}", b"")
            await camera.flush()
            await wait_until(lambda: len(errors) >= 2, 5, "2 permission violations")
            frame, truth = ops.simulated_frame(ops.FrameRequest(camera="cam9"), seed=3)
            answer = await ops.infer(camera, frame, timeout_s=15)
            # The operator reads what the workers store (tail, dead-letters).
            info = await operator.jetstream().stream_info(subjects.site_dlq_stream("site1"))
            await asyncio.sleep(6.0)  # a health report and a few heartbeats go out
        finally:
            await camera.close()
            await operator.close()
    assert any('publish to "escalations.site1.x"' in e for e in errors), errors
    assert any("kv_hf_site" in e.lower() for e in errors), errors
    assert len(errors) == 2, errors
    assert answer.frame_id == frame.frame_id and answer.labels == truth
    assert info.config.name == "DLQ_EDGE_site1"
    # Every worker, camera simulator and leaf link did its work within its permissions:
    # the servers logged no violation but the camera's two.
    violations = _violations(tmp_path)
    assert len(violations) == 2 and all("camera-site1" in v for v in violations), violations
    assert "site permissions on" in out.getvalue()
