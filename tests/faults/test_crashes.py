"""Faults 2-4: a cloud worker, an edge worker or the site's server dies mid-stream."""

from __future__ import annotations

import asyncio

import pytest

from schemas import subjects
from tests.faults.harness import SITE, Fleet
from tests.faults.probes import hub_js, site_js, start_cloud_and_edge

pytestmark = pytest.mark.fault


async def _ack_pending(fleet: Fleet) -> int:
    info = await hub_js(fleet).consumer_info(subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER)
    return int(info.num_ack_pending)


async def test_cloud_worker_killed_mid_batch(fleet: Fleet) -> None:
    # Batches take 1.5 s, so a SIGKILL lands while one is in the worker's hands.
    slow = {"cloud_inject_latency_ms": "1500", "cloud_ack_wait_s": "3"}
    await fleet.start_worker("cloud", "cloud-1", **slow)
    await fleet.start_worker("edge", "edge-1")
    publishing = asyncio.create_task(fleet.publish(60, rate_hz=30))
    # The first escalations take a moment to be sourced (longer on a loaded machine).
    deadline = asyncio.get_running_loop().time() + 40
    while asyncio.get_running_loop().time() < deadline:
        if await _ack_pending(fleet) > 0:
            break
        await asyncio.sleep(0.05)
    held = await _ack_pending(fleet)
    assert held > 0, "the worker holds an unacked batch"
    fleet.kill_worker("cloud-1")
    await fleet.start_worker("cloud", "cloud-2", cloud_ack_wait_s="3")
    frames = set(await publishing)
    await fleet.wait_for_finals(frames, 20)
    escalated = fleet.ledger.escalated & frames
    await fleet.wait_for_answers(escalated, 30)

    fleet.ledger.report("cloud-sigkill-mid-batch", frames)
    fleet.ledger.check_promise(frames, answered=escalated)


async def test_edge_worker_killed(fleet: Fleet) -> None:
    # Cloud answers take a second, so escalations are in flight when the edge dies.
    await fleet.start_worker("cloud", "cloud-1", cloud_inject_latency_ms="1000")
    await fleet.start_worker("edge", "edge-1")
    before = set(await fleet.publish(30, rate_hz=30))
    fleet.kill_worker("edge-1")
    # Once the server has dropped the dead worker's pull request (a frame delivered to it
    # before that is lost with the worker: the frame stream is not a queue), frames sent
    # while no edge worker runs wait in the site's frames stream for the next worker.
    await _no_pull_waiting(fleet)
    unserved = set(await fleet.publish(10, rate_hz=20))
    await fleet.start_worker("edge", "edge-1")  # same id: it finds its stored answers
    after = set(await fleet.publish(20, rate_hz=20))
    everything = before | unserved | after
    escalated = fleet.ledger.escalated & everything
    await fleet.wait_for_answers(escalated, 30)
    await fleet.wait_for_finals(escalated | after, 20)

    ledger = fleet.ledger
    ledger.report("edge-sigkill", everything)
    # Everything that reached the site's stream ends with exactly one final result,
    # even when the worker that stored it died before the cloud's answer came back.
    assert ledger.lost(escalated) == set()
    assert ledger.duplicates() == 0
    assert ledger.lost(after) == set()
    assert ledger.lost(unserved) == set(), "the next worker takes what waited in the stream"
    lost_in_flight = ledger.lost(before)
    # What was lost with the worker was in its memory only, never in a stream.
    assert not lost_in_flight & escalated
    finals = len(everything) - len(ledger.lost(everything))
    print(
        f"edge SIGKILL: published {len(everything)}, finals {finals}, lost in the worker's "
        f"memory {len(lost_in_flight)}, unserved {len(unserved)}"
    )


async def _no_pull_waiting(fleet: Fleet, timeout: float = 15.0) -> None:
    """Wait until no edge worker's pull request waits on the site's frame consumer."""
    js = site_js(fleet)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.consumer_info(subjects.frames_stream(SITE), subjects.FRAMES_CONSUMER)
        if not info.num_waiting:
            return
        assert asyncio.get_running_loop().time() < deadline, "the dead worker's pull stays"
        await asyncio.sleep(0.05)


async def test_site_server_restart_keeps_acknowledged_escalations(fleet: Fleet) -> None:
    await start_cloud_and_edge(fleet)
    # With the link cut, escalations stay on the site's disk only.
    await fleet.cut_and_wait()
    frames = set(await fleet.publish(40, rate_hz=40))
    await fleet.wait_for_finals(frames, 10)
    stored = fleet.ledger.escalated & frames
    assert stored, "escalations were stored while the link was down"
    assert fleet.site is not None
    info = await site_js(fleet).stream_info(subjects.site_escalations_stream(SITE))
    # Earlier (warm-up) escalations may still await the hub's flow-control ack.
    assert info.state.messages >= len(stored)

    fleet.site.kill()  # SIGKILL: no chance to flush anything more
    fleet.site.start()  # same port, same store
    fleet.restore()
    await fleet.wait_for_link(True, 30)
    await fleet.wait_for_answers(stored, 60)

    fleet.ledger.report("site-server-sigkill-restart", frames)
    fleet.ledger.check_promise(frames, answered=stored)
