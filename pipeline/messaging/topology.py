"""A fleet's NATS servers on one machine: the cloud hub (1 or 3 nodes) and one leaf per site.

Each site server is a leaf node of the hub with a JetStream domain of its own, so its
streams live on the site and keep filling while the WAN link is down. The hub runs
domain ``hub``. Every port is on loopback. Used by ``hybridfleet fleet``, the fault
tests and the benchmarks. docs/topology.md explains the settings.
``ask_hub`` and ``wait_for_leaf`` tell whether a site's leaf link reaches the hub.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from pipeline.messaging.security import (
    HUB_DOMAIN,
    Credentials,
    TlsFiles,
    hub_authorization,
    site_authorization,
)
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.errors import HybridfleetError
from schemas.subjects import check_token

__all__ = ["HUB_DOMAIN", "Hub", "ask_hub", "free_port", "site_server", "wait_for_leaf"]

# How fast a site notices a dead WAN link that sent no TCP reset (default is 2 min).
SITE_PING_INTERVAL = "5s"


def free_port() -> int:
    """A loopback port that was free a moment ago (for leaf and cluster listeners)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Hub:
    """The cloud side: ``nodes`` nats-servers in one cluster, JetStream domain ``hub``.

    ``leaf_ports`` are where sites connect; with 3 nodes, streams can be R3 and one
    node can be killed without loss.
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 1,
        *,
        sync_always: bool = False,
        cloud: Credentials | None = None,
        leaves: Mapping[str, Credentials] | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        """With ``cloud`` and ``leaves`` (site -> credentials), clients and leaf links
        must log in and get only the permissions of pipeline.messaging.security. With ``tls``,
        clients and sites must speak TLS and the sites must show a certificate."""
        if nodes not in (1, 3):
            raise ValueError("a hub has 1 or 3 nodes")
        client_auth = "" if cloud is None else hub_authorization(cloud, leaves or {})
        self.leaf_ports = [free_port() for _ in range(nodes)]
        route_ports = [free_port() for _ in range(nodes)]
        self.servers: list[NatsServer] = []
        for i in range(nodes):
            extra = [
                "leafnodes {",
                f"  listen: 127.0.0.1:{self.leaf_ports[i]}",
                # Sites must use the address they were given (e.g. a test's WAN proxy),
                # not learn the hub's real ones.
                "  no_advertise: true",
                tls.block(verify=True) if tls else "",
                "}",
                client_auth,
            ]
            if nodes > 1:
                routes = ", ".join(
                    f"nats-route://127.0.0.1:{p}" for j, p in enumerate(route_ports) if j != i
                )
                extra += [
                    "cluster {",
                    "  name: hub",
                    f"  listen: 127.0.0.1:{route_ports[i]}",
                    f"  routes: [{routes}]",
                    "}",
                ]
            self.servers.append(
                NatsServer(
                    Path(workdir) / f"hub-{i + 1}",
                    name=f"hub-{i + 1}",
                    jetstream_domain=HUB_DOMAIN,
                    sync_always=sync_always,
                    tls=tls.block() if tls else "",
                    extra_config="\n".join(extra),
                )
            )

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node (give them all to a client for fail-over)."""
        return [s.url for s in self.servers]

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def site_server(
    workdir: Path,
    site: str,
    hub_leaf_urls: Sequence[str],
    *,
    sync_always: bool = True,
    users: Mapping[str, Credentials] | None = None,
    leaf: Credentials | None = None,
    tls: TlsFiles | None = None,
) -> NatsServer:
    """A site's own nats-server: a leaf of the hub, JetStream domain = the site name.

    ``users`` (role -> credentials) turns on per-role permissions for local clients;
    ``leaf`` is how the site logs in to the hub. ``tls`` turns on TLS for local
    clients and for the leaf link (its certificate is shown to the hub).
    """
    check_token(site, "site")
    if leaf is not None:
        hub_leaf_urls = [leaf.url(url) for url in hub_leaf_urls]
    remotes = ", ".join(f'"{url}"' for url in hub_leaf_urls)
    extra = "\n".join(
        [
            f'ping_interval: "{SITE_PING_INTERVAL}"',
            "leafnodes {",
            '  reconnect: "1s"',  # between attempts after the link drops
            f"  remotes: [ {{ urls: [{remotes}]",
            tls.block() if tls else "",
            "  } ]",
            "}",
            site_authorization(site, users) if users else "",
        ]
    )
    return NatsServer(
        Path(workdir) / f"site-{site}",
        name=f"site-{site}",
        jetstream_domain=site,
        sync_always=sync_always,
        tls=tls.block() if tls else "",
        extra_config=extra,
    )


async def ask_hub(nc: Client, timeout: float = 1.0) -> Exception | None:
    """Ask the hub's JetStream a question through the leaf link of ``nc``'s site server:
    None when the hub answered, else why not.

    The question is one a secure leaf link lets through (the edge asks it too): the
    ``REPLIES`` stream's info. "No such stream" (before a cloud worker made it) is an
    answer from the hub as well.
    """
    try:
        await nc.jetstream(domain=HUB_DOMAIN, timeout=timeout).stream_info(subjects.REPLIES_STREAM)
    except NotFoundError:
        return None
    except Exception as exc:
        return exc
    return None


async def wait_for_leaf(site_url: str, timeout: float = 30.0) -> None:
    """Wait until the hub's JetStream answers through the site's leaf link.

    ``site_url`` carries the credentials of a user who may ask (the site's operator).
    """
    nc = await nats.connect(site_url, name="hybridfleet-fleet", max_reconnect_attempts=0)
    try:
        deadline = time.monotonic() + timeout
        while (error := await ask_hub(nc)) is not None:
            if time.monotonic() > deadline:
                raise HybridfleetError(
                    f"the hub's JetStream does not answer through the site server: {error!r}"
                ) from error
            await asyncio.sleep(0.2)
    finally:
        await nc.close()
