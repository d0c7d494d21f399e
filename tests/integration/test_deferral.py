"""Non-urgent escalations wait for a bigger batch; urgent ones never wait; none is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from pipeline.config import Settings
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until
from tests.integration.feeds import SiteStream, collect

pytestmark = pytest.mark.integration


def _deferring(settings: Settings, defer_batch: int, defer_max_s: float) -> Settings:
    cloud = replace(settings.cloud, defer_batch=defer_batch, defer_max_s=defer_max_s)
    return replace(settings, cloud=cloud)


async def test_non_urgent_escalations_wait_for_a_batch(settings: Settings, nc: Client) -> None:
    settings = _deferring(settings, defer_batch=8, defer_max_s=30.0)
    answers = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    frames = [f for f, _ in make_frames(9)]
    relaxed = [
        replace(escalation_of(f, REPLY_TO_TEST, deadline_s=1800), priority=3) for f in frames[:8]
    ]
    urgent = replace(escalation_of(frames[8], REPLY_TO_TEST, deadline_s=1800), priority=2)

    def answered() -> list[str]:
        return [answer.frame_id for answer in answers]

    async with CloudWorker.from_settings(settings) as cloud:
        for escalation in relaxed[:5]:
            await stream.store(escalation)
        await stream.store(urgent)
        await wait_until(lambda: urgent.frame_id in answered(), 10, "the urgent answer")
        await asyncio.sleep(1.0)  # several fetch rounds: the relaxed ones stay parked
        assert answered() == [urgent.frame_id], "non-urgent escalations waited for company"
        assert cloud.metrics.value("hybridfleet_cloud_deferred_escalations_total") == 5
        for escalation in relaxed[5:]:
            await stream.store(escalation)
        await wait_until(lambda: len(answers) == 9, 10, "the batch of 8")
        sizes = cloud.metrics.registry.get_sample_value("hybridfleet_cloud_batch_size_sum")
    assert set(answered()) == {e.frame_id for e in [*relaxed, urgent]}
    assert sizes == 9  # one batch of 1 (urgent), one of 8 (the deferred)


async def test_draining_answers_what_is_parked(settings: Settings, nc: Client) -> None:
    settings = _deferring(settings, defer_batch=100, defer_max_s=600.0)
    answers = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    frames = [f for f, _ in make_frames(3)]
    async with CloudWorker.from_settings(settings) as cloud:
        for frame in frames:
            await stream.store(
                replace(escalation_of(frame, REPLY_TO_TEST, deadline_s=1800), priority=3)
            )
        await wait_until(
            lambda: cloud.metrics.value("hybridfleet_cloud_deferred_escalations_total") == 3,
            10,
            "three parked",
        )
        assert answers == []
    # drain() answered them before it disconnected.
    await wait_until(lambda: len(answers) == 3, 10, "the parked answers")
