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


@pytest.fixture(scope="session")
def ppocr_manifest() -> Path:
    """The PP-OCR manifest (models/ppocr) with its model files in place: built from
    their pinned wheels if they are missing (``HYBRIDFLEET_PPOCR_BUILD=0``: skip)."""
    import os

    from models.ppocr import build as ppocr

    if ppocr.ready():
        return ppocr.MANIFEST
    missing = f"the PP-OCR model files are not built ({ppocr.FILES} is missing or incomplete)"
    if os.environ.get("HYBRIDFLEET_PPOCR_BUILD", "1") == "0":
        pytest.skip(f"{missing}; HYBRIDFLEET_PPOCR_BUILD=0: run `python -m models.ppocr.build`")
    try:
        ppocr.build()
    except ppocr.BuildError as e:
        pytest.skip(f"{missing} and `python -m models.ppocr.build` failed: {e}")
    return ppocr.MANIFEST
