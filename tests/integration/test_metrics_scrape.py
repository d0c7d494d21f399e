"""Scrape a running edge worker's Prometheus endpoint: the counters match what was sent."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import encode
from tests.helpers import make_frames, wait_until

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_scraped_counters_match_what_was_sent(settings: Settings, nc: Client) -> None:
    frames = make_frames(40, deadline_ms=5_000, priority=1)  # all answered at the edge
    results = 0

    async def on_result(msg: Msg) -> None:
        nonlocal results
        results += 1

    await nc.subscribe(subjects.results("site1"), cb=on_result)
    port = _free_port()
    async with EdgeWorker.from_settings(settings) as worker:
        server, thread = start_http_server(port, addr="127.0.0.1", registry=worker.metrics.registry)
        try:
            sent = 0
            for frame, _ in frames:
                data = encode(frame)
                sent += len(data)
                await nc.publish(subjects.frames("site1", frame.camera), data)
            await nc.publish(subjects.frames("site1", "cam1"), b"not msgpack")
            await wait_until(lambda: results >= len(frames), 20, "a result per frame")
            await asyncio.sleep(0.1)
            metrics = await asyncio.to_thread(_scrape, port)
        finally:
            server.shutdown()
            thread.join()
    site = (("site", "site1"),)
    assert metrics[("hybridfleet_edge_frames_received_total", site)] == len(frames) + 1
    assert metrics[("hybridfleet_edge_received_bytes_total", site)] == sent + len(b"not msgpack")
    decisions = (("reason", "priority_local"), ("site", "site1"))
    assert metrics[("hybridfleet_edge_decisions_total", decisions)] == len(frames)
    letters = (("kind", "schema"), ("site", "site1"))
    assert metrics[("hybridfleet_edge_dead_letters_total", letters)] == 1
    assert metrics[("hybridfleet_edge_batch_size_count", site)] >= 1
    assert metrics[("hybridfleet_edge_batch_size_sum", site)] == len(frames)
    info = next(k for k in metrics if k[0] == "hybridfleet_edge_model_info")
    assert ("version", worker.analyser.version) in info[1]
