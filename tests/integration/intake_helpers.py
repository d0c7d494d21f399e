"""What the intake overload tests share: an open-loop publisher, drop counts, server cuts.

``publish_open_loop`` publishes from a thread of its own with a client of its own, so
its pace does not depend on the test's event loop, which the edge worker under test
shares and may keep busy (a worker whose event loop is its bottleneck).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Sequence

import nats

from edge_worker.worker import EdgeWorker
from pipeline.messaging.server import NatsServer

__all__ = ["PLACES", "dropped", "publish_open_loop", "server_cut_offs"]

PLACES = ("intake", "site_stream")


def dropped(*workers: EdgeWorker, site: str = "site1") -> dict[str, float]:
    """Frames the workers counted as dropped, by place, summed over the workers."""
    return {
        place: sum(
            w.metrics.value("hybridfleet_edge_dropped_frames_total", site=site, place=place)
            for w in workers
        )
        for place in PLACES
    }


def server_cut_offs(server: NatsServer) -> int:
    """How many clients the server cut off as slow consumers (its /varz)."""
    assert server.monitor_port is not None
    url = f"http://127.0.0.1:{server.monitor_port}/varz"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return int(json.loads(answer.read())["slow_consumers"])


def _publish(url: str, messages: Sequence[tuple[str, bytes]], rate: float) -> float:
    async def run() -> float:
        nc = await nats.connect(url, name="open-loop-camera")
        try:
            started = time.monotonic()
            for i, (subject, data) in enumerate(messages):
                await nc.publish(subject, data)
                ahead = started + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await nc.flush(timeout=30)
            return time.monotonic() - started
        finally:
            await nc.close()

    return asyncio.run(run())


async def publish_open_loop(url: str, messages: Sequence[tuple[str, bytes]], rate: float) -> float:
    """Publish ``messages`` evenly paced at ``rate`` a second, never waiting for results;
    the seconds it took."""
    return await asyncio.to_thread(_publish, url, messages, rate)
