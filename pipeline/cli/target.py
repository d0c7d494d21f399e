"""How a command finds and reaches a running server: ``--url``, ``--fleet DIR`` or the
settings.

Every command that talks to a running site or hub finds its server in one of three
ways: ``--url`` (credentials in it, ``nats://user:password@host:port``, when the server
has users); ``--fleet DIR``, the working directory of a ``fleet up``, which gives the
URL of a site's server (or the hub's) with a role's credentials; or else the
``[nats] url`` of the settings (``--config``, ``HYBRIDFLEET_NATS_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from nats.aio.client import Client

from pipeline.config import Settings, load_settings
from pipeline.fleet.auth import fleet_url
from pipeline.messaging.natsio import client_tls
from schemas.errors import HybridfleetError

__all__ = ["add_target_arguments", "connect_once", "safe_url", "target_url"]


def add_target_arguments(p: argparse.ArgumentParser, *, url_help: str, fleet_help: str) -> None:
    """``--config``, and either ``--url`` or ``--fleet DIR``."""
    p.add_argument("--config", help="TOML settings file (HYBRIDFLEET_* env vars override)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--url", help=url_help)
    where.add_argument("--fleet", type=Path, metavar="DIR", help=fleet_help)


def target_url(args: argparse.Namespace, site: str | None, role: str = "operator") -> str:
    """The URL to use: ``--url``, else ``site``'s server of ``--fleet`` (None: the hub)
    with ``role``'s credentials, else the settings'."""
    if args.url:
        return str(args.url)
    if args.fleet:
        return fleet_url(args.fleet, site, role)
    return load_settings(args.config).nats.url


def safe_url(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = []
    for one in url.split(","):
        split = urlsplit(one.strip())
        host = split.hostname or ""
        parts.append(
            f"{split.scheme}://{host}:{split.port}" if split.port else f"{split.scheme}://{host}"
        )
    return ",".join(parts)


async def connect_once(url: str, settings: Settings, name: str) -> Client:
    """One connection for a command a person waits on: no endless reconnecting."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = Client()
    timeout = settings.nats.connect_timeout_s
    try:
        await asyncio.wait_for(
            nc.connect(
                [u.strip() for u in url.split(",")],
                name=name,
                tls=client_tls(settings.nats),
                connect_timeout=int(max(1, timeout)),
                max_reconnect_attempts=0,
                allow_reconnect=False,
                error_cb=on_error,
            ),
            timeout,
        )
    except Exception as exc:
        await nc.close()
        cause = errors[-1] if errors else exc
        hint = ""
        if "authorization" in str(cause).lower():
            hint = (
                "; the server has users: pass --fleet DIR (a `fleet up` directory) or a "
                "--url with user:password"
            )
        within = f" within {timeout:g} s" if isinstance(exc, TimeoutError) else ""
        raise HybridfleetError(
            f"cannot connect to NATS at {safe_url(url)}{within} ({cause!r}){hint}"
        ) from None
    return nc
