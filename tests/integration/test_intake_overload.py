"""Open-loop overload at the edge's intake: every published frame is accounted for.

A camera far faster than the worker can read: the worker's intake buffer
(``edge.intake_pending_bytes``) fills, and the frames it cannot read are dropped there
and counted, never cut off unseen by the server; the frames it reads get one final
result each (``shed`` when the queue is full). Published = final results + dropped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from nats.aio.client import Client

from edge_worker.worker import EdgeWorker
from pipeline.camera.sources.photos import photo_frames
from pipeline.config import Settings
from pipeline.inference.images import encode_jpeg
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Colour, Frame, PrivacyClass
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration

FRAMES = 300  # 640x480 grayscale: about 92 MB in one burst


async def test_a_burst_beyond_the_intake_is_dropped_and_counted(
    settings: Settings, nc: Client
) -> None:
    settings = replace(
        settings,
        edge=replace(
            settings.edge,
            intake_pending_bytes=1 << 20,  # a few frames
            queue_capacity=4,
            max_batch_size=4,
            inject_latency_ms=500.0,  # a slow model: the queue sheds too
            inject_intake_latency_ms=10.0,  # and a slow reader: the intake fills
        ),
    )
    frames = [f for f, _ in make_frames(FRAMES, priority=3, privacy=PrivacyClass.LOCAL_ONLY)]
    payloads = [(subjects.frames("site1", f.camera), encode(f)) for f in frames]
    results = await collect(nc, subjects.results("site1"))
    async with EdgeWorker.from_settings(settings) as edge:
        for subject, data in payloads:  # open loop: no waiting for results
            await nc.publish(subject, data)
        await nc.flush()

        def dropped() -> float:
            return edge.metrics.value(
                "hybridfleet_edge_dropped_frames_total", site="site1", place="intake"
            )

        await wait_until(lambda: len(results) + dropped() >= FRAMES, 60, "every frame counted")
        await asyncio.sleep(0.5)  # a late or second result would arrive by now
        shed = edge.metrics.value("hybridfleet_edge_shed_frames_total", site="site1")
        dead = edge.metrics.value(
            "hybridfleet_edge_dead_letters_total", site="site1", kind="schema"
        )
        lost, answered = dropped(), {r.frame_id for r in results}
    print(
        f"\nintake overload: published {FRAMES}, results {len(results)} "
        f"(shed {shed:.0f}), dropped at intake {lost:.0f}"
    )
    assert len(answered) == len(results), "one final result per frame"
    assert answered <= {f.frame_id for f in frames}
    assert len(results) + lost == FRAMES, "every published frame is answered or counted"
    assert dead == 0
    # The burst is far beyond what a 10 ms reader and an 8 frames/s model take in:
    # both ways of coping ran.
    assert lost > 0 and shed > 0


@pytest.mark.parametrize("overload", [2, 5])
async def test_jpeg_frames_at_a_multiple_of_capacity_are_all_accounted_for(
    settings: Settings, nc: Client, overload: int
) -> None:
    """720p colour JPEG frames, paced at ``overload`` times what the worker can answer.

    The worker answers at most ``max_batch_size`` frames per ``inject_latency_ms``
    (its model is slowed down to that), so the rate is at least ``overload`` times its
    capacity whatever the machine. Every published frame is answered (possibly
    ``shed``) or counted as dropped, with its place.
    """
    batch, latency_s = 4, 0.05
    capacity = batch / latency_s  # frames/s, an upper bound
    rate, seconds = overload * capacity, 1.5
    settings = replace(
        settings,
        edge=replace(
            settings.edge,
            intake_pending_bytes=4 << 20,
            queue_capacity=16,
            max_batch_size=batch,
            inject_latency_ms=latency_s * 1000,
        ),
    )
    # 720p, not more: a test machine's event loop must keep reading the socket, or the
    # server cuts the worker off and frames vanish uncounted (docs/reliability.md).
    pictures = photo_frames(4, 1280, 720)
    jpegs = [encode_jpeg(p, 80) for p in pictures]
    count = int(rate * seconds)
    frames = [
        Frame(
            frame_id=f"overload-{overload}-{i}",
            site="site1",
            camera="cam1",
            seq=i,
            captured_at=time.time(),
            image=jpegs[i % len(jpegs)],
            colour=Colour.RGB,
            priority=3,
            deadline_ms=10_000,
            privacy=PrivacyClass.LOCAL_ONLY,
        )
        for i in range(count)
    ]
    results = await collect(nc, subjects.results("site1"))
    async with EdgeWorker.from_settings(settings) as edge:
        started = time.monotonic()
        for i, frame in enumerate(frames):  # open loop, paced: never waits for results
            await nc.publish(subjects.frames("site1", "cam1"), encode(frame))
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await nc.flush()

        def dropped() -> float:
            return edge.metrics.value(
                "hybridfleet_edge_dropped_frames_total", site="site1", place="intake"
            )

        await wait_until(lambda: len(results) + dropped() >= count, 120, "every frame counted")
        await asyncio.sleep(0.5)  # a late or second result would arrive by now
        shed = edge.metrics.value("hybridfleet_edge_shed_frames_total", site="site1")
        lost, answered = dropped(), {r.frame_id for r in results}
    print(
        f"\n{overload}x capacity ({rate:.0f} frames/s of 720p JPEG): published {count}, "
        f"results {len(results)} (shed {shed:.0f}), dropped at intake {lost:.0f}"
    )
    assert len(answered) == len(results), "one final result per frame"
    assert answered <= {f.frame_id for f in frames}
    assert len(results) + lost == count, "every published frame is answered or counted"
    assert shed + lost > 0, "beyond capacity, the worker sheds or drops"
