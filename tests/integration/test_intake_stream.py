"""The stream intake (``edge.intake = "stream"``): what only a pulled, bounded stream gives.

* A worker whose event loop reads slower than the cameras send (raw 307 kB frames;
  here its reads are made to block the loop): with a subscription the backlog grows in
  the server's buffer for the worker until the server cuts it off and the backlog
  vanishes uncounted. Pulled from ``FRAMES_<site>``, the server sends only what the
  worker asked for, and the stream discards the oldest and counts them: published =
  final results + dropped, no cut-off, the stream within its bytes.
* Several workers of a site share the stream's consumer, and its discards are counted
  once between them.
* Frames published while no worker runs wait in the stream for the next one; a worker
  whose server restarts (and loses the memory stream) declares it again and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import encode
from schemas.jsonform import decode_frame_message
from schemas.limits import NATS_MAX_PAYLOAD
from schemas.messages import PrivacyClass
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect
from tests.integration.intake_helpers import dropped, publish_open_loop, server_cut_offs

pytestmark = pytest.mark.integration

BATCH, BATCH_S = 4, 0.05  # the model answers at most 80 frames/s
READ_S = 0.004  # each frame's read blocks the event loop: at most 250 frames/s read
CAPACITY = BATCH / BATCH_S
STREAM_BYTES = NATS_MAX_PAYLOAD  # the least allowed: about 54 raw frames


@pytest.fixture
def slow_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every frame's read blocks the worker's event loop for ``READ_S`` (time.sleep)."""

    def blocking(*args: Any, **kwargs: Any) -> Any:
        time.sleep(READ_S)
        return decode_frame_message(*args, **kwargs)

    monkeypatch.setattr("edge_worker.frames_in.decode_frame_message", blocking)


def _settings(settings: Settings, worker_id: str = "edge-1", **edge: Any) -> Settings:
    return replace(
        settings,
        edge=replace(
            settings.edge,
            worker_id=worker_id,
            intake="stream",
            intake_stream_bytes=STREAM_BYTES,
            queue_capacity=16,
            max_batch_size=BATCH,
            inject_latency_ms=BATCH_S * 1000,
            **edge,
        ),
    )


def _raw_frames(count: int, tag: str) -> list[tuple[str, bytes]]:
    """``count`` raw 640x480 grey frames (307 kB), answered at the edge."""
    made = make_frames(count, priority=3, privacy=PrivacyClass.LOCAL_ONLY, deadline_ms=10_000)
    return [
        (subjects.frames("site1", f.camera), encode(replace(f, frame_id=f"{tag}-{i}")))
        for i, (f, _) in enumerate(made)
    ]


@contextlib.asynccontextmanager
async def _stream_bytes(nc: Client) -> AsyncIterator[list[int]]:
    """Samples of FRAMES_site1's bytes every 50 ms while in the block."""
    samples: list[int] = []
    js = nc.jetstream()

    async def sample() -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(subjects.frames_stream("site1"))
                samples.append(info.state.bytes)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()


@pytest.mark.parametrize("overload", [2, 5])
async def test_a_reader_slower_than_the_cameras_loses_nothing_uncounted(
    settings: Settings, nc: Client, nats_server: NatsServer, slow_reader: None, overload: int
) -> None:
    rate, seconds = overload * CAPACITY, 1.5
    messages = _raw_frames(int(rate * seconds), f"raw-{overload}")
    results = await collect(nc, subjects.results("site1"))
    cut_offs = server_cut_offs(nats_server)
    async with EdgeWorker.from_settings(_settings(settings)) as edge:
        async with _stream_bytes(nc) as samples:
            took = await publish_open_loop(nats_server.url, messages, rate)

            def accounted() -> float:
                return len(results) + sum(dropped(edge).values())

            await wait_until(lambda: accounted() >= len(messages), 60, "every frame counted")
            await asyncio.sleep(0.5)  # a late or second result would arrive by now
        shed = edge.metrics.value("hybridfleet_edge_shed_frames_total", site="site1")
        lost = dropped(edge)
    print(
        f"\nstream intake, {overload}x capacity, raw 307 kB frames at {len(messages) / took:.0f}"
        f"/s, reads blocking {READ_S * 1000:.0f} ms: published {len(messages)}, results "
        f"{len(results)} (shed {shed:.0f}), dropped {lost}, stream at most "
        f"{max(samples, default=0) / 2**20:.1f} MiB"
    )
    assert len({r.frame_id for r in results}) == len(results), "one final result per frame"
    assert len(results) + sum(lost.values()) == len(messages), "every frame answered or counted"
    assert server_cut_offs(nats_server) == cut_offs, "the server cut no one off"
    assert samples and max(samples) <= STREAM_BYTES, "the stream stays within its bytes"
    assert lost["intake"] == 0
    if overload == 5:  # more than the reader can take in: the stream discarded some
        assert lost["site_stream"] > 0


async def test_workers_of_a_site_share_the_stream_and_count_its_discards_once(
    settings: Settings, nc: Client, nats_server: NatsServer, slow_reader: None
) -> None:
    rate, seconds = 5 * CAPACITY, 1.5
    messages = _raw_frames(int(rate * seconds), "shared")
    results = await collect(nc, subjects.results("site1"))
    async with (
        EdgeWorker.from_settings(_settings(settings, "edge-1")) as one,
        EdgeWorker.from_settings(_settings(settings, "edge-2")) as two,
    ):
        await publish_open_loop(nats_server.url, messages, rate)

        def accounted() -> float:
            return len(results) + sum(dropped(one, two).values())

        await wait_until(lambda: accounted() >= len(messages), 60, "every frame counted")
        await asyncio.sleep(0.5)
        lost = dropped(one, two)
        taken = [
            w.metrics.value("hybridfleet_edge_frames_received_total", site="site1")
            for w in (one, two)
        ]
        claimed = [
            w.metrics.value(
                "hybridfleet_edge_dropped_frames_total", site="site1", place="site_stream"
            )
            for w in (one, two)
        ]
    print(
        f"\ntwo workers, raw frames at 5x one's capacity: published {len(messages)}, results "
        f"{len(results)}, frames taken {taken}, discards counted {claimed}"
    )
    assert len({r.frame_id for r in results}) == len(results)
    assert len(results) + sum(lost.values()) == len(messages), "counted once, not twice"
    assert all(n > 0 for n in taken), "both workers pulled frames"
    assert lost["site_stream"] > 0


async def test_frames_wait_in_the_stream_while_no_worker_runs(
    settings: Settings, nc: Client
) -> None:
    frames = [f for f, _ in make_frames(20, priority=1, deadline_ms=10_000)]
    results = await collect(nc, subjects.results("site1"))
    async with EdgeWorker.from_settings(_settings(settings, "edge-1")):
        pass  # declares the stream, then drains and stops
    for frame in frames:  # no worker runs
        await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
    await nc.flush()
    async with EdgeWorker.from_settings(_settings(settings, "edge-2")) as edge:
        await wait_until(lambda: len(results) >= len(frames), 30, "the waiting frames' results")
        await asyncio.sleep(0.3)
        assert sum(dropped(edge).values()) == 0
    assert {r.frame_id for r in results} == {f.frame_id for f in frames}
    assert len(results) == len(frames)


async def test_the_worker_pulls_again_after_its_server_restarts(
    settings: Settings, nc: Client, nats_server: NatsServer
) -> None:
    before = [f for f, _ in make_frames(10, priority=1, seed=1, deadline_ms=10_000)]
    after = [f for f, _ in make_frames(10, priority=1, seed=2, deadline_ms=10_000)]
    after = [replace(f, frame_id=f"after-{f.frame_id}") for f in after]
    results = await collect(nc, subjects.results("site1"))
    js = nc.jetstream()
    async with EdgeWorker.from_settings(_settings(settings)) as edge:
        for frame in before:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(before), 30, "results before the restart")
        nats_server.stop()  # the memory stream and its consumer are gone with it
        nats_server.start()

        async def declared() -> bool:
            with contextlib.suppress(NotFoundError, Exception):
                info = await js.consumer_info(
                    subjects.frames_stream("site1"), subjects.FRAMES_CONSUMER
                )
                return info is not None
            return False

        deadline = time.monotonic() + 30
        while not await declared():
            assert time.monotonic() < deadline, "the worker declared its stream again"
            await asyncio.sleep(0.1)
        for frame in after:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(
            lambda: {f.frame_id for f in after} <= {r.frame_id for r in results},
            30,
            "results after the restart",
        )
        assert sum(dropped(edge).values()) == 0
