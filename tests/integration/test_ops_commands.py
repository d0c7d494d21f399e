"""``hybridfleet infer``, ``tail`` and ``dead-letters`` as processes, against a real
nats-server with a cloud and an edge worker: an operator's day without the nats CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.inference.digits import digit_to_pixels, load_split
from pipeline.messaging.natsio import publish_dead_letter
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import InferenceResult
from tests.helpers import make_frames, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def site(nats_server: NatsServer, settings: Any) -> AsyncIterator[str]:
    """A cloud and an edge worker on the test's server (health every 0.2 s); its URL."""
    settings = replace(settings, edge=replace(settings.edge, health_interval_s=0.2))
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings):
        yield nats_server.url


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _cli_async(*args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the workers under test run on this event loop meanwhile.
    return await asyncio.to_thread(_cli, *args)


def _digit(index: int) -> tuple[np.ndarray, int]:
    split = load_split()
    return digit_to_pixels(split.x_heldout[index], 4), int(split.y_heldout[index])


async def test_infer_a_simulated_digit_and_image_files(site: str, tmp_path: Path) -> None:
    done = await _cli_async("infer", "--url", site, "--json", "--seed", "3")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["type"] == "result" and answer["site"] == "site1" and answer["camera"] == "cli"
    assert answer["labels"] == answer["truth"], answer

    pixels, label = _digit(7)
    png, npy = tmp_path / "digit.png", tmp_path / "digit.npy"
    assert cv2.imwrite(str(png), pixels)
    np.save(npy, pixels)
    for path in (png, npy):
        done = await _cli_async("infer", "--url", site, "--image", str(path), "--camera", "door")
        assert done.returncode == 0, done.stderr
        assert "site1/door frame door-" in done.stdout, done.stdout
        assert f"labels [{label}]" in done.stdout, (path, done.stdout)

    # A region of a bigger image: the digit pasted into a dark 96x64 frame.
    frame = np.zeros((64, 96), dtype=np.uint8)
    frame[16:48, 40:72] = pixels
    np.save(npy, frame)
    done = await _cli_async("infer", "--url", site, "--image", str(npy), "--region", "40,16,32,32")
    assert done.returncode == 0 and f"labels [{label}]" in done.stdout, done.stdout + done.stderr

    np.save(npy, np.zeros((4, 4, 3), dtype=np.uint8))
    done = await _cli_async("infer", "--url", site, "--image", str(npy))
    assert done.returncode == 2 and "2-D uint8 grayscale" in done.stderr, done.stderr


async def test_tail_prints_results_dead_letters_and_health(site: str, nc: Client) -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "pipeline.cli.main", "tail", "--url", site, "--json"),
        *("--seconds", "6"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        started = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert started.startswith("following results.site1.>"), started
        frames = make_frames(3, deadline_ms=5000)
        for frame, _ in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await nc.publish(subjects.frames("site1", "cam1"), b"not a frame")
        await nc.flush()
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
        out, err = stdout.decode(), stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = {e["kind"] for e in events}
    assert kinds == {"result", "dead_letter", "health"}, events
    results = {e["message"]["frame_id"] for e in events if e["kind"] == "result"}
    assert results == {f.frame_id for f, _ in frames}
    (letter,) = [e["message"] for e in events if e["kind"] == "dead_letter"]
    assert letter["subject"] == "frames.site1.cam1" and letter["bytes"] == len(b"not a frame")
    assert "msgpack" in letter["reason"], letter


async def test_dead_letters_list_and_redrive(site: str, nc: Client) -> None:
    results: list[InferenceResult] = []
    redriven: list[bytes] = []

    async def on_result(msg: Msg) -> None:
        results.append(decode_result(msg.data))

    async def on_frame(msg: Msg) -> None:
        redriven.append(msg.data)

    await nc.subscribe(subjects.results("site1"), cb=on_result)
    await nc.subscribe(subjects.frames("site1", "cam1"), cb=on_frame)
    # One frame the edge refuses, and one good frame stored as a dead letter as if the
    # edge model had failed on it: only the second is worth a redrive.
    await nc.publish(subjects.frames("site1", "cam1"), b"\x01garbage")
    js = nc.jetstream()
    stream = subjects.site_dlq_stream("site1")
    await wait_until_async(js, stream, 1)
    (good, truth), *_ = make_frames(1, cameras=1, deadline_ms=5000)
    await publish_dead_letter(
        js,
        stage="edge",
        site="site1",
        subject=subjects.frames("site1", good.camera),
        reason="edge model failed on the batch: test",
        data=encode(good),
    )
    listed = await _cli_async("dead-letters", "list", "--url", site, "--json")
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["reason"].split(":")[0] for r in records] == [
        "frame",
        "edge model failed on the batch",
    ]
    assert all(r["stream"] == stream and r["subject"] == "frames.site1.cam1" for r in records)
    refused, failed = records

    redriven.clear()
    done = await _cli_async("dead-letters", "redrive", "--url", site, "--seq", str(failed["seq"]))
    assert done.returncode == 0 and "published frames.site1.cam1" in done.stdout, done.stdout
    await wait_until(lambda: any(r.frame_id == good.frame_id for r in results), 15, "its result")
    (result,) = [r for r in results if r.frame_id == good.frame_id]
    assert result.labels == truth
    assert redriven == [encode(good)], "the original bytes, to the original subject"
    # Redriven and deleted; the refused one is still there.
    listed = await _cli_async("dead-letters", "list", "--url", site, "--json")
    assert [json.loads(line)["seq"] for line in listed.stdout.splitlines()] == [refused["seq"]]
    # --keep: the record stays; the edge refuses the same bytes again and stores them anew.
    done = await _cli_async("dead-letters", "redrive", "--url", site, "--all", "--keep")
    assert done.returncode == 0, done.stderr
    await wait_until_async(js, stream, 2)
    assert redriven[-1] == b"\x01garbage"
    missing = await _cli_async("dead-letters", "redrive", "--url", site, "--seq", "999")
    assert missing.returncode == 2 and "has no message 999" in missing.stderr
    cloud = await _cli_async("dead-letters", "list", "--url", site, "--stage", "cloud")
    assert cloud.returncode == 0 and cloud.stdout == "", cloud.stdout + cloud.stderr


async def wait_until_async(js: Any, stream: str, messages: int, timeout: float = 15) -> None:
    """Until ``stream`` holds ``messages`` messages."""
    deadline = time.monotonic() + timeout
    while (await js.stream_info(stream)).state.messages < messages:
        if time.monotonic() > deadline:
            raise AssertionError(f"{stream} never held {messages} messages")
        await asyncio.sleep(0.05)
