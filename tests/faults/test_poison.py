"""Fault 6: an escalation that always fails in the cloud (a poison message).

The cloud model fails on every batch that holds it (``cloud.inject_failure_prefix``).
The worker retries such a batch one escalation at a time, so only the poison is naked;
after ``max_deliver`` deliveries JetStream publishes the max-deliveries advisory, and
the cloud worker turns it into a dead letter on ``dlq.cloud.<site>`` with the reason
and the escalation's original bytes. Escalations published alongside are answered
meanwhile, and the poison frame gets exactly one final result: the edge's, degraded.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import subjects
from schemas.codec import decode_dead_letter
from tests.faults.harness import SITE, Fleet, uncertain
from tests.faults.probes import hub_js, probe_until, read_stream, record_raw, stream_messages

pytestmark = pytest.mark.fault

MAX_DELIVER = 3
POISON = "poison-"
DEADLINE_MS = 2000
# The worker naks a failed escalation with a 1 s delay: the poison's deliveries are
# used up about (MAX_DELIVER - 1) s after it is first fetched.
EXHAUSTED_AFTER_S = MAX_DELIVER - 1


async def test_poison_is_dead_lettered_and_blocks_nobody(fleet: Fleet) -> None:
    await fleet.start_worker(
        "cloud",
        "cloud-1",
        cloud_inject_failure_prefix=POISON,
        cloud_max_deliver=str(MAX_DELIVER),
        cloud_ack_wait_s="2",
        cloud_backoff_s="1",
    )
    await fleet.start_worker("edge", "edge-1")
    # Escalations flow end to end before the poison goes in.
    warmup = await probe_until(fleet, "cloud_answer", 30)
    raw = await record_raw(fleet, subjects.escalations(SITE))

    started = time.time()
    # The poison goes first, so it shares a batch with the others; the rest keep coming
    # while it is redelivered, so its redeliveries share batches too.
    poison = await fleet.publish_frames(1, 100, change=uncertain(DEADLINE_MS), prefix=POISON)
    others = await fleet.publish_frames(40, rate_hz=10, change=uncertain(DEADLINE_MS))  # 4 s
    poison_id = poison[0].frame_id
    other_ids = {f.frame_id for f in others}
    everything = other_ids | {poison_id}

    await fleet.wait_for_finals(everything, 10)
    await fleet.wait_for_answers(other_ids, 10)

    # The dead letter: the advisory path, within a bounded time.
    js = hub_js(fleet)
    letters = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        letters = [
            decode_dead_letter(m.data or b"")
            for m in await read_stream(js, subjects.CLOUD_DLQ_STREAM)
        ]
        if letters:
            break
        await asyncio.sleep(0.2)

    ledger = fleet.ledger
    lost = ledger.lost(everything)
    answered_others = {f for f in other_ids if ledger.answered[f]}
    reasons = {f: ledger.final_results[f].reason.value for f in everything if f not in lost}
    print(
        f"\npoison: {ledger.counts(everything)} shed=0 "
        f"answered={len(answered_others)}/{len(other_ids)} (others) "
        f"poison answered={ledger.answered[poison_id]} dead letters={len(letters)} "
        f"warm-up probes={warmup} "
        f"dead-lettered {letters[0].at - started if letters else -1:.1f} s after publishing"
    )

    # Every frame has exactly one final result.
    ledger.check_promise(everything)
    # The poison: degraded edge answer at its deadline, never a cloud answer.
    assert ledger.answered[poison_id] == 0
    poison_final = ledger.final_results[poison_id]
    assert poison_final.degraded and reasons[poison_id] == "cloud_timeout", poison_final
    assert poison_final.latency_ms < DEADLINE_MS + 500
    # The others were not blocked: all answered by the cloud, before their deadlines.
    assert answered_others == other_ids
    for frame_id in other_ids:
        result = ledger.final_results[frame_id]
        assert reasons[frame_id] == "cloud_answer", result
        assert result.latency_ms < DEADLINE_MS, result
    # The ones published while the poison was still being redelivered, too.
    early = {f.frame_id for f in others if f.captured_at < started + EXHAUSTED_AFTER_S}
    assert len(early) >= 10
    assert all(reasons[f] == "cloud_answer" for f in early)
    others_latency = [ledger.final_results[f].latency_ms for f in other_ids]
    print(f"others' latency_ms: max={max(others_latency):.0f}")

    # Exactly one dead letter: the poison's, with the reason and its original bytes.
    assert len(letters) == 1, letters
    letter = letters[0]
    assert letter.stage == "cloud" and letter.site == SITE
    assert letter.subject == f"escalations.{SITE}.{poison[0].camera}"
    assert f"{MAX_DELIVER} times" in letter.reason and "max_deliver" in letter.reason
    assert letter.data == raw[poison_id]
    # It took the advisory path, not an early term: at least MAX_DELIVER - 1 nak delays.
    assert letter.at - poison[0].captured_at >= EXHAUSTED_AFTER_S
    # ... and the early others had their final results before it was dead-lettered.
    by_frame = {f.frame_id: f for f in others}
    for frame_id in early:
        done_at = by_frame[frame_id].captured_at + ledger.final_results[frame_id].latency_ms / 1000
        assert done_at < letter.at
    # Nothing is left behind: the poison was removed from the work queue, the advisory
    # acked, and no escalation waits.
    assert await stream_messages(js, subjects.ESCALATIONS_STREAM) == 0
    assert await stream_messages(js, subjects.ADVISORIES_STREAM) == 0
    info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
    assert info.num_pending == 0 and info.num_ack_pending == 0
