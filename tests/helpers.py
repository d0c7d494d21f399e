"""Builders the tests share: frames and escalations made the way real ones are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pipeline.camera.simulator import CameraOptions, CameraSimulator
from schemas import subjects
from schemas.messages import Escalation, Frame, PrivacyClass


def make_frames(
    n: int, *, site: str = "site1", cameras: int = 2, seed: int = 0, **frame_changes: object
) -> list[tuple[Frame, tuple[int, ...]]]:
    """``n`` simulated frames (round-robin over cameras) with their true labels."""
    sim = CameraSimulator(CameraOptions(site=site, cameras=cameras, seed=seed))
    out = []
    for i in range(n):
        frame, truth = sim.make_frame(sim.camera_names[i % cameras], i, time.time())
        if frame_changes:
            from dataclasses import replace

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
