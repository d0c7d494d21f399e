"""Workers fed garbage over NATS stay up and dead-letter each rejected message."""

from __future__ import annotations

import random
import time

import msgpack
import pytest
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from edge_worker.intake import check_frame
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from pipeline.metrics import WorkerMetrics
from schemas import subjects
from schemas.codec import decode_escalation, decode_frame, encode
from schemas.errors import SchemaError
from schemas.messages import InferenceResult
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until
from tests.integration.feeds import SiteStream, collect

pytestmark = pytest.mark.integration

COUNT = 300
CHUNK = 50  # frames of 307 kB: 15 MB, within the edge's intake buffer


def _mutants(valid: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Byte flips, truncations, splices and re-packed maps with a field changed."""
    fields = msgpack.unpackb(valid)
    out = []
    for _ in range(count):
        kind = rng.randrange(4)
        data = bytearray(valid)
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data = data[: rng.randrange(len(data))]
        elif kind == 2:
            data[rng.randrange(len(data)) :] = rng.randbytes(rng.randint(0, 64))
        else:
            changed = dict(fields)
            key = rng.choice(sorted(changed))
            changed[key] = rng.choice(
                [None, -1, 2**63, 1.5, float("nan"), "x", "a.b", b"\x00", [], {}, True]
            )
            data = bytearray(msgpack.packb(changed))
        out.append(bytes(data))
    return out


def _frame_is_valid(data: bytes) -> bool:
    """What the edge accepts: the codec's rules and the worker's own (edge_worker/intake.py)."""
    try:
        check_frame(decode_frame(data), "frames.site1.cam1", "site1", time.time(), 300.0)
    except SchemaError:
        return False
    return True


def _ids(results: list[InferenceResult]) -> set[str]:
    return {result.frame_id for result in results}


async def _dead_letters(metrics: WorkerMetrics, kind: str, count: int, timeout: float) -> None:
    """Wait until the worker counts ``count`` dead letters of ``kind`` from site1."""
    name = f"hybridfleet_{metrics.tier}_dead_letters_total"
    await wait_until(
        lambda: metrics.value(name, site="site1", kind=kind) >= count,
        timeout,
        f"{count} dead letters ({kind})",
    )


def _escalation_is_valid(data: bytes) -> bool:
    try:
        escalation = decode_escalation(data)
    except SchemaError:
        return False
    return escalation.site == "site1" and escalation.reply_to.startswith("replies.site1.")


async def test_edge_dead_letters_every_bad_frame(settings: Settings, nc: Client) -> None:
    (frame, _), (probe, _) = make_frames(2, cameras=1, priority=1)
    mutants = _mutants(encode(frame), random.Random(7), COUNT)
    bad = sum(not _frame_is_valid(m) for m in mutants)
    assert bad > COUNT // 2, "most mutants are invalid"
    # A valid mutant that kept an earlier one's frame id is a repeat: dead-lettered too.
    valid_ids = [decode_frame(m).frame_id for m in mutants if _frame_is_valid(m)]
    repeats = len(valid_ids) - len(set(valid_ids))
    results = await collect(nc, subjects.results("site1"))
    async with EdgeWorker.from_settings(settings) as edge:
        received = "hybridfleet_edge_frames_received_total"
        for start in range(0, len(mutants), CHUNK):
            # In chunks the worker's intake buffer holds: none is dropped unread
            # (tests/integration/test_intake_overload.py is about those).
            for data in mutants[start : start + CHUNK]:
                await nc.publish(subjects.frames("site1", "cam1"), data)
            sent = min(start + CHUNK, len(mutants))

            def read_all(sent: int = sent) -> bool:
                return edge.metrics.value(received, site="site1") >= sent

            await wait_until(read_all, 30, "the worker to read the chunk")
        await nc.publish(subjects.frames("site1", "cam1"), encode(probe))
        await _dead_letters(edge.metrics, "schema", bad, 30)
        await wait_until(lambda: probe.frame_id in _ids(results), 10, "the probe's result")
        await _dead_letters(edge.metrics, "repeat", repeats, 10)
    refused = "hybridfleet_edge_dead_letters_total"
    assert edge.metrics.value(refused, site="site1", kind="schema") == bad
    assert edge.metrics.value(refused, site="site1", kind="repeat") == repeats
    js = nc.jetstream()
    info = await js.stream_info(subjects.site_dlq_stream("site1"))
    assert info.state.messages == bad + repeats, "each refusal is stored with its reason"
    assert probe.frame_id in _ids(results), "the worker is still up"


async def test_cloud_dead_letters_every_bad_escalation(settings: Settings, nc: Client) -> None:
    (frame, _), (probe, _) = make_frames(2, cameras=1)
    good = escalation_of(frame, REPLY_TO_TEST)
    mutants = _mutants(encode(good), random.Random(11), COUNT)
    bad = sum(not _escalation_is_valid(m) for m in mutants)
    assert bad > COUNT // 2
    answers = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    async with CloudWorker.from_settings(settings) as cloud:
        for i, data in enumerate(mutants):
            await stream.store_bytes(data, f"mutant-{i}")
        await stream.store_bytes(encode(escalation_of(probe, REPLY_TO_TEST)), "p")
        await _dead_letters(cloud.metrics, "schema", bad, 30)
        await wait_until(lambda: probe.frame_id in _ids(answers), 10, "the probe's answer")
    refused = "hybridfleet_cloud_dead_letters_total"
    assert cloud.metrics.value(refused, site="site1", kind="schema") == bad
