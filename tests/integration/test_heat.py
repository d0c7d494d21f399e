"""Heat and load: a hot edge leans on the cloud, sheds what may not leave, and recovers.

The edge worker runs the simulated thermal sensor; the test drives its reading with
``override_c`` (the hook the simulator offers) and waits for the status loop to see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from edge_worker.thermal import SimulatedThermal
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import encode
from schemas.messages import PrivacyClass, Reason
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration

N = 300
CHUNK = 40


async def test_hot_edge_offloads_more_sheds_local_only_and_recovers(
    settings: Settings, nc: Client
) -> None:
    edge = replace(
        settings.edge,
        thermal="simulated",
        heartbeat_interval_s=0.05,
        threshold_raise=0.095,  # 0.9 -> 0.995 at full pressure
        shadow_rate=0.0,
    )
    settings = replace(settings, edge=edge)
    results = await collect(nc, subjects.results("site1"))

    def reached(count: int) -> Callable[[], bool]:
        return lambda: len(results) >= count

    async def phase(seed: int) -> tuple[float, int]:
        """Escalated share of N leavable frames, and how many local-only ones were shed."""
        start = len(results)
        leavable = make_frames(N, seed=seed, deadline_ms=10_000, priority=2)
        local_only = make_frames(
            20, seed=seed + 100, deadline_ms=10_000, priority=3, privacy=PrivacyClass.LOCAL_ONLY
        )
        frames = leavable + local_only
        # In chunks: a burst of 300 kB frames would make the server cut the worker off
        # as a slow consumer (docs/reliability.md).
        for i in range(0, len(frames), CHUNK):
            for frame, _ in frames[i : i + CHUNK]:
                await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
            await wait_until(reached(start + min(i + CHUNK, len(frames))), 30, "every result")
        batch = results[start:]
        by_privacy = {r.frame_id: r for r in batch}
        escalated = sum(by_privacy[f.frame_id].reason is Reason.CLOUD_ANSWER for f, _ in leavable)
        shed = sum(by_privacy[f.frame_id].reason is Reason.SHED for f, _ in local_only)
        return escalated / N, shed

    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings) as worker:
        assert isinstance(worker.thermal, SimulatedThermal)
        cool_share, cool_shed = await phase(seed=1)

        worker.thermal.override_c = 90.0  # above critical_c (85): full pressure
        await wait_until(lambda: worker.pressure == 1.0, 10, "the worker to feel the heat")
        hot_share, hot_shed = await phase(seed=2)

        worker.thermal.override_c = 40.0  # well below hot_c - hysteresis
        await wait_until(lambda: worker.pressure == 0.0, 10, "the worker to cool down")
        recovered_share, recovered_shed = await phase(seed=3)

    assert cool_shed == 0 and recovered_shed == 0
    assert hot_shed == 20, "priority-3 frames that may not leave are shed first when hot"
    # The same kind of traffic: more goes to the cloud while hot, and less again after.
    assert hot_share > cool_share + 0.02
    assert recovered_share < hot_share - 0.02
