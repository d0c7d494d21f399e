"""Fault 9: the site's escalation stream is full.

The edge runs with the smallest allowed ``stream.max_bytes`` (64 KiB, about 46 crop
escalations) and the WAN link is cut, so nothing drains to the hub. The stated policy
is discard ``new``: the stream keeps what it stored and refuses the rest; the edge
answers refused frames itself at once (``escalation_failed``, degraded) and counts
them (``hybridfleet_edge_escalation_failures_total``); nothing crashes. After the link
returns, every stored escalation is answered and the stream empties.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from schemas import subjects
from tests.faults.harness import SITE, Fleet, uncertain, until
from tests.faults.probes import infer, probe_until, scrape, site_js

pytestmark = pytest.mark.fault

MAX_BYTES = 65_536  # the smallest stream.max_bytes the config allows
DEADLINE_MS = 2000
_UNCERTAIN = uncertain(DEADLINE_MS)


async def _start(fleet: Fleet) -> int:
    await fleet.start_worker("cloud", "cloud-1")
    port = await fleet.start_worker_with_metrics("edge", "edge-1", stream_max_bytes=str(MAX_BYTES))
    await probe_until(fleet, "cloud_answer", 30)
    return port


async def _site_stream_empty(fleet: Fleet) -> bool:
    info = await site_js(fleet).stream_info(subjects.site_escalations_stream(SITE))
    return info.state.messages == 0


async def test_full_site_stream_refuses_new_counts_and_recovers(fleet: Fleet) -> None:
    edge_port = await _start(fleet)
    # Start from an empty stream: the hub's flow-control ack removes what it holds.
    assert await until(lambda: _site_stream_empty(fleet), 10)

    await fleet.cut_and_wait()
    await probe_until(fleet, "link_down", 10)  # the edge itself has noticed
    frames = await fleet.publish_frames(100, rate_hz=20, change=_UNCERTAIN)  # 5 s
    ids = {f.frame_id for f in frames}
    await fleet.wait_for_finals(ids, 10)

    ledger = fleet.ledger
    by_reason: dict[str, set[str]] = {}
    for frame_id in ids - ledger.lost(ids):
        by_reason.setdefault(ledger.final_results[frame_id].reason.value, set()).add(frame_id)
    stored = by_reason.get("link_down", set())
    refused = by_reason.get("escalation_failed", set())
    confident = by_reason.get("confident", set())
    info = await site_js(fleet).stream_info(subjects.site_escalations_stream(SITE))
    metrics = await scrape(edge_port)
    failures = metrics.get("hybridfleet_edge_escalation_failures_total", 0.0)
    # Nothing crashed: the edge is up and answers at once.
    alive = fleet.workers["edge-1"].poll() is None
    probe, _ = fleet._camera.make_frame("cam1", 10**6, time.time())
    answer = await infer(fleet, replace(probe, frame_id="after-full", priority=1), 5)
    answered_during = {f for f in stored | refused if ledger.answered[f]}

    fleet.restore()
    await fleet.wait_for_link(True, 30)
    await fleet.wait_for_answers(stored, 60)
    drained = await until(lambda: _site_stream_empty(fleet), 15)
    # Room again: new escalations are stored and answered in time.
    after = await fleet.publish_frames(20, rate_hz=10, change=_UNCERTAIN)
    after_ids = {f.frame_id for f in after}
    await fleet.wait_for_finals(after_ids, 10)
    everything = ids | after_ids
    await fleet.wait_for_finals(everything, 5)
    metrics_end = await scrape(edge_port)

    lost = ledger.lost(everything)
    after_reasons = {ledger.final_results[f].reason.value for f in after_ids - lost}
    print(
        f"\nstream full: {ledger.counts(everything)} shed=0 "
        f"stored={len(stored)} refused={len(refused)} confident={len(confident)} "
        f"escalation failures counted={failures:.0f} "
        f"stream msgs={info.state.messages} bytes={info.state.bytes}/{MAX_BYTES}\n"
        f"  after the link returned: stored answered={sum(1 for f in stored if ledger.answered[f])}"
        f"/{len(stored)}, refused answered={sum(1 for f in refused if ledger.answered[f])}, "
        f"late replies={metrics_end.get('hybridfleet_edge_late_cloud_replies_total', 0):.0f}, "
        f"stream drained={drained}, new frames: {sorted(after_reasons)}"
    )

    ledger.check_promise(everything)
    # The limit held, with discard new: the first ones stored, the rest refused.
    assert stored and refused
    assert len(stored) + len(refused) + len(confident) == len(ids)
    assert info.state.bytes <= MAX_BYTES
    assert info.state.messages >= len(stored)
    seq = {f.frame_id: f.seq for f in frames}
    # (Escalations of one batch are stored concurrently: allow one out of order.)
    first_refused = min(seq[f] for f in refused)
    assert sum(1 for f in stored if seq[f] > first_refused) <= 1
    # Every refusal is counted and answered at once by the edge, degraded.
    assert failures == len(refused)
    for frame_id in refused | stored:
        result = ledger.final_results[frame_id]
        assert result.degraded and result.source.value == "edge", result
        assert result.latency_ms < DEADLINE_MS, result
    # Nothing crashed.
    assert alive
    assert answer.reason.value == "priority_local"
    # After the link returns: every stored escalation is answered (late, so dropped by
    # the edge), the refused ones never reached the cloud, and the stream empties.
    assert not answered_during
    assert all(ledger.answered[f] >= 1 for f in stored)
    assert not any(ledger.answered[f] for f in refused)
    assert metrics_end.get("hybridfleet_edge_late_cloud_replies_total", 0) >= len(stored)
    assert drained
    assert after_reasons <= {"cloud_answer", "confident"} and "cloud_answer" in after_reasons


async def test_small_site_stream_keeps_room_while_link_up(fleet: Fleet) -> None:
    edge_port = await _start(fleet)
    assert await until(lambda: _site_stream_empty(fleet), 10)
    js = site_js(fleet)
    backlog: list[int] = []

    async def sample() -> None:
        while True:
            info = await js.stream_info(subjects.site_escalations_stream(SITE))
            backlog.append(info.state.messages)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        # 8 s of steady escalations: about 80, nearly twice what the stream can hold.
        frames = await fleet.publish_frames(80, rate_hz=10, change=_UNCERTAIN)
        ids = {f.frame_id for f in frames}
        await fleet.wait_for_finals(ids, 10)
    finally:
        sampler.cancel()
    metrics = await scrape(edge_port)
    ledger = fleet.ledger
    reasons = [ledger.final_results[f].reason.value for f in ids - ledger.lost(ids)]
    failures = metrics.get("hybridfleet_edge_escalation_failures_total", 0.0)
    print(
        f"\nsmall stream, link up: published={len(ids)} lost={len(ledger.lost(ids))} "
        f"duplicates={ledger.duplicates()} escalation_failed={reasons.count('escalation_failed')} "
        f"cloud_answer={reasons.count('cloud_answer')} max site backlog={max(backlog)}"
    )
    ledger.check_promise(ids)
    # With the link up the hub takes everything: the site must not refuse any.
    assert failures == 0
    assert "escalation_failed" not in reasons
    assert max(backlog) <= 32
