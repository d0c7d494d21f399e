"""Fixtures for fault tests: a whole fleet per test, stopped by pid afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

# The promise checks assert in a helper module: let pytest show their values.
pytest.register_assert_rewrite("tests.faults.ledger")

from tests.faults.harness import Fleet  # noqa: E402 - after the rewrite hook


@asynccontextmanager
async def _running(workdir: Path, hub_nodes: int) -> AsyncIterator[Fleet]:
    fleet = Fleet(workdir, hub_nodes=hub_nodes)
    await fleet.start()
    try:
        yield fleet
    finally:
        await fleet.stop()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with _running(tmp_path, hub_nodes=1) as fleet:
        yield fleet


@pytest.fixture
async def cluster_fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """A fleet whose hub is a cluster of three nodes."""
    async with _running(tmp_path, hub_nodes=3) as fleet:
        yield fleet
