"""The embedded local stack: a nats-server, a cloud worker, an edge worker and the
camera simulator in one process, then a summary of what happened.

Everything it starts it stops, on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import nats

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.camera import CameraOptions, CameraSimulator
from pipeline.config import NatsSettings, Settings
from pipeline.natsserver import NatsServer
from pipeline.summary import ResultCollector, summarize

__all__ = ["StackOptions", "run_stack"]


@dataclass(frozen=True)
class StackOptions:
    """What the stack runs: the camera simulation and the workers' settings."""

    camera: CameraOptions = field(default_factory=CameraOptions)
    settings: Settings = field(default_factory=Settings)
    # How long to wait for final results after the last frame, beyond its deadline.
    settle_s: float = 5.0


async def _progress(
    out: TextIO,
    started: float,
    published: list[Any],
    collector: ResultCollector,
    edge: EdgeWorker,
    total: int,
) -> None:
    while True:
        await asyncio.sleep(1.0)
        escalated = sum(
            edge.metrics.value("hybridfleet_edge_escalations_total", site=edge.site, privacy=p)
            for p in ("crop", "full")
        )
        print(
            f"[{time.monotonic() - started:5.1f}s] published {len(published)}/{total}  "
            f"final results {len(collector.results)}  escalated {int(escalated)}  "
            f"queue {int(edge.metrics.value('hybridfleet_edge_queue_depth', site=edge.site))}",
            file=out,
            flush=True,
        )


async def run_stack(options: StackOptions, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the whole pipeline once on loopback and return the summary dict."""
    with tempfile.TemporaryDirectory(prefix="hybridfleet-stack-") as tmp:
        server = NatsServer(Path(tmp), name="site")
        await asyncio.to_thread(server.start)
        try:
            settings = replace(options.settings, nats=NatsSettings(url=server.url))
            settings = replace(settings, edge=replace(settings.edge, site=options.camera.site))
            return await _run(options, settings, progress)
        finally:
            await asyncio.to_thread(server.stop)


async def _run(
    options: StackOptions, settings: Settings, progress: TextIO | None
) -> dict[str, Any]:
    cloud = CloudWorker(settings)
    edge = EdgeWorker(settings)
    nc = await nats.connect(settings.nats.url, name="hybridfleet-stack")
    collector = ResultCollector()
    camera = CameraSimulator(options.camera)
    published: list[Any] = []
    started = time.monotonic()
    try:
        await cloud.start()
        await edge.start()
        await collector.start(nc, options.camera.site)
        async with asyncio.TaskGroup() as tasks:
            reporter = (
                tasks.create_task(
                    _progress(
                        progress, started, published, collector, edge, options.camera.total_frames
                    )
                )
                if progress is not None
                else None
            )
            await camera.run(nc, on_publish=published.append)
            # Every frame has a final result by its deadline; wait a little beyond it.
            await collector.wait_for(
                len(published), options.camera.deadline_ms / 1000 + options.settle_s
            )
            if reporter is not None:
                reporter.cancel()
        seconds = time.monotonic() - started
        await edge.drain()
        await cloud.drain()
        await nc.flush()
        await collector.stop()
    finally:
        await edge.close()
        await cloud.close()
        await nc.close()
    return summarize(
        published,
        collector,
        edge_model=edge.model,
        cloud_model=cloud.model,
        escalated_bytes=edge.metrics.value(
            "hybridfleet_edge_escalated_bytes_total", site=edge.site
        ),
        escalations=sum(
            edge.metrics.value("hybridfleet_edge_escalations_total", site=edge.site, privacy=p)
            for p in ("crop", "full")
        ),
        dead_letters=sum(
            edge.metrics.value("hybridfleet_edge_dead_letters_total", site=edge.site, kind=k)
            for k in ("schema", "model")
        ),
        seconds=seconds,
    )
