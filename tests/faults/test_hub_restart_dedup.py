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
from tests.faults.harness import SITE, Fleet, until
from tests.faults.probes import hub_js, probe_until, site_js

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

# Waits are on what can be seen, each bounded: generous, as a slow machine needs.
SETTLE_S = 60
QUIET_S = 1.0  # nothing stored or answered anew for this long: no late repeat is coming


async def _last_seq(js, stream: str) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while True:
        try:
            return int((await js.stream_info(stream)).state.last_seq)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _site_window_acked(fleet: Fleet) -> bool:
    """Everything stored at the site has been sourced into the hub and acked by flow
    control: the site's ``to-cloud`` consumer has nothing pending and nothing unacked."""
    try:
        info = await site_js(fleet).consumer_info(
            subjects.site_escalations_stream(SITE), subjects.SOURCE_CONSUMER
        )
    except Exception:
        return False
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def _source_active(fleet: Fleet) -> bool:
    """The hub's source of the site stream has heard from the site since the hub
    restarted (a restarted server reports ``active`` -1 until then) and reports no
    error."""
    try:
        info = await hub_js(fleet).stream_info(subjects.ESCALATIONS_STREAM)
    except Exception:  # the restarted cluster has no stream leader yet
        return False
    source = next(
        (s for s in info.sources or () if s.name == subjects.site_escalations_stream(SITE)), None
    )
    return (
        source is not None
        and source.error is None
        and source.active is not None
        and source.active >= 0
    )


async def _settled(fleet: Fleet) -> bool:
    """The hub has answered and removed every escalation it stored, repeats included,
    and neither the hub's streams nor the answers on the wire changed for ``QUIET_S``."""

    async def snapshot() -> tuple[int, ...] | None:
        hub = hub_js(fleet)
        try:
            escalations = (await hub.stream_info(subjects.ESCALATIONS_STREAM)).state
            cloud = await hub.consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
            replies = (await hub.stream_info(subjects.REPLIES_STREAM)).state
        except Exception:
            return None
        if escalations.messages or cloud.num_pending or cloud.num_ack_pending:
            return None  # the cloud still has work: answers may follow
        return (escalations.last_seq, replies.last_seq, sum(fleet.ledger.answered.values()))

    first = await snapshot()
    if first is None:
        return False
    await asyncio.sleep(QUIET_S)
    return await snapshot() == first


async def test_whole_hub_restart_resources_unacked_window(cluster_fleet: Fleet) -> None:
    fleet = cluster_fleet
    # The edge first: its site stream and consumer exist before the hub's source looks.
    await fleet.start_worker("edge", "edge-1")
    await fleet.start_worker("cloud", "cloud-1")
    await probe_until(fleet, "cloud_answer", 40)
    before = set(await fleet.publish(30, rate_hz=30))
    # Before the fault, the site's unacked window is empty: what it holds at the kill
    # was published during the fault.
    await fleet.wait_for_answers(fleet.ledger.escalated & before, SETTLE_S)
    assert await until(lambda: _site_window_acked(fleet), SETTLE_S), await fleet.stream_state()

    publishing = asyncio.create_task(fleet.publish(60, rate_hz=20))
    await asyncio.sleep(1.0)  # about 20 escalations cross, are answered, not yet FC-acked
    for server in fleet.hub.servers:
        server.kill()
    await asyncio.sleep(2.0)
    for server in fleet.hub.servers:
        server.start()
    during = set(await publishing)
    await fleet.wait_for_link(True, 60)
    # The restart is behind us before more escalations are stored: the hub's source
    # has reset the site's consumer and sourced (again) what the site held unacked.
    assert await until(lambda: _source_active(fleet), SETTLE_S), await fleet.stream_state()
    assert await until(lambda: _site_window_acked(fleet), SETTLE_S), await fleet.stream_state()
    after = set(await fleet.publish(30, rate_hz=30))

    site = site_js(fleet)
    deadline = time.monotonic() + 90
    while (await site.stream_info(subjects.site_escalations_stream(SITE))).state.messages:
        assert time.monotonic() < deadline, await fleet.stream_state()
        await asyncio.sleep(0.25)
    everything = before | during | after
    escalated = fleet.ledger.escalated
    await fleet.wait_for_answers(escalated, 60)
    await fleet.wait_for_finals(everything, 20)
    # Late repeat answers: wait until the hub has answered every copy and is quiet.
    assert await until(lambda: _settled(fleet), SETTLE_S), await fleet.stream_state()

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
