"""The pipeline end to end on a real nats-server: frames in, one final result each."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import decode_dead_letter, decode_result, encode
from schemas.messages import PrivacyClass, Reason, Source
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until
from tests.integration.feeds import SiteStream, collect

pytestmark = pytest.mark.integration


def _edge_settings(settings: Settings, **edge: object) -> Settings:
    return replace(settings, edge=replace(settings.edge, **edge))  # type: ignore[arg-type]


async def test_every_frame_gets_exactly_one_final_result(settings: Settings, nc: Client) -> None:
    # A threshold no edge answer reaches: every frame that may leave the site escalates.
    settings = _edge_settings(settings, default_threshold=1.0)
    frames = make_frames(120, deadline_ms=5_000)
    results = await collect(nc, subjects.results("site1"))
    replies = await collect(nc, subjects.replies("site1", "edge-1"))
    async with (
        CloudWorker.from_settings(settings) as cloud,
        EdgeWorker.from_settings(settings) as edge,
    ):
        for frame, _ in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(frames), 30, "a result per frame")
        await wait_until(
            lambda: edge.metrics.value("hybridfleet_edge_pending_escalations", site="site1") == 0,
            30,
            "the cloud's replies",
        )
    await nc.flush()
    await asyncio.sleep(0.2)  # a duplicate would have arrived by now

    by_id = {r.frame_id: r for r in results}
    assert len(results) == len(frames) == len(by_id), "exactly one final result per frame"
    truth = {f.frame_id: t for f, t in frames}
    for frame, _ in frames:
        result = by_id[frame.frame_id]
        assert result.camera == frame.camera and result.seq == frame.seq
        if frame.priority == 1:
            assert (result.source, result.reason) == (Source.EDGE, Reason.PRIORITY_LOCAL)
        elif result.reason is Reason.CONFIDENT:
            # float32 probabilities saturate: only a confidence of exactly 1.0 meets 1.0.
            assert result.confidence == 1.0 and result.source is Source.EDGE
        elif frame.privacy is PrivacyClass.LOCAL_ONLY:
            assert (result.source, result.reason) == (Source.EDGE, Reason.PRIVACY_LOCAL_ONLY)
        else:
            assert (result.source, result.reason) == (Source.CLOUD, Reason.CLOUD_ANSWER)
            assert result.model == cloud.analyser.name
            assert result.edge_labels is not None and len(result.edge_labels) == 1
            assert not result.degraded
    cloud_ids = {r.frame_id for r in results if r.source is Source.CLOUD}
    assert cloud_ids, "some frames must have been escalated"
    # Each cloud answer reached the edge on its reply subject, and its labels are final.
    assert {r.frame_id for r in replies} == cloud_ids
    reply_labels = {r.frame_id: r.labels for r in replies}
    assert all(by_id[f].labels == reply_labels[f] for f in cloud_ids)
    # The heavy model is right on (almost) all of the held-out digits it answered.
    right = sum(by_id[f].labels == truth[f] for f in cloud_ids)
    assert right >= 0.95 * len(cloud_ids)
    m = edge.metrics
    assert m.value("hybridfleet_edge_frames_received_total", site="site1") == len(frames)
    escalated = sum(
        m.value("hybridfleet_edge_escalations_total", site="site1", privacy=p)
        for p in ("crop", "full")
    )
    assert escalated == len(cloud_ids)
    assert cloud.metrics.value("hybridfleet_cloud_answers_total", site="site1") == len(cloud_ids)


async def test_request_reply_on_infer_subject(settings: Settings, nc: Client) -> None:
    ((frame, truth),) = make_frames(1, priority=1)
    async with EdgeWorker.from_settings(settings):
        reply = await nc.request(subjects.infer("site1"), encode(frame), timeout=10)
    result = decode_result(reply.data)
    assert result.frame_id == frame.frame_id
    assert result.reason is Reason.PRIORITY_LOCAL
    assert len(result.labels) == len(truth)


async def test_deadline_miss_gives_degraded_edge_answer_and_ignores_late_cloud(
    settings: Settings, nc: Client
) -> None:
    settings = _edge_settings(settings, default_threshold=1.0, cloud_round_trip_prior_ms=0.0)
    settings = replace(settings, cloud=replace(settings.cloud, inject_latency_ms=1500.0))
    frames = make_frames(6, deadline_ms=600, priority=2, privacy=PrivacyClass.CROP)
    results = await collect(nc, subjects.results("site1"))
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings) as edge:
        for frame, _ in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(frames), 20, "degraded results")
        late = "hybridfleet_edge_late_cloud_replies_total"
        await wait_until(
            lambda: edge.metrics.value(late, site="site1") >= len(frames), 20, "late replies"
        )
    assert len(results) == len(frames)
    for result in results:
        assert result.source is Source.EDGE
        assert result.reason is Reason.CLOUD_TIMEOUT
        assert result.degraded
        assert result.edge_labels == result.labels


async def test_two_cloud_workers_share_the_durable_consumer(settings: Settings, nc: Client) -> None:
    cloud = replace(settings.cloud, fetch_batch=4, inject_latency_ms=20.0)
    one = replace(settings, cloud=replace(cloud, worker_id="cloud-a"))
    two = replace(settings, cloud=replace(cloud, worker_id="cloud-b"))
    frames = make_frames(80)
    replies = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    async with CloudWorker.from_settings(one) as a, CloudWorker.from_settings(two) as b:
        for frame, _ in frames:
            await stream.store(escalation_of(frame, REPLY_TO_TEST))
        await wait_until(lambda: len(replies) >= len(frames), 30, "every escalation answered")
    answered = [w.metrics.value("hybridfleet_cloud_answers_total", site="site1") for w in (a, b)]
    assert sum(answered) == len(frames)
    assert min(answered) > 0, f"both workers must take a share, got {answered}"
    assert {r.frame_id for r in replies} == {f.frame_id for f, _ in frames}


async def test_bad_frames_go_to_dead_letters_and_the_workers_keep_working(
    settings: Settings, nc: Client
) -> None:
    (good, _), (other_site, _), (wrong_version, _) = make_frames(3, priority=1)
    bad_version = bytearray(encode(wrong_version))
    bad_version[bad_version.index(b"\xa1v") + 2] = 9  # the "v" field: 1 -> 9
    mismatched = encode(replace(other_site, site="site2"))
    results = await collect(nc, subjects.results("site1"))
    js = nc.jetstream()
    async with EdgeWorker.from_settings(settings) as edge:
        subject = subjects.frames("site1", "cam1")
        for data in (b"\x93not a frame", bytes(bad_version), mismatched, encode(good)):
            await nc.publish(subject, data)
        await wait_until(lambda: len(results) >= 1, 10, "the good frame's result")
        kinds = "hybridfleet_edge_dead_letters_total"
        await wait_until(
            lambda: edge.metrics.value(kinds, site="site1", kind="schema") >= 3, 10, "3 refusals"
        )
    assert [r.frame_id for r in results] == [good.frame_id]
    sub = await js.pull_subscribe(
        subjects.dead_letters("edge", "site1"), stream=subjects.site_dlq_stream("site1")
    )
    letters = [decode_dead_letter(m.data) for m in await sub.fetch(3, timeout=5)]
    reasons = [letter.reason for letter in letters]
    assert "not valid msgpack" in reasons[0]
    assert "schema version 9 is not supported" in reasons[1]
    assert "'site2' but this is site 'site1'" in reasons[2]
    assert letters[1].data == bytes(bad_version), "the original bytes are kept whole"
    assert all(letter.subject == subject and letter.stage == "edge" for letter in letters)


async def test_bad_escalation_is_dead_lettered_and_terminated(
    settings: Settings, nc: Client
) -> None:
    ((frame, _),) = make_frames(1)
    good = escalation_of(frame, REPLY_TO_TEST)
    hijack = escalation_of(replace(frame, frame_id="x-1"), "replies.site2.edge-1")
    replies = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    js = stream.js
    async with CloudWorker.from_settings(settings) as cloud:
        await stream.store_bytes(b"\xc1", "garbage")
        await stream.store_bytes(encode(hijack), "x-1")
        await stream.store_bytes(encode(good), frame.frame_id)
        await wait_until(lambda: len(replies) >= 1, 10, "the good escalation's answer")
        # The answer is stored before the ack is sent: give the ack its moment.
        for _ in range(50):
            info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
    assert [r.frame_id for r in replies] == [frame.frame_id]
    assert (
        cloud.metrics.value("hybridfleet_cloud_dead_letters_total", site="site1", kind="schema")
        == 2
    )
    # Terminated, not left to be redelivered: nothing is pending or awaiting an ack.
    assert info.num_ack_pending == 0 and info.num_pending == 0
    sub = await js.pull_subscribe(
        subjects.dead_letters("cloud", "site1"), stream=subjects.CLOUD_DLQ_STREAM
    )
    reasons = [decode_dead_letter(m.data).reason for m in await sub.fetch(2, timeout=5)]
    assert "not valid msgpack" in reasons[0]
    assert "not a reply subject of site 'site1'" in reasons[1]


@pytest.mark.parametrize("setting", ["answer", "drop"])
async def test_expired_escalations_follow_the_setting(
    settings: Settings, nc: Client, setting: str
) -> None:
    settings = replace(settings, cloud=replace(settings.cloud, expired_escalations=setting))
    (fresh, _), (stale, _) = make_frames(2)
    replies = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    js = stream.js
    async with CloudWorker.from_settings(settings) as cloud:
        for frame, deadline_s in ((stale, -1.0), (fresh, 60.0)):
            await stream.store(escalation_of(frame, REPLY_TO_TEST, deadline_s=deadline_s))
        await wait_until(lambda: fresh.frame_id in {r.frame_id for r in replies}, 10, "fresh")
        await asyncio.sleep(0.3)
        info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
    answered = {r.frame_id for r in replies}
    dropped = cloud.metrics.value("hybridfleet_cloud_expired_dropped_total")
    if setting == "answer":
        assert answered == {fresh.frame_id, stale.frame_id} and dropped == 0
    else:
        assert answered == {fresh.frame_id} and dropped == 1
    assert info.num_ack_pending == 0 and info.num_pending == 0, "both were acked"
