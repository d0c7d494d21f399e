"""What a camera (or anyone on the site) cannot do to an edge worker, on a real server.

A repeated frame id, in flight or finished, never gets a second final result and never
stops the worker; a frame captured far from the worker's clock is refused; an answer
to an escalation the site's edge never made is refused; a drain ends in bounded time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import decode_dead_letter, encode
from schemas.messages import DeadLetter, PrivacyClass, Reason, Source
from tests.helpers import escalation_of, make_frames, wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration

SITE = "site1"


def _with(settings: Settings, *, cloud_latency_ms: float = 0.0, **edge: object) -> Settings:
    settings = replace(settings, edge=replace(settings.edge, **edge))  # type: ignore[arg-type]
    return replace(settings, cloud=replace(settings.cloud, inject_latency_ms=cloud_latency_ms))


async def _dead_letters(nc: Client) -> list[DeadLetter]:
    seen: list[DeadLetter] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(decode_dead_letter(msg.data))

    await nc.subscribe(subjects.dead_letters("edge", SITE), cb=on_msg)
    return seen


async def _quiet(nc: Client) -> None:
    await nc.flush()
    await asyncio.sleep(0.3)  # a second result would have arrived by now


async def test_repeats_in_flight_under_a_slow_cloud(settings: Settings, nc: Client) -> None:
    """Back-to-back camera repeats and an infer retry of an escalated frame: one final."""
    settings = _with(
        settings, cloud_latency_ms=1500.0, default_threshold=1.0, cloud_round_trip_prior_ms=0.0
    )
    (frame, _), (other, _) = make_frames(
        2, deadline_ms=10_000, priority=2, privacy=PrivacyClass.CROP
    )
    results, letters = await collect(nc, subjects.results(SITE)), await _dead_letters(nc)
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings) as edge:
        data = encode(frame)
        first = asyncio.create_task(nc.request(subjects.infer(SITE), data, timeout=15))
        await wait_until(
            lambda: edge.metrics.value("hybridfleet_edge_pending_escalations", site=SITE) == 1,
            10,
            "the frame to be escalated",
        )
        # The camera sends the same frame twice more; a caller retries its request.
        await nc.publish(subjects.frames(SITE, frame.camera), data)
        await nc.publish(subjects.frames(SITE, frame.camera), data)
        retry = await nc.request(subjects.infer(SITE), data, timeout=15)
        answer = await first
        # The worker is still up and answers the next frame.
        await nc.publish(subjects.frames(SITE, other.camera), encode(other))
        await wait_until(lambda: len(results) >= 2, 15, "the other frame's result")
        await _quiet(nc)
        repeats = edge.metrics.value(
            "hybridfleet_edge_repeated_frames_total", site=SITE, state="in_flight"
        )
    finals = [r for r in results if r.frame_id == frame.frame_id]
    assert len(finals) == 1, "one final result on results.*, however often the id came"
    assert finals[0].source is Source.CLOUD and finals[0].reason is Reason.CLOUD_ANSWER
    assert answer.data == retry.data == encode(finals[0])
    assert repeats == 3
    # The two camera repeats had nobody to answer: each is a dead letter with the reason.
    assert len(letters) == 2
    assert all("repeated while in flight" in d.reason for d in letters)


async def test_repeats_of_finished_frames(settings: Settings, nc: Client) -> None:
    """A finished id: a requester gets the stored final, a camera repeat a dead letter."""
    (local, _), (escalated, _) = make_frames(2, deadline_ms=10_000)
    local = replace(local, priority=1)  # answered at the edge, never claimed
    escalated = replace(escalated, priority=2, threshold=1.0, privacy=PrivacyClass.CROP)
    results, letters = await collect(nc, subjects.results(SITE)), await _dead_letters(nc)
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings) as edge:
        for frame in (local, escalated):
            await nc.publish(subjects.frames(SITE, frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= 2, 15, "both final results")
        for frame in (local, escalated):
            await nc.publish(subjects.frames(SITE, frame.camera), encode(frame))
            again = await nc.request(subjects.infer(SITE), encode(frame), timeout=10)
            stored = next(r for r in results if r.frame_id == frame.frame_id)
            assert again.data == encode(stored)
        await wait_until(lambda: len(letters) >= 2, 10, "the camera repeats' dead letters")
        await _quiet(nc)
        finished = edge.metrics.value(
            "hybridfleet_edge_repeated_frames_total", site=SITE, state="finished"
        )
    assert sorted(r.frame_id for r in results) == sorted([local.frame_id, escalated.frame_id])
    assert {r.frame_id: r.source for r in results}[escalated.frame_id] is Source.CLOUD
    assert len(letters) == 2 and all("repeated while finished" in d.reason for d in letters)
    assert finished == 4


async def test_a_repeat_another_worker_answered_gets_that_answer(
    settings: Settings, nc: Client
) -> None:
    """Across the site's workers the claim decides; the loser answers with the winner's."""
    settings = _with(settings, default_threshold=1.0, cloud_round_trip_prior_ms=0.0)
    ((frame, _),) = make_frames(1, deadline_ms=10_000, priority=2, privacy=PrivacyClass.CROP)
    results = await collect(nc, subjects.results(SITE))
    second = replace(settings, edge=replace(settings.edge, worker_id="edge-2"))
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings):
        # Only edge-1 is up: it escalates the frame and publishes the cloud's answer.
        await nc.publish(subjects.frames(SITE, frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= 1, 15, "the frame's final result")
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(second):
        # A new worker never saw the id; a retry reaches it and loses the claim.
        reply = await nc.request(subjects.infer(SITE), encode(frame), timeout=20)
        await _quiet(nc)
    assert len(results) == 1
    assert reply.data == encode(results[0])


async def test_capture_times_far_from_the_clock_are_refused(settings: Settings, nc: Client) -> None:
    frames = make_frames(3, deadline_ms=1_000)
    letters = await _dead_letters(nc)
    results = await collect(nc, subjects.results(SITE))
    async with EdgeWorker.from_settings(settings):
        far = [
            replace(frames[0][0], captured_at=time.time() + 3600),
            replace(frames[1][0], captured_at=time.time() - 7200),
        ]
        for frame in far:
            await nc.publish(subjects.frames(SITE, frame.camera), encode(frame))
        good = frames[2][0]
        await nc.publish(subjects.frames(SITE, good.camera), encode(good))
        await wait_until(lambda: len(letters) >= 2 and len(results) >= 1, 10, "both outcomes")
        await _quiet(nc)
    assert [r.frame_id for r in results] == [good.frame_id]
    assert all("captured_at" in d.reason and "max_clock_skew_s" in d.reason for d in letters)


async def test_answers_to_forged_escalations_are_refused(settings: Settings, nc: Client) -> None:
    """An escalation the site's edge never made gets no final result, only a dead letter."""
    (forged, _), (real, _) = make_frames(2, deadline_ms=10_000)
    real = replace(real, priority=2, threshold=1.0, privacy=PrivacyClass.CROP)
    results, letters = await collect(nc, subjects.results(SITE)), await _dead_letters(nc)
    js = nc.jetstream()
    async with (
        CloudWorker.from_settings(settings) as cloud,
        EdgeWorker.from_settings(settings) as edge,
    ):
        escalation = escalation_of(forged, subjects.replies(SITE, "edge-1"))
        await js.publish(
            subjects.escalations(SITE, forged.camera),
            encode(escalation),
            headers={"Nats-Msg-Id": forged.frame_id, subjects.EDGE_TAG_HEADER: "0" * 32},
        )
        await nc.publish(subjects.frames(SITE, real.camera), encode(real))
        await wait_until(lambda: len(results) >= 1 and len(letters) >= 1, 15, "both outcomes")
        await wait_until(
            lambda: cloud.metrics.value("hybridfleet_cloud_answers_total", site=SITE) >= 2,
            10,
            "the cloud's answers",
        )
        await _quiet(nc)
        forged_letters = edge.metrics.value(
            "hybridfleet_edge_dead_letters_total", site=SITE, kind="forged"
        )
    assert [r.frame_id for r in results] == [real.frame_id]
    assert results[0].source is Source.CLOUD, "a real escalation's answer still counts"
    assert forged_letters == 1
    assert forged.frame_id in letters[0].reason and "never accepted" in letters[0].reason


async def test_drain_answers_far_deadlines_in_bounded_time(settings: Settings, nc: Client) -> None:
    """A cloud that takes a minute, a deadline an hour away: drain still ends soon."""
    settings = _with(
        settings, cloud_latency_ms=60_000.0, default_threshold=1.0, drain_timeout_s=1.0
    )
    ((frame, _),) = make_frames(1, deadline_ms=3_600_000, priority=2, privacy=PrivacyClass.CROP)
    results = await collect(nc, subjects.results(SITE))
    cloud, edge = CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings)
    await cloud.start()
    await edge.start()
    try:
        await nc.publish(subjects.frames(SITE, frame.camera), encode(frame))
        await wait_until(
            lambda: edge.metrics.value("hybridfleet_edge_pending_escalations", site=SITE) == 1,
            10,
            "the frame to wait for the cloud",
        )
        await asyncio.wait_for(edge.drain(), 20)
    finally:
        await edge.close()
        await cloud.close()  # unacked: the slow batch would be redelivered
    await _quiet(nc)
    assert len(results) == 1
    assert results[0].reason is Reason.CLOUD_TIMEOUT and results[0].degraded
