"""A rolling restart of ``fleet up``: every worker replaced, no frame left unanswered."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.fleet.launcher import FleetLauncher
from pipeline.fleet.spec import FLEET_FILE, FleetOptions
from schemas import subjects
from schemas.codec import decode_result, encode
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RATE_HZ = 20.0
WAIT = ("--wait", "--timeout", "150")


async def _steady_camera(nc: Client, sent: list[str], stop: asyncio.Event) -> None:
    """One camera at ``RATE_HZ`` frames/s until ``stop``; the ids go to ``sent``."""
    simulator = CameraSimulator(CameraOptions(site="site1", cameras=1, seed=7))
    seq = 0
    started = time.monotonic()
    while not stop.is_set():
        frame, _ = simulator.make_frame("cam1", seq, time.time())
        # Its own camera name, so that this test's frames are told from the fleet's.
        frame = replace(frame, camera="steady")
        await nc.publish(subjects.frames("site1", "steady"), encode(frame))
        sent.append(frame.frame_id)
        seq += 1
        await asyncio.sleep(max(0.0, started + seq / RATE_HZ - time.monotonic()))


def _pids(launcher: FleetLauncher) -> dict[str, int]:
    return {m.name: m.pid for m in launcher.members if m.role in ("edge", "cloud")}


def _fleet_restart(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "fleet",
            "restart",
            "--workdir",
            str(workdir),
            *WAIT,
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )


async def test_rolling_restarts_under_a_steady_camera_answer_every_frame(tmp_path: Path) -> None:
    out = io.StringIO()
    options = FleetOptions(sites=1, hub_nodes=1, cameras=1, rate_hz=2.0, workdir=tmp_path)
    received: Counter[str] = Counter()

    async def on_result(msg: Msg) -> None:
        received[decode_result(msg.data).frame_id] += 1

    sent: list[str] = []
    stop_camera = asyncio.Event()
    roll = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with FleetLauncher(options, out=out) as launcher:
        assert launcher.credentials is not None
        url = launcher.credentials.user("site1", "camera").url(launcher.site_servers["site1"].url)
        nc = await nats.connect(url, name="test-steady-camera")
        loop.add_signal_handler(signal.SIGHUP, roll.set)
        runner = asyncio.create_task(launcher.run(roll=roll))
        try:
            await nc.subscribe(subjects.results("site1", "steady"), cb=on_result)
            camera = asyncio.create_task(_steady_camera(nc, sent, stop_camera))
            await asyncio.sleep(1.0)
            before, counts = _pids(launcher), [len(sent)]
            # 1. Called directly.
            assert await launcher.rolling_restart()
            middle = _pids(launcher)
            counts.append(len(sent))
            # 2. As an operator does it: `fleet restart --wait` signals `fleet up` (SIGHUP).
            done = await asyncio.to_thread(_fleet_restart, tmp_path)
            assert done.returncode == 0, done.stdout + done.stderr + out.getvalue()
            assert "rolling restart done" in done.stdout
            after = _pids(launcher)
            counts.append(len(sent))
            await asyncio.sleep(1.0)
            stop_camera.set()
            await camera
            await wait_until(
                lambda: set(sent) <= set(received), 30, "a result for every frame sent"
            )
            await asyncio.sleep(0.5)  # a duplicate would have arrived by now
            assert not runner.done(), out.getvalue()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            stop_camera.set()
            runner.cancel()
            await nc.close()
    log = out.getvalue()
    missing = [f for f in sent if f not in received]
    assert not missing, f"{len(missing)} of {len(sent)} frames unanswered: {missing[:5]}\n{log}"
    assert set(received) == set(sent) and max(received.values()) == 1, "one result per frame"
    # The camera published all through both restarts.
    assert counts[0] < counts[1] < counts[2], counts
    # Every worker is a new process after each restart, under the same name.
    assert set(before) == set(middle) == set(after) == {"cloud-1", "edge-site1-1"}
    assert all(before[n] != middle[n] != after[n] for n in before), (before, middle, after)
    assert log.count("rolling restart done") == 2, log
    assert f"SIGTERM to pid {before['edge-site1-1']}, which drains" in log
    recorded = json.loads((tmp_path / FLEET_FILE).read_text())
    assert recorded["rolling_restarts"] == {"started": 2, "done": 2, "failed": 0}
