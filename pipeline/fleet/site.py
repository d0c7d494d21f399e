"""One long-lived site in one process: ``hybridfleet site``.

A nats-server with JetStream (its store in a working directory, so escalations and
dead letters survive a restart), a cloud worker and an edge worker, started in that
order, until SIGTERM or Ctrl-C. Then the edge worker drains (it finishes its queued
frames and waits for its escalations' answers), the cloud worker finishes the batch in
hand, and the server stops. This is the single-server shape of ``hybridfleet stack``
without its time limit and camera, for running a site as a service; the manual
equivalent (three processes) is in docs/operations.md.

The server listens on loopback only. Cameras and tools on the same machine reach it
at the URL it prints; for cameras elsewhere run nats-server yourself with
``deploy/nats-site.conf`` and ``hybridfleet edge`` / ``cloud`` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from pipeline.config import Settings
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.errors import ConfigError
from schemas.subjects import check_token

__all__ = ["DEFAULT_SITE_WORKDIR", "SiteOptions", "run_site", "site_settings"]

DEFAULT_SITE_WORKDIR = Path(".hybridfleet-site")


@dataclass(frozen=True)
class SiteOptions:
    """What ``hybridfleet site`` runs. ``port`` 0 lets the OS pick a free port."""

    site: str = "site1"
    port: int = 4222
    workdir: Path = DEFAULT_SITE_WORKDIR
    settings: Settings = field(default_factory=Settings)
    edge_metrics_port: int | None = None
    cloud_metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"

    def __post_init__(self) -> None:
        check_token(self.site, "site")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535 (0: any free port), got {self.port}")


def site_settings(settings: Settings, site: str, url: str) -> tuple[Settings, Settings]:
    """The edge's and the cloud's settings for one server that holds everything.

    Whatever the file says, both workers connect to ``url``, the edge serves ``site``
    and finds the cloud's streams on its own server (no JetStream domain), and the
    cloud sources only ``site``'s escalation stream, on that same server.
    """
    nats = replace(settings.nats, url=url)
    edge = replace(settings, nats=nats, edge=replace(settings.edge, site=site, cloud_domain=""))
    cloud = replace(
        settings, nats=nats, cloud=replace(settings.cloud, sites=site, sites_are_domains=False)
    )
    return edge, cloud


def _serve_metrics(port: int | None, addr: str, worker: Any) -> None:
    if port is not None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=addr, registry=worker.metrics.registry)


async def _server_gone(server: NatsServer) -> None:
    # The process is NatsServer's own; polling it is all its interface offers.
    while server.running:  # noqa: ASYNC110
        await asyncio.sleep(0.5)


async def run_site(options: SiteOptions, stop: asyncio.Event, out: TextIO = sys.stdout) -> int:
    """Run the site until ``stop`` is set (0) or a worker or the server fails (1)."""

    def say(line: str) -> None:
        print(f"[site] {line}", file=out, flush=True)

    server = NatsServer(
        await asyncio.to_thread(Path(options.workdir).resolve),
        name=f"site-{options.site}",
        port=options.port or None,
        sync_always=True,
    )
    await asyncio.to_thread(server.start)
    try:
        say(
            f"nats-server listening on {server.url} (pid {server.pid}), monitoring "
            f"http://127.0.0.1:{server.monitor_port}, JetStream store {server.store_dir}"
        )
        return await _run_workers(options, server, stop, say)
    finally:
        await asyncio.to_thread(server.stop)
        say("nats-server stopped")


async def _run_workers(
    options: SiteOptions, server: NatsServer, stop: asyncio.Event, say: Callable[[str], None]
) -> int:
    from cloud_worker.worker import CloudWorker
    from edge_worker.worker import EdgeWorker

    site = options.site
    edge_settings, cloud_settings = site_settings(options.settings, site, server.url)
    cloud = CloudWorker.from_settings(cloud_settings)
    edge = EdgeWorker.from_settings(edge_settings)
    try:
        await cloud.start()
        _serve_metrics(options.cloud_metrics_port, options.metrics_addr, cloud)
        say(f"cloud worker {cloud_settings.cloud.worker_id} ready ({_model(cloud)})")
        await edge.start()
        _serve_metrics(options.edge_metrics_port, options.metrics_addr, edge)
        say(f"edge worker {edge_settings.edge.worker_id} of site {site} ready ({_model(edge)})")
        say(f"frames in: {subjects.frames(site)} (publish), {subjects.infer(site)} (request)")
        say(f"results: {subjects.results(site)}; health: {subjects.health(site)}")
        say(
            f"dead letters: {subjects.dead_letters('edge', site)} "
            f"(stream {subjects.site_dlq_stream(site)}), {subjects.dead_letters('cloud', site)} "
            f"(stream {subjects.CLOUD_DLQ_STREAM})"
        )
        say("ready; Ctrl-C or SIGTERM stops it (the edge worker drains first)")
        watched = {
            asyncio.create_task(edge.wait(), name="edge"): "edge worker",
            asyncio.create_task(cloud.wait(), name="cloud"): "cloud worker",
            asyncio.create_task(_server_gone(server), name="server"): "nats-server",
        }
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({stopper, *watched}, return_when=asyncio.FIRST_COMPLETED)
            if stopper not in done:
                ended = next(task for task in watched if task in done)
                error = None if ended.cancelled() else ended.exception()
                say(f"the {watched[ended]} stopped ({error!r}); stopping the site")
                return 1
            say("stopping: the edge worker drains")
            await edge.drain()
            say("edge worker stopped; the cloud worker finishes its batch")
            await cloud.drain()
            say("cloud worker stopped")
            return 0
        finally:
            # Only now: cancelling a task that waits on a worker cancels the worker too.
            for task in (stopper, *watched):
                task.cancel()
    finally:
        await edge.close()
        await cloud.close()


def _model(worker: Any) -> str:
    return f"{worker.analyser.name} {worker.analyser.version}"
