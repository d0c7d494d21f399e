"""A cloud worker killed with unacked escalations loses none of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from pipeline.config import StreamSettings
from pipeline.messaging.natsio import ensure_site_streams
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import decode_result, encode
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until

pytestmark = pytest.mark.integration


def _cloud_process(url: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.main", "cloud", "--url", url],
        env={**os.environ, **{f"HYBRIDFLEET_CLOUD_{k.upper()}": v for k, v in env.items()}},
    )


async def test_killed_cloud_worker_loses_no_escalation(nats_server: NatsServer, nc: Client) -> None:
    frames = make_frames(30)
    js = nc.jetstream()
    answered: dict[str, int] = {}

    async def on_reply(msg: Msg) -> None:
        frame_id = decode_result(msg.data).frame_id
        answered[frame_id] = answered.get(frame_id, 0) + 1

    await nc.subscribe(REPLY_TO_TEST, cb=on_reply)
    # Both processes declare the same consumer, so they share its settings.
    common = {"ack_wait_s": "2", "fetch_batch": "10"}
    # The first worker takes a batch and sits on it far longer than ack_wait.
    first = _cloud_process(nats_server.url, inject_latency_ms="60000", **common)
    second: subprocess.Popen[bytes] | None = None
    try:
        await ensure_site_streams(js, "site1", StreamSettings())
        for frame, _ in frames:
            await js.publish(
                subjects.escalations("site1", frame.camera),
                encode(escalation_of(frame, REPLY_TO_TEST)),
                headers={"Nats-Msg-Id": frame.frame_id},
            )
        info = None

        async def refresh() -> None:
            nonlocal info
            info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)

        for _ in range(1000):  # the consumer appears once the worker has declared it
            with contextlib.suppress(NotFoundError):
                await refresh()
            if info is not None and info.num_ack_pending > 0:
                break
            await asyncio.sleep(0.02)
        assert info is not None and info.num_ack_pending > 0, "a batch is in the worker's hands"
        held = info.num_ack_pending
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert not answered, "the killed worker answered nothing"

        second = _cloud_process(nats_server.url, **common)
        await wait_until(lambda: len(answered) == len(frames), 60, "every escalation answered")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    assert set(answered) == {f.frame_id for f, _ in frames}
    await refresh()
    assert info is not None and info.num_ack_pending == 0 and info.num_pending == 0
    # The escalations the killed worker held were delivered a second time.
    assert info.delivered.consumer_seq >= len(frames) + held
