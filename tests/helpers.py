"""Builders the tests share: frames and escalations made the way real ones are, a
poll with a deadline, and a site's frames answered by a real cloud and edge worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from nats.aio.client import Client
from nats.aio.msg import Msg

from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.config import NatsSettings, Settings
from pipeline.messaging.topology import HUB_DOMAIN
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import Escalation, Frame, InferenceResult, PrivacyClass


def make_frames(
    n: int, *, site: str = "site1", cameras: int = 2, seed: int = 0, **frame_changes: object
) -> list[tuple[Frame, tuple[int, ...]]]:
    """``n`` simulated frames (round-robin over cameras) with their true labels."""
    sim = CameraSimulator(CameraOptions(site=site, cameras=cameras, seed=seed))
    out = []
    for i in range(n):
        frame, truth = sim.make_frame(sim.camera_names[i % cameras], i, time.time())
        if frame_changes:
            frame = replace(frame, **frame_changes)  # type: ignore[arg-type]
        out.append((frame, truth))
    return out


def escalation_of(frame: Frame, reply_to: str, *, deadline_s: float = 60.0) -> Escalation:
    """What an edge worker would store for ``frame`` with privacy ``crop``.

    A negative ``deadline_s`` makes an escalation that expired: its frame was captured
    no later than its deadline, as the wire requires.
    """
    deadline_at = time.time() + deadline_s
    return Escalation(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        captured_at=min(frame.captured_at, deadline_at),
        deadline_at=deadline_at,
        priority=frame.priority,
        privacy=PrivacyClass.CROP,
        regions=frame.regions,
        crops=tuple(frame.crops()),
        image=None,
        reply_to=reply_to,
        edge_labels=(0,) * len(frame.regions),
        edge_confidence=0.5,
    )


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until true; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


REPLY_TO_TEST = subjects.replies("site1", "tester")


async def answer_across_leaf(
    camera: Client,
    frames: Sequence[Frame],
    *,
    edge_nats: NatsSettings,
    cloud_nats: NatsSettings,
) -> list[InferenceResult]:
    """The final results of ``frames``, published by ``camera`` to site1.

    An edge worker of site1 (``edge_nats``: its site server) escalates every frame
    across the leaf link to a cloud worker at the hub (``cloud_nats``). Returns once
    every frame has a result, and a moment more, so that a second one would be seen.
    """
    from cloud_worker.worker import CloudWorker
    from edge_worker.worker import EdgeWorker

    base = Settings()
    edge = replace(
        base,
        nats=edge_nats,
        edge=replace(base.edge, cloud_domain=HUB_DOMAIN, default_threshold=1.0),
    )
    cloud = replace(
        base,
        nats=cloud_nats,
        cloud=replace(base.cloud, sites="site1", sites_are_domains=True),
    )
    results: list[InferenceResult] = []

    async def on_result(msg: Msg) -> None:
        results.append(decode_result(msg.data))

    await camera.subscribe(subjects.results("site1"), cb=on_result)
    async with CloudWorker.from_settings(cloud), EdgeWorker.from_settings(edge):
        for frame in frames:
            await camera.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(frames), 30, "every result")
        await asyncio.sleep(0.2)
    return results
