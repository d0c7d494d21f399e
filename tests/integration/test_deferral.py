"""Non-urgent escalations wait for a bigger batch; urgent ones never wait; none is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from pipeline.config import Settings
from pipeline.messaging.natsio import ensure_site_streams
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import Escalation
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until

pytestmark = pytest.mark.integration


async def test_non_urgent_escalations_wait_for_a_batch(settings: Settings, nc: Client) -> None:
    settings = replace(settings, cloud=replace(settings.cloud, defer_batch=8, defer_max_s=30.0))
    answered: list[str] = []

    async def on_answer(msg: Msg) -> None:
        answered.append(decode_result(msg.data).frame_id)

    await nc.subscribe(REPLY_TO_TEST, cb=on_answer)
    js = nc.jetstream()
    await ensure_site_streams(js, "site1", settings.stream)
    frames = [f for f, _ in make_frames(9)]
    relaxed = [
        replace(escalation_of(f, REPLY_TO_TEST, deadline_s=1800), priority=3) for f in frames[:8]
    ]
    urgent = replace(escalation_of(frames[8], REPLY_TO_TEST, deadline_s=1800), priority=2)

    async def store(escalation: Escalation) -> None:
        await js.publish(
            subjects.escalations("site1", "cam1"),
            encode(escalation),
            headers={"Nats-Msg-Id": escalation.frame_id},
        )

    async with CloudWorker.from_settings(settings) as cloud:
        for escalation in relaxed[:5]:
            await store(escalation)
        await store(urgent)
        await wait_until(lambda: urgent.frame_id in answered, 10, "the urgent answer")
        await asyncio.sleep(1.0)  # several fetch rounds: the relaxed ones stay parked
        assert answered == [urgent.frame_id], "non-urgent escalations waited for company"
        assert cloud.metrics.value("hybridfleet_cloud_deferred_escalations_total") == 5
        for escalation in relaxed[5:]:
            await store(escalation)
        await wait_until(lambda: len(answered) == 9, 10, "the batch of 8")
        sizes = cloud.metrics.registry.get_sample_value("hybridfleet_cloud_batch_size_sum")
    assert set(answered) == {e.frame_id for e in [*relaxed, urgent]}
    assert sizes == 9  # one batch of 1 (urgent), one of 8 (the deferred)


async def test_draining_answers_what_is_parked(settings: Settings, nc: Client) -> None:
    settings = replace(settings, cloud=replace(settings.cloud, defer_batch=100, defer_max_s=600.0))
    answered: list[str] = []

    async def on_answer(msg: Msg) -> None:
        answered.append(decode_result(msg.data).frame_id)

    await nc.subscribe(REPLY_TO_TEST, cb=on_answer)
    js = nc.jetstream()
    await ensure_site_streams(js, "site1", settings.stream)
    frames = [f for f, _ in make_frames(3)]
    async with CloudWorker.from_settings(settings) as cloud:
        for frame in frames:
            escalation = replace(escalation_of(frame, REPLY_TO_TEST, deadline_s=1800), priority=3)
            await js.publish(
                subjects.escalations("site1", "cam1"),
                encode(escalation),
                headers={"Nats-Msg-Id": frame.frame_id},
            )
        await wait_until(
            lambda: cloud.metrics.value("hybridfleet_cloud_deferred_escalations_total") == 3,
            10,
            "three parked",
        )
        assert answered == []
    # drain() answered them before it disconnected.
    await wait_until(lambda: len(answered) == 3, 10, "the parked answers")
