"""Fixtures shared by all tests: real nats-server processes on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from pipeline.config import NatsSettings, Settings
from pipeline.messaging.server import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream in a temp dir, on a port the OS picked."""
    server = NatsServer(tmp_path / "nats", name="test")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(nats_server: NatsServer) -> Settings:
    """Default settings pointed at the test's server."""
    return replace(Settings(), nats=NatsSettings(url=nats_server.url))


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A plain client for the test itself (publishing frames, listening to results)."""
    client = await nats.connect(nats_server.url, name="test")
    try:
        yield client
    finally:
        await client.close()
