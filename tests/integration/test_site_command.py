"""``hybridfleet site`` as a process: one long-lived site that answers until SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from pipeline.tools import probe as ops
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import InferenceResult
from tests.helpers import make_frames, wait_until

pytestmark = pytest.mark.integration

_READY = "ready; Ctrl-C or SIGTERM stops it"


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    """The lines ``proc`` printed, up to the one holding ``marker``."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {timeout} s; output so far: {lines}")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.cli.main",
            "site",
            "--port",
            "0",
            "--workdir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_a_site_answers_until_sigterm_then_drains_and_exits_0(
    site: subprocess.Popen[str],
) -> None:
    lines = _read_until(site, _READY, timeout=60)
    found = re.search(r"listening on (nats://127\.0\.0\.1:(\d+)) \(pid (\d+)\)", "\n".join(lines))
    assert found, lines
    url, port, server_pid = found.group(1), int(found.group(2)), int(found.group(3))
    assert any("frames.site1.*" in line and "infer.site1" in line for line in lines), lines

    nc = await nats.connect(url, name="test-site")
    results: list[InferenceResult] = []

    async def on_result(msg: Msg) -> None:
        results.append(decode_result(msg.data))

    try:
        await nc.subscribe(subjects.results("site1"), cb=on_result)
        # Request/reply: one simulated digit in, its final result back.
        frame, truth = ops.simulated_frame(ops.FrameRequest(), seed=3)
        answer = await ops.infer(nc, frame, timeout_s=15)
        assert answer.frame_id == frame.frame_id and answer.labels == truth
        # Published frames: each gets its result on results.site1.<camera>.
        frames = make_frames(10, deadline_ms=5000)
        for f, _ in frames:
            await nc.publish(subjects.frames("site1", f.camera), encode(f))
        wanted = {f.frame_id for f, _ in frames}
        await wait_until(
            lambda: wanted <= {r.frame_id for r in results}, 30, "a result per published frame"
        )
    finally:
        await nc.close()

    site.send_signal(signal.SIGTERM)
    assert site.wait(60) == 0
    assert site.stdout is not None
    tail = site.stdout.read()
    assert "the edge worker drains" in tail and "nats-server stopped" in tail, tail
    assert _port_closed(port)
    with pytest.raises(ProcessLookupError):
        os.kill(server_pid, 0)


def test_a_taken_port_is_refused_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ["site", "--port", str(port), "--workdir", str(tmp_path)]
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli.main", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert "nats-server exited" in done.stderr, done.stderr
