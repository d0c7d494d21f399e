"""A stop ends the cloud link's wait for the cloud at once (edge_worker/cloudlink.py)."""

from __future__ import annotations

import asyncio

import pytest

from edge_worker.cloudlink import _unless_stopped


async def test_a_stop_cancels_the_work_and_says_so() -> None:
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(_unless_stopped(stop, hangs()), 5) is False
    assert cancelled.is_set()


async def test_work_that_ends_first_is_done_and_its_error_raised() -> None:
    stop = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)

    async def fails() -> None:
        raise RuntimeError("no responders")

    assert await _unless_stopped(stop, quick()) is True
    with pytest.raises(RuntimeError, match="no responders"):
        await _unless_stopped(stop, fails())
