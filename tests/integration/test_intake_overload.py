"""Open-loop overload at the edge's intake: every published frame is accounted for.

Cameras far faster than the worker: the frames it cannot take in are dropped and
counted, with the place (``hybridfleet_edge_dropped_frames_total{place}``), never cut
off unseen by the server; the frames it takes in get one final result each (``shed``
when the queue is full). Published = final results + dropped, for both intakes
(``edge.intake``): ``stream`` drops in the site's bounded stream (``site_stream``),
``subscription`` in the worker's own buffer (``intake``). tests/integration/
test_intake_stream.py has the overloads only the stream survives (a worker whose event
loop is its bottleneck), several workers and restarts.
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
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import encode
from schemas.limits import NATS_MAX_PAYLOAD
from schemas.messages import Colour, Frame, PrivacyClass
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect
from tests.integration.intake_helpers import dropped, publish_open_loop, server_cut_offs

pytestmark = pytest.mark.integration

FRAMES = 300  # 640x480 grayscale: about 92 MB in one burst
INTAKES = ["stream", "subscription"]
PLACE = {"stream": "site_stream", "subscription": "intake"}


@pytest.mark.parametrize("intake", INTAKES)
async def test_a_burst_beyond_the_intake_is_dropped_and_counted(
    settings: Settings, nc: Client, nats_server: NatsServer, intake: str
) -> None:
    settings = replace(
        settings,
        edge=replace(
            settings.edge,
            intake=intake,
            intake_stream_bytes=NATS_MAX_PAYLOAD,  # about 54 frames
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
    cut_offs = server_cut_offs(nats_server)
    async with EdgeWorker.from_settings(settings) as edge:
        for subject, data in payloads:  # open loop: no waiting for results
            await nc.publish(subject, data)
        await nc.flush()

        def accounted() -> float:
            return len(results) + sum(dropped(edge).values())

        await wait_until(lambda: accounted() >= FRAMES, 60, "every frame counted")
        await asyncio.sleep(0.5)  # a late or second result would arrive by now
        shed = edge.metrics.value("hybridfleet_edge_shed_frames_total", site="site1")
        dead = edge.metrics.value(
            "hybridfleet_edge_dead_letters_total", site="site1", kind="schema"
        )
        lost, answered = dropped(edge), {r.frame_id for r in results}
    print(
        f"\n{intake} intake, burst: published {FRAMES}, results {len(results)} "
        f"(shed {shed:.0f}), dropped {lost}"
    )
    assert len(answered) == len(results), "one final result per frame"
    assert answered <= {f.frame_id for f in frames}
    assert len(results) + sum(lost.values()) == FRAMES, "every frame answered or counted"
    assert dead == 0
    # The burst is far beyond what a 10 ms reader and an 8 frames/s model take in:
    # both ways of coping ran, the drops where this intake drops.
    assert lost[PLACE[intake]] > 0 and shed > 0
    assert server_cut_offs(nats_server) == cut_offs, "the server cut no one off"


@pytest.mark.parametrize("overload", [2, 5])
@pytest.mark.parametrize("intake", INTAKES)
async def test_jpeg_frames_at_a_multiple_of_capacity_are_all_accounted_for(
    settings: Settings, nc: Client, nats_server: NatsServer, intake: str, overload: int
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
            intake=intake,
            intake_pending_bytes=4 << 20,
            queue_capacity=16,
            max_batch_size=batch,
            inject_latency_ms=latency_s * 1000,
        ),
    )
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
    messages = [(subjects.frames("site1", "cam1"), encode(f)) for f in frames]
    results = await collect(nc, subjects.results("site1"))
    cut_offs = server_cut_offs(nats_server)
    async with EdgeWorker.from_settings(settings) as edge:
        await publish_open_loop(nats_server.url, messages, rate)

        def accounted() -> float:
            return len(results) + sum(dropped(edge).values())

        await wait_until(lambda: accounted() >= count, 120, "every frame counted")
        await asyncio.sleep(0.5)  # a late or second result would arrive by now
        shed = edge.metrics.value("hybridfleet_edge_shed_frames_total", site="site1")
        lost, answered = dropped(edge), {r.frame_id for r in results}
    print(
        f"\n{intake} intake, {overload}x capacity ({rate:.0f} frames/s of 720p JPEG): "
        f"published {count}, results {len(results)} (shed {shed:.0f}), dropped {lost}"
    )
    assert len(answered) == len(results), "one final result per frame"
    assert answered <= {f.frame_id for f in frames}
    assert len(results) + sum(lost.values()) == count, "every frame answered or counted"
    assert shed + sum(lost.values()) > 0, "beyond capacity, the worker sheds or drops"
    assert server_cut_offs(nats_server) == cut_offs, "the server cut no one off"
