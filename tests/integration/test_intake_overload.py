"""Open-loop overload at the edge's intake: every published frame is accounted for.

A camera far faster than the worker can read: the worker's intake buffer
(``edge.intake_pending_bytes``) fills, and the frames it cannot read are dropped there
and counted, never cut off unseen by the server; the frames it reads get one final
result each (``shed`` when the queue is full). Published = final results + dropped.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.aio.client import Client

from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import encode
from schemas.messages import PrivacyClass
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
