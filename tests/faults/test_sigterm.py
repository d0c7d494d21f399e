"""Fault 10: SIGTERM to each worker while it has work in hand.

Edge: it stops taking frames, finishes every queued batch, waits for each pending
escalation's answer or deadline, and exits 0; every frame it had taken gets exactly one
final result, and frames sent after it stopped listening go to the site's other edge
worker. Cloud: it finishes the batch in hand, answers and acks it, and exits 0; nothing
it held is left unacked or redelivered, and every escalation is answered exactly once
after a new cloud worker starts.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from schemas import subjects
from tests.faults.harness import SITE, Fleet, uncertain, until
from tests.faults.probes import hub_js, probe_until, scrape, site_subscriptions, wait_exit

pytestmark = pytest.mark.fault


EDGE_BATCH = 4
EDGE_BATCH_MS = 250  # 16 frames/s: 40 frames keep the edge busy for 2.5 s
EDGE_FRAMES = 40


async def test_sigterm_edge_drains_batches_and_pending(fleet: Fleet) -> None:
    await fleet.start_worker("cloud", "cloud-1", cloud_inject_latency_ms="1000")
    port = await fleet.start_edge_of_capacity(EDGE_BATCH, EDGE_BATCH_MS)
    await probe_until(fleet, "cloud_answer", 30)
    received_before = (await scrape(port))["hybridfleet_edge_frames_received_total"]

    frames = await fleet.publish_frames(EDGE_FRAMES, 100, change=uncertain(8000))
    ids = {f.frame_id for f in frames}

    async def all_taken() -> bool:
        received = (await scrape(port))["hybridfleet_edge_frames_received_total"]
        return received - received_before >= EDGE_FRAMES

    assert await until(all_taken, 5, poll_s=0.05), "edge-1 did not take every frame"
    accepted = (await scrape(port))["hybridfleet_edge_frames_received_total"] - received_before
    # A second worker of the site, for frames sent while edge-1 drains. (Its readiness
    # probes, priority 1 by request/reply, may go to edge-1 too.)
    await fleet.start_worker("edge", "edge-2")
    in_hand = await scrape(port)
    finals_before = sum(1 for f in ids if fleet.ledger.finals[f])

    term_at = time.monotonic()
    proc = fleet.signal_worker("edge-1")

    async def stopped_listening() -> bool:
        subs = await site_subscriptions(fleet, "hybridfleet-edge-1")
        return subs is None or subjects.frames(SITE) not in subs

    try:
        listening = not await until(stopped_listening, 5, poll_s=0.05)
        during = await fleet.publish_frames(20, 20, change=uncertain(8000))
        code = await wait_exit(proc, 30)
    finally:
        if proc.poll() is None:  # the test failed early: do not leave it behind
            proc.kill()
            proc.wait()
    during_ids = {f.frame_id for f in during}
    drain_s = time.monotonic() - term_at
    await fleet.wait_for_finals(ids | during_ids, 15)
    escalated = fleet.ledger.escalated & (ids | during_ids)
    await fleet.wait_for_answers(escalated, 20)

    ledger = fleet.ledger
    everything = ids | during_ids
    lost = ledger.lost(everything)
    reasons = {f: ledger.final_results[f].reason.value for f in everything - lost}
    answered = {f for f in escalated if ledger.answered[f]}
    print(
        f"\nSIGTERM edge: published={len(everything)} ({EDGE_FRAMES} taken by edge-1, "
        f"{len(during_ids)} sent while it drained) finals={len(everything) - len(lost)} "
        f"lost={len(lost)} duplicates={ledger.duplicates()} shed=0 "
        f"escalated={len(escalated)} answered={len(answered)}\n"
        f"  at SIGTERM: accepted={accepted:.0f} "
        f"queued={in_hand['hybridfleet_edge_queue_depth']:.0f} "
        f"pending={in_hand['hybridfleet_edge_pending_escalations']:.0f} "
        f"finals so far={finals_before}; exit code={code} after {drain_s:.1f} s; "
        f"reasons={sorted(set(reasons.values()))}"
    )

    assert not listening, "edge-1 kept its frames subscription after SIGTERM"
    assert code == 0
    assert accepted == EDGE_FRAMES
    # There was work in hand: queued batches and escalations waiting for the cloud.
    assert (
        in_hand["hybridfleet_edge_queue_depth"] + in_hand["hybridfleet_edge_pending_escalations"]
        > 0
    )
    assert finals_before < EDGE_FRAMES
    # Every frame edge-1 accepted has exactly one final result; so do the frames sent
    # while it drained (edge-2 took them).
    ledger.check_promise(everything)
    assert {reasons[f] for f in ids} <= {"cloud_answer", "cloud_timeout", "confident"}
    assert sum(1 for f in ids if reasons[f] == "cloud_answer") >= EDGE_FRAMES // 2
    # Every escalation it stored was answered by the cloud.
    assert answered == escalated


CLOUD_BATCH_MS = 2000


async def test_sigterm_cloud_finishes_and_acks_batch_in_hand(fleet: Fleet) -> None:
    await fleet.start_worker("cloud", "cloud-1", cloud_inject_latency_ms=str(CLOUD_BATCH_MS))
    await fleet.start_worker("edge", "edge-1")
    # Warm-up: one escalation answered end to end (slower than a probe's deadline).
    warm = await fleet.publish_frames(1, 1, change=uncertain(10_000))
    await fleet.wait_for_answers({warm[0].frame_id}, 30)
    assert fleet.ledger.answered[warm[0].frame_id] == 1

    js = hub_js(fleet)
    frames = await fleet.publish_frames(30, 50, change=uncertain(15_000))
    ids = {f.frame_id for f in frames}

    # The first fetch may take only the first escalation; the next, after that batch's
    # 2 s, takes the rest: SIGTERM while that one is in hand.
    async def batch_in_hand() -> bool:
        info = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
        return bool(info.num_ack_pending >= 10)

    assert await until(batch_in_hand, 10, poll_s=0.05), "cloud-1 fetched no batch of 10"
    before = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
    answered_before = sum(1 for f in ids if fleet.ledger.answered[f])
    term_at = time.monotonic()
    proc = fleet.signal_worker("cloud-1")
    code = await wait_exit(proc, 20)
    drain_s = time.monotonic() - term_at
    await asyncio.sleep(0.5)  # answers published before exit reach the ledger
    after = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
    answered_by_first = {f for f in ids if fleet.ledger.answered[f]}

    await fleet.start_worker("cloud", "cloud-2")
    escalated = fleet.ledger.escalated & ids
    await fleet.wait_for_answers(escalated, 30)
    await fleet.wait_for_finals(ids, 20)
    end = await js.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)

    ledger = fleet.ledger
    lost = ledger.lost(ids)
    answered = {f for f in escalated if ledger.answered[f]}
    repeats = sum(ledger.answered[f] - 1 for f in answered)
    reasons = {ledger.final_results[f].reason.value for f in ids - lost}
    print(
        f"\nSIGTERM cloud: {ledger.counts(ids)} shed=0 escalated={len(escalated)} "
        f"answered={len(answered)} repeat answers={repeats}\n"
        f"  at SIGTERM: in hand={before.num_ack_pending} answered so far={answered_before}; "
        f"cloud-1 exit code={code} after {drain_s:.1f} s, it answered {len(answered_by_first)}; "
        f"after exit: ack pending={after.num_ack_pending} redelivered={after.num_redelivered} "
        f"waiting={after.num_pending}; at the end: redelivered={end.num_redelivered} "
        f"waiting={end.num_pending}; reasons={sorted(reasons)}"
    )

    assert code == 0
    # It finished the batch in hand: answered and acked, nothing left to redeliver.
    assert before.num_ack_pending > 0
    assert len(answered_by_first) >= answered_before + before.num_ack_pending
    assert after.num_ack_pending == 0
    assert after.num_redelivered == 0
    # Nothing lost once a cloud worker is back: every escalation answered exactly once,
    # every frame one final result.
    assert answered == escalated
    assert repeats == 0
    assert end.num_pending == 0 and end.num_ack_pending == 0 and end.num_redelivered == 0
    ledger.check_promise(ids)
