"""The embedded local stack: a nats-server, a cloud worker, an edge worker and the
camera simulator (or video cameras, pipeline/demo/video.py) in one process, then a
summary of what happened.

Everything it starts it stops, on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import nats
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.camera.sources.cameras import run_cameras
from pipeline.camera.sources.config import VideoCamera
from pipeline.config import Settings
from pipeline.demo.summary import ResultCollector, summarize
from pipeline.demo.video import summarize_video
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN, Hub, site_server, wait_for_leaf
from pipeline.messaging.wanproxy import WanProxy

__all__ = ["StackOptions", "run_stack"]


@dataclass(frozen=True)
class StackOptions:
    """What the stack runs: the camera simulation and the workers' settings."""

    camera: CameraOptions = field(default_factory=CameraOptions)
    settings: Settings = field(default_factory=Settings)
    # How long to wait for final results after the last frame, beyond its deadline.
    settle_s: float = 5.0
    # None: one server. A number: the site is a leaf of a hub, behind a WAN proxy that
    # adds this many milliseconds each way.
    wan_delay_ms: float | None = None
    # Put every end-to-end latency into the summary (for plots).
    keep_latencies: bool = False
    # Video cameras instead of the simulator (their site is the simulator's).
    video: tuple[VideoCamera, ...] = ()
    # Video runs: put the final results themselves into the summary (``results``), for a
    # caller that scores them against ground truth.
    keep_results: bool = False


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
            for p in ("embedding", "crop", "full")
        )
        print(
            f"[{time.monotonic() - started:5.1f}s] published {len(published)}/{total}  "
            f"final results {len(collector.results)}  escalated {int(escalated)}  "
            f"queue {int(edge.metrics.value('hybridfleet_edge_queue_depth', site=edge.site))}",
            file=out,
            flush=True,
        )


async def run_stack(options: StackOptions, progress: TextIO | None = sys.stderr) -> dict[str, Any]:
    """Run the whole pipeline once on loopback and return the summary dict.

    With ``options.wan_delay_ms`` set, the site runs its own server as a leaf node of a
    hub, through a WAN proxy adding that delay each way; otherwise one server.
    """
    site = options.camera.site
    with tempfile.TemporaryDirectory(prefix="hybridfleet-stack-") as tmp:
        servers: list[NatsServer] = []
        proxy: WanProxy | None = None
        try:
            if options.wan_delay_ms is None:
                server = NatsServer(Path(tmp), name="site")
                servers.append(server)
                await asyncio.to_thread(server.start)
                edge_url = cloud_url = server.url
                cloud_domain, sites_are_domains = "", False
            else:
                hub = Hub(Path(tmp))
                servers.extend(hub.servers)
                await asyncio.to_thread(hub.start)
                proxy = WanProxy(hub.leaf_ports[0], delay_s=options.wan_delay_ms / 1000)
                await proxy.start()
                server = site_server(Path(tmp), site, [proxy.url])
                servers.append(server)
                await asyncio.to_thread(server.start)
                await wait_for_leaf(server.url, 20.0)
                edge_url, cloud_url = server.url, hub.urls[0]
                cloud_domain, sites_are_domains = HUB_DOMAIN, True
            base = options.settings
            edge_settings = replace(
                base,
                nats=replace(base.nats, url=edge_url),
                edge=replace(base.edge, site=site, cloud_domain=cloud_domain),
            )
            cloud_settings = replace(
                base,
                nats=replace(base.nats, url=cloud_url),
                cloud=replace(base.cloud, sites=site, sites_are_domains=sites_are_domains),
            )
            return await _run(options, edge_settings, cloud_settings, progress)
        finally:
            for srv in servers:
                await asyncio.to_thread(srv.stop)
            if proxy is not None:
                await proxy.close()


@contextlib.asynccontextmanager
async def _running(
    cloud: CloudWorker, edge: EdgeWorker, site: str
) -> AsyncIterator[tuple[Client, ResultCollector]]:
    """Both workers started and a collector of the site's final results; on leaving,
    the workers drain (or, on an error, close)."""
    nc = await nats.connect(edge.settings.nats.url, name="hybridfleet-stack")
    collector = ResultCollector()
    try:
        await cloud.start()
        await edge.start()
        await collector.start(nc, site)
        yield nc, collector
        await edge.drain()
        await cloud.drain()
        await nc.flush()
        await collector.stop()
    finally:
        await edge.close()
        await cloud.close()
        await nc.close()


async def _run(
    options: StackOptions,
    edge_settings: Settings,
    cloud_settings: Settings,
    progress: TextIO | None,
) -> dict[str, Any]:
    cloud = CloudWorker.from_settings(cloud_settings)
    edge = EdgeWorker.from_settings(edge_settings)
    if options.video:
        return await _run_video(options, cloud, edge)
    camera = CameraSimulator(options.camera)
    published: list[Any] = []
    started = time.monotonic()
    async with _running(cloud, edge, options.camera.site) as (nc, collector):
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
    return summarize(
        published,
        collector,
        edge_model=edge.analyser,
        cloud_model=cloud.analyser,
        escalated_bytes=edge.metrics.value(
            "hybridfleet_edge_escalated_bytes_total", site=edge.site
        ),
        escalations=sum(
            edge.metrics.value("hybridfleet_edge_escalations_total", site=edge.site, privacy=p)
            for p in ("embedding", "crop", "full")
        ),
        dead_letters=sum(
            edge.metrics.value("hybridfleet_edge_dead_letters_total", site=edge.site, kind=k)
            for k in ("schema", "model")
        ),
        seconds=seconds,
        answer_bytes=edge.metrics.value("hybridfleet_edge_answer_bytes_total", site=edge.site),
        keep_latencies=options.keep_latencies,
    )


async def _run_video(options: StackOptions, cloud: CloudWorker, edge: EdgeWorker) -> dict[str, Any]:
    """The stack on ``options.video``'s cameras until their sources end."""
    site = options.camera.site
    started = time.monotonic()
    async with _running(cloud, edge, site) as (nc, collector):
        counts = await run_cameras(nc, options.video, site)
        deadline_s = max(c.deadline_ms for c in options.video) / 1000
        await collector.wait_for(counts.published, deadline_s + options.settle_s)
        seconds = time.monotonic() - started

    def edge_total(name: str, **labels: str) -> float:
        return edge.metrics.value(name, site=edge.site, **labels)

    return summarize_video(
        counts,
        collector,
        models={
            "edge": f"{edge.analyser.name} {edge.analyser.version}",
            "cloud": f"{cloud.analyser.name} {cloud.analyser.version}",
        },
        frame_bytes=int(edge_total("hybridfleet_edge_received_bytes_total")),
        escalations=int(
            sum(
                edge_total("hybridfleet_edge_escalations_total", privacy=p)
                for p in ("embedding", "crop", "full")
            )
        ),
        escalated_bytes=edge_total("hybridfleet_edge_escalated_bytes_total"),
        crops=int(edge_total("hybridfleet_edge_escalated_crops_total")),
        tracked_lines=_tracked_lines(edge),
        cloud_spend_usd=edge_total("hybridfleet_edge_cloud_spend_usd_total"),
        keep_results=options.keep_results,
        dead_letters=sum(
            edge_total("hybridfleet_edge_dead_letters_total", kind=k) for k in ("schema", "model")
        ),
        seconds=seconds,
    )


def _tracked_lines(edge: EdgeWorker) -> dict[str, int]:
    """What the tracks decided for the lines the edge was unsure of, by action (and
    reason, for asks): ``ask:new``, ``reuse``, ``wait``, ``untracked`` ..."""
    counts: dict[str, int] = {}
    for metric in edge.metrics.registry.collect():
        if metric.name != "hybridfleet_edge_tracked_lines":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                action, reason = sample.labels["action"], sample.labels["reason"]
                counts[f"{action}:{reason}" if reason else action] = int(sample.value)
    return counts
