"""Fault 11: the whole 3-node hub is SIGKILLed and restarted while escalations flow.

What is promised: no loss and no second final result. What is *not* promised, and
counted here (docs/reliability.md, "What is and is not deduplicated across a hub
restart"): escalations that the hub had stored, answered and removed (work queue) but
whose flow-control ack had not yet reached the site are sourced again after the
restart, and their answers are stored in ``REPLIES`` a second time. Neither stream's
``Nats-Msg-Id`` window absorbs them, because nats-server rebuilds the dedup map on
restart only from messages still stored (``rebuildDedupe`` in server/stream.go).

The edge starts before the cloud here, so that the hub's durable source finds the
site's ``to-cloud`` consumer at its first reset and no escalation waits at the site
while the source is set up. Started the other way round (``start_cloud_and_edge``),
the first reset times out (there is no consumer yet to answer it), the hub then probes
the deliver subject, and nats-server 2.15.1 can lose the escalations stored meanwhile:
the site's consumer, still believing the probe listens, delivers them between the
reset and the reply that reports its position, the reply says they were delivered,
the hub skips them as already sourced and acks them away by flow control. That loss
(seen here as warm-up escalations never answered, about 1 run in 5 under load) is not
what this test is about, and it is not excused: everything stored is still asserted
answered below.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.config import StreamSettings
from pipeline.messaging.natsio import _source_window
from schemas import subjects
from tests.faults.harness import SITE, Fleet
from tests.faults.probes import hub_js, probe_until, site_js

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]


async def _last_seq(js, stream: str) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        try:
            return int((await js.stream_info(stream)).state.last_seq)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def test_whole_hub_restart_resources_unacked_window(cluster_fleet: Fleet) -> None:
    fleet = cluster_fleet
    # The edge first: its site stream and consumer exist before the hub's source looks.
    await fleet.start_worker("edge", "edge-1")
    await fleet.start_worker("cloud", "cloud-1")
    await probe_until(fleet, "cloud_answer", 40)
    before = set(await fleet.publish(30, rate_hz=30))
    await asyncio.sleep(2)

    publishing = asyncio.create_task(fleet.publish(60, rate_hz=20))
    await asyncio.sleep(1.0)  # about 20 escalations cross, are answered, not yet FC-acked
    for server in fleet.hub.servers:
        server.kill()
    await asyncio.sleep(2.0)
    for server in fleet.hub.servers:
        server.start()
    during = set(await publishing)
    await fleet.wait_for_link(True, 60)
    await asyncio.sleep(5)
    after = set(await fleet.publish(30, rate_hz=30))

    site = site_js(fleet)
    deadline = time.monotonic() + 90
    while (await site.stream_info(subjects.site_escalations_stream(SITE))).state.messages:
        assert time.monotonic() < deadline, await fleet.stream_state()
        await asyncio.sleep(1)
    everything = before | during | after
    escalated = fleet.ledger.escalated
    await fleet.wait_for_answers(escalated, 60)
    await fleet.wait_for_finals(everything, 20)
    await asyncio.sleep(3)  # late repeat answers

    ledger = fleet.ledger
    stored_at_site = await _last_seq(site, subjects.site_escalations_stream(SITE))
    stored_at_hub = await _last_seq(hub_js(fleet), subjects.ESCALATIONS_STREAM)
    replies_stored = await _last_seq(hub_js(fleet), subjects.REPLIES_STREAM)
    resourced = stored_at_hub - stored_at_site
    repeat_replies = replies_stored - len(ledger.answered)
    ledger.report("whole-hub-sigkill-restart", everything)
    print(
        f"DEDUP whole-hub restart: escalations stored at the site {stored_at_site}, "
        f"in the hub {stored_at_hub} (sourced again: {resourced}); answers on the wire "
        f"{sum(ledger.answered.values())} for {len(ledger.answered)} frames, REPLIES stored "
        f"{replies_stored} (stored twice: {repeat_replies})"
    )
    # The promise holds.
    ledger.check_promise(everything, answered=escalated)
    # What is not deduplicated is bounded: at most the site's flow-control window is
    # sourced again, and each copy is answered again (its answer is stored again unless
    # the first answer was still in REPLIES when the hub restarted). Measured on the
    # 2-core machine: 20 and 20 with 20 escalations/s and a 1 s window before the kill.
    window = _source_window(StreamSettings().max_bytes)
    assert 0 <= resourced <= window
    assert 0 <= repeat_replies <= 2 * window
