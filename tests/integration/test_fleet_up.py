"""``hybridfleet fleet up`` as processes: a 3-node hub, two sites, their workers and cameras."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.fleet.launcher import FleetLauncher
from pipeline.fleet.spec import FLEET_FILE, PROMETHEUS_TARGETS_FILE, FleetOptions
from pipeline.fleet.status import listen_fleet, render_table
from pipeline.fleet.supervisor import RestartPolicy
from pipeline.tools import probe as ops
from schemas import subjects
from schemas.codec import decode_result

pytestmark = pytest.mark.integration

SITES = ("site1", "site2")


def _options(workdir: Path) -> FleetOptions:
    # What `fleet up` runs by default: one edge worker per site, one cloud worker, two
    # cameras per site at 10 frames/s; here the cameras stop after 30 s.
    options = FleetOptions(sites=len(SITES), hub_nodes=3, camera_seconds=30.0, workdir=workdir)
    assert (options.edge_workers, options.cloud_workers, options.cameras) == (1, 1, 2)
    assert options.rate_hz == 10.0
    return options


async def _listen(url: str, site: str, reasons: Counter[str]) -> Client:
    nc = await nats.connect(url, name=f"test-{site}")

    async def on_result(msg: Msg) -> None:
        reasons[decode_result(msg.data).reason.value] += 1

    await nc.subscribe(subjects.results(site), cb=on_result)
    await nc.flush()
    return nc


async def _until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_two_sites_answer_at_the_edge_and_through_the_cloud(tmp_path: Path) -> None:
    out = io.StringIO()
    launcher = FleetLauncher(_options(tmp_path), out=out)
    reasons = {site: Counter[str]() for site in SITES}
    clients = []
    try:
        await launcher.start()
        creds = launcher.credentials
        assert creds is not None, "fleet up is secure by default"
        for site in SITES:
            url = creds.user(site, "camera").url(launcher.site_servers[site].url)
            clients.append(await _listen(url, site, reasons[site]))
        # Each site's edge worker publishes final results, and each site's uncertain
        # frames go across its leaf link to the one cloud worker and come back answered.
        answered = await _until(
            lambda: all(reasons[s]["cloud_answer"] > 0 and reasons[s].total() > 5 for s in SITES),
            40,
        )
        assert answered, f"results by reason per site: {reasons}\n{out.getvalue()}"
        members = launcher.members
        assert launcher.check() is None
        recorded = json.loads((tmp_path / FLEET_FILE).read_text())
        assert recorded["state"] == "running" and recorded["secure"] is True
        assert {m["name"]: m["pid"] for m in recorded["members"]} == {
            m.name: m.pid for m in members
        }
        targets = json.loads((tmp_path / PROMETHEUS_TARGETS_FILE).read_text())
        assert sorted(t["labels"]["worker"] for t in targets) == ["cloud-1", "edge-1", "edge-1"]
        # `fleet status` at the hub: every worker's heartbeat, across the leaf links.
        assert launcher.hub is not None
        hub = await nats.connect(creds.cloud.url(launcher.hub.urls[0]), name="test-status")
        try:
            fleet = await listen_fleet(hub, seconds=5.0)
        finally:
            await hub.close()
        seen = {(b.site, b.worker, b.tier) for b in fleet.heartbeats}
        assert seen == {
            ("site1", "edge-1", "edge"),
            ("site2", "edge-1", "edge"),
            ("_all", "cloud-1", "cloud"),
        }, fleet
        table = render_table(fleet.heartbeats, time.time())
        assert "site2" in table and "digits-mlp32@1.0.0" in table
    finally:
        for nc in clients:
            await nc.close()
        await launcher.close()

    roles = Counter(m.role for m in members)
    assert roles == {"hub": 3, "site": 2, "edge": 2, "cloud": 1, "camera": 2}
    assert all(_pid_gone(m.pid) for m in members), [m.name for m in members]
    ports = [int(m.url.rsplit(":", 1)[1]) for m in members if m.role in ("hub", "site")]
    ports += [m.metrics_port for m in members if m.metrics_port]
    assert all(_port_closed(p) for p in ports), ports
    assert json.loads((tmp_path / FLEET_FILE).read_text())["state"] == "stopped"
    # Workers drained on SIGTERM and exited cleanly.
    assert "edge-site1-1 stopped (exit 0)" in out.getvalue()
    assert "cloud-1 stopped (exit 0)" in out.getvalue()


def _pid_of(launcher: FleetLauncher, name: str) -> int:
    return next(m.pid for m in launcher.members if m.name == name)


async def test_a_crashed_worker_comes_back_and_one_that_keeps_crashing_stops_the_fleet(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    options = FleetOptions(
        sites=1,
        hub_nodes=1,
        cameras=1,
        rate_hz=2.0,
        workdir=tmp_path,
        secure=False,  # --insecure: anyone may connect
        restart=RestartPolicy(initial_delay_s=0.5, max_restarts=1, window_s=60.0),
    )
    async with FleetLauncher(options, out=out) as launcher:
        runner = asyncio.create_task(launcher.run())
        first = _pid_of(launcher, "edge-site1-1")
        os.kill(first, signal.SIGKILL)
        back = await _until(lambda: ") ready again" in out.getvalue(), 60)
        assert back, out.getvalue()
        assert f"edge-site1-1 (pid {first}) exited with -9; restart 1 in 0.5 s" in out.getvalue()
        second = _pid_of(launcher, "edge-site1-1")
        assert second != first and not _pid_gone(second)
        recorded = json.loads((tmp_path / FLEET_FILE).read_text())
        edge = next(m for m in recorded["members"] if m["name"] == "edge-site1-1")
        assert (edge["pid"], edge["restarts"], recorded["secure"]) == (second, 1, False)
        # The fleet answers again, through the new worker.
        nc = await nats.connect(launcher.site_servers["site1"].url, name="test-infer")
        try:
            frame, truth = ops.simulated_frame(ops.FrameRequest(), seed=3)
            answer = await ops.infer(nc, frame, timeout_s=15)
        finally:
            await nc.close()
        assert answer.frame_id == frame.frame_id and answer.labels == truth
        # A second crash within the window is one too many: the fleet stops.
        assert not runner.done()
        os.kill(second, signal.SIGKILL)
        code = await asyncio.wait_for(runner, 30)
    assert code == 1
    assert f"edge-site1-1 (pid {second}) exited with -9, and it was restarted 1 times" in (
        out.getvalue()
    )
    assert all(_pid_gone(m.pid) for m in launcher.members)
