"""The compose services' command lines, run for real against a nats-server (no docker).

Each hybridfleet service of docker-compose.yml is started as a process with the
service's own arguments, settings file and variables (only the NATS URL points at the
test's server, and what a lone server cannot be is overridden: one JetStream domain,
one replica). The process can import only what the image installs: a finder refuses
every top-level module of a distribution that the Dockerfile's ``pip install`` does not
bring (tests/unit/dockerimage.py works that out), as ``ModuleNotFoundError``. So an
image that leaves out a dependency of a service's code path fails here, as the camera
did without scikit-learn. Then SIGTERM, as ``docker compose stop`` sends it: each
process must exit 0 within a bound (the camera at once; it used to be killed).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from packaging.utils import canonicalize_name

from pipeline.fleet.spec import DEFAULT_CONFIG_DIR
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import decode_result, encode
from tests.helpers import make_frames
from tests.unit.composefile import compose_file
from tests.unit.dockerimage import (
    dockerfile_lines,
    image_packages,
    installed_extras,
    requirement_closure,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # importing onnxruntime and scikit-learn on a busy 2-core machine
CAMERA_EXIT_S = 5.0  # SIGTERM to exit: the camera stops between two frames
WORKER_EXIT_S = 30.0  # an edge worker drains (compose gives it 40 s)

# Runs `hybridfleet` with a finder in front that refuses the modules in HF_TEST_BLOCKED.
_RUNNER = """
import importlib.abc, json, os, sys

BLOCKED = frozenset(json.loads(os.environ.pop("HF_TEST_BLOCKED")))

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"No module named {name!r} (the image does not install it)", name=name
            )
        return None

sys.meta_path.insert(0, NotInTheImage())
from pipeline.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _blocked_modules() -> list[str]:
    """Top-level modules installed here that the image's pip line does not install."""
    closure = requirement_closure(installed_extras(dockerfile_lines()))
    own = set(image_packages())
    blocked = set()
    for module, dists in importlib.metadata.packages_distributions().items():
        if module in own or module in sys.stdlib_module_names:
            continue
        if not {canonicalize_name(d) for d in dists} & closure:
            blocked.add(module)
    return sorted(blocked)


def _service(name: str, server: NatsServer, **overrides: str) -> tuple[list[str], dict[str, str]]:
    """A compose service's arguments and environment, pointed at ``server``."""
    service: dict[str, Any] = compose_file()["services"][name]
    args = [str(a) for a in service["command"]]
    if "--config" in args:  # the container's mount of deploy/fleet
        i = args.index("--config") + 1
        args[i] = str(DEFAULT_CONFIG_DIR / Path(args[i]).name)
    if "--metrics-addr" in args:
        args[args.index("--metrics-addr") + 1] = "127.0.0.1"
        args[args.index("--metrics-port") + 1] = "0"
    env = {k: str(v) for k, v in service["environment"].items()}
    env |= {"HYBRIDFLEET_NATS_URL": server.url, **overrides}
    return args, env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _RUNNER, *args],
            cwd=ROOT,
            env={**os.environ, **env, "HF_TEST_BLOCKED": json.dumps(_blocked_modules())},
            stdout=subprocess.PIPE,
            stderr=out,
        )


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _until(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {what}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {START_TIMEOUT_S} s:\n{_tail(log)}")
        await asyncio.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], bound_s: float, log: Path) -> tuple[float, bytes]:
    """SIGTERM ``proc``; how long it took to exit, and what it printed."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running {bound_s} s after SIGTERM:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{log.read_text()[-3000:]}"
    return time.monotonic() - start, out


def _subscribed(server: NatsServer, client: str) -> bool:
    """True once the connection named ``client`` holds a subscription."""
    url = f"http://127.0.0.1:{server.monitor_port}/connz?subs=1"
    with urllib.request.urlopen(url, timeout=2) as response:
        connz = json.load(response)
    return any(
        c.get("name") == client and c.get("subscriptions_list") for c in connz["connections"]
    )


def test_the_runner_refuses_what_the_image_lacks() -> None:
    # Control: the finder does refuse a module installed here but not in the image.
    blocked = _blocked_modules()
    assert "yaml" in blocked and "pytest" in blocked  # dev extra only
    assert "sklearn" not in blocked and "onnxruntime" not in blocked
    runner = _RUNNER.replace("from pipeline.cli.main", "import yaml\nfrom pipeline.cli.main")
    proc = subprocess.run(
        [sys.executable, "-c", runner, "--help"],
        env={**os.environ, "HF_TEST_BLOCKED": json.dumps(blocked)},
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode != 0 and b"the image does not install it" in proc.stderr


async def test_the_camera_service_publishes_and_exits_0_on_sigterm(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    args, env = _service("camera-site1", nats_server)
    assert float(args[args.index("--seconds") + 1]) >= 60  # a long run, stopped by SIGTERM
    frames: list[str] = []
    nc = await nats.connect(nats_server.url)

    async def on_frame(msg: Msg) -> None:
        frames.append(msg.subject)

    await nc.subscribe("frames.site1.>", cb=on_frame)
    await nc.flush()
    log = tmp_path / "camera.log"
    proc = _start(args, env, log)
    try:
        await _until(lambda: len(frames) >= 5, proc, log, "5 frames")
        took, out = _stop(proc, CAMERA_EXIT_S, log)
        await asyncio.sleep(0.3)
        after = len(frames)
        await asyncio.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        await nc.close()
    assert len(frames) == after, "frames published after the camera exited"
    published = json.loads(out.decode().strip().splitlines()[-1])["frames_published"]
    assert published == len(frames) >= 5
    assert "SIGTERM" in log.read_text()
    print(f"camera: {published} frames, exit 0 {took:.2f} s after SIGTERM")


async def test_the_edge_service_answers_and_drains_on_sigterm(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # One server: no hub domain for the cloud's streams.
    args, env = _service("edge-site1-1", nats_server, HYBRIDFLEET_EDGE_CLOUD_DOMAIN="")
    results: list[str] = []
    nc = await nats.connect(nats_server.url)

    async def on_result(msg: Msg) -> None:
        results.append(decode_result(msg.data).frame_id)

    await nc.subscribe(subjects.results("site1"), cb=on_result)
    log = tmp_path / "edge.log"
    proc = _start(args, env, log)
    try:
        client = f"hybridfleet-{env['HYBRIDFLEET_EDGE_WORKER_ID']}"
        await _until(lambda: _subscribed(nats_server, client), proc, log, "its subscriptions")
        frames = make_frames(3, deadline_ms=2000)
        for frame, _ in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await _until(lambda: len(results) >= len(frames), proc, log, "a result per frame")
        took, _ = _stop(proc, WORKER_EXIT_S, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        await nc.close()
    assert sorted(results) == sorted(f.frame_id for f, _ in frames)
    print(f"edge: exit 0 {took:.2f} s after SIGTERM")


async def test_the_cloud_service_starts_and_exits_0_on_sigterm(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # One server: one replica, and the sites' streams on the same server.
    args, env = _service(
        "cloud-1",
        nats_server,
        HYBRIDFLEET_STREAM_REPLICAS="1",
        HYBRIDFLEET_CLOUD_SITES_ARE_DOMAINS="false",
    )
    log = tmp_path / "cloud.log"
    proc = _start(args, env, log)
    try:
        client = f"hybridfleet-{env['HYBRIDFLEET_CLOUD_WORKER_ID']}"
        await _until(lambda: _subscribed(nats_server, client), proc, log, "its subscriptions")
        took, _ = _stop(proc, WORKER_EXIT_S, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"cloud: exit 0 {took:.2f} s after SIGTERM")
