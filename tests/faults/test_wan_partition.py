"""Fault 1: the WAN link is cut for about 15 s while frames flow.

The cut must outlast what it is about: the edge's link-down detection (no heartbeat
for three 0.5 s intervals, edge_worker/cloudlink.py), after which ``PARTITION_S`` of
frames are published, and the 5 s the hub's durable source waits for the site to
answer a reset of its ``to-cloud`` consumer (docs/reliability.md), so that escalations
pile up at the site across at least one such timeout. The cut is measured and asserted
to last at least twice that timeout.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import Fleet
from tests.faults.probes import probe_until, start_cloud_and_edge

pytestmark = pytest.mark.fault

PARTITION_S = 12  # frames published while cut; the cut itself lasts longer
SOURCE_RESET_TIMEOUT_S = 5  # nats-server's wait for the site's answer to a source reset


async def test_partition_loses_no_escalation(fleet: Fleet) -> None:
    await start_cloud_and_edge(fleet)
    before = set(await fleet.publish(40, rate_hz=40))

    cut_at = time.monotonic()
    await fleet.cut_and_wait()
    await probe_until(fleet, "link_down", 10)  # the edge has noticed
    during = set(await fleet.publish(PARTITION_S * 10, rate_hz=10))  # the whole outage
    await fleet.wait_for_finals(during, 10)
    stored_during = fleet.ledger.escalated & during
    answered_during = {f for f in stored_during if fleet.ledger.answered[f]}

    cut_for = time.monotonic() - cut_at
    fleet.restore()
    await fleet.wait_for_link(True, 30)
    await probe_until(fleet, "cloud_answer", 30)
    after = set(await fleet.publish(40, rate_hz=40))
    everything = before | during | after
    await fleet.wait_for_finals(everything, 20)
    escalated = fleet.ledger.escalated & everything
    await fleet.wait_for_answers(escalated, 60)

    ledger = fleet.ledger
    ledger.report(f"wan-partition-{cut_for:.0f}s", everything)
    # The outage outlasted the hub's source-reset timeout, twice over.
    assert cut_for >= 2 * SOURCE_RESET_TIMEOUT_S, cut_for
    # Every frame has exactly one final result, the outage's included.
    ledger.check_promise(everything)
    # The edge kept answering during the outage: degraded where the cloud was wanted.
    assert stored_during, "frames during the outage were escalated (stored at the site)"
    assert not answered_during, "no answer can cross a cut link"
    reasons = [ledger.final_results[f].reason.value for f in stored_during]
    assert set(reasons) == {"link_down"}, reasons
    assert all(ledger.final_results[f].degraded for f in stored_during)
    # Nothing stored at the site was lost: each escalation got its cloud answer.
    assert ledger.unanswered(escalated) == set(), await fleet.stream_state()
    # Before and after the outage, the cloud answers in time.
    for batch in (before, after):
        answered_in_time = [ledger.final_results[f].reason.value == "cloud_answer" for f in batch]
        assert sum(answered_in_time) >= 0.8 * len(ledger.escalated & batch), ledger.reasons()
