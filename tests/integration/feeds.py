"""What integration tests feed the workers and collect from them over a real server.

``collect`` keeps every result published on a subject from now on. ``SiteStream``
stores escalations in site1's stream as its edge would, for the cloud workers to
fetch. ``run_video`` plays video cameras through a cloud and an edge worker and keeps
what came out: final results and the escalations seen on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.camera.sources.cameras import run_cameras
from pipeline.camera.sources.config import VideoCamera
from pipeline.config import Settings, StreamSettings
from pipeline.messaging.natsio import ensure_site_streams
from schemas import subjects
from schemas.codec import decode_escalation, decode_result, encode
from schemas.messages import Escalation, InferenceResult
from tests.helpers import wait_until

__all__ = ["SiteStream", "VideoRun", "collect", "run_video"]


async def collect(nc: Client, subject: str) -> list[InferenceResult]:
    """The results published on ``subject`` from now on, in the order they arrive."""
    seen: list[InferenceResult] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(decode_result(msg.data))

    await nc.subscribe(subject, cb=on_msg)
    return seen


class SiteStream:
    """site1's escalation stream: ``await SiteStream.declare(nc, settings.stream)``."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    @classmethod
    async def declare(cls, nc: Client, stream: StreamSettings) -> SiteStream:
        """Declare site1's streams (as its edge worker does) and return the stream."""
        js = nc.jetstream()
        await ensure_site_streams(js, "site1", stream)
        return cls(js)

    async def store(self, escalation: Escalation) -> None:
        """Store ``escalation`` as an edge would: its frame id is the message id."""
        await self.store_bytes(encode(escalation), escalation.frame_id, escalation.camera)

    async def store_bytes(self, data: bytes, msg_id: str, camera: str = "cam1") -> None:
        """Store any bytes on ``escalations.site1.<camera>`` with message id ``msg_id``."""
        await self.js.publish(
            subjects.escalations("site1", camera), data, headers={"Nats-Msg-Id": msg_id}
        )


@dataclass
class VideoRun:
    """What a ``run_video`` left: the final results and the escalations on the wire,
    in arrival order, how many frames the cameras published, and the workers."""

    results: list[InferenceResult]
    escalations: list[Escalation]
    published: int
    edge: EdgeWorker
    cloud: CloudWorker


async def run_video(
    settings: Settings, nc: Client, cameras: Sequence[VideoCamera], *, timeout_s: float = 60.0
) -> VideoRun:
    """Play ``cameras`` (site1) through a cloud and an edge worker until every frame has
    its final result and no escalation waits for the cloud; then a moment for a
    duplicate to show."""
    results = await collect(nc, subjects.results("site1"))
    escalations: list[Escalation] = []

    async def on_escalation(msg: Msg) -> None:
        escalations.append(decode_escalation(msg.data))

    await nc.subscribe(subjects.escalations("site1"), cb=on_escalation)
    async with (
        CloudWorker.from_settings(settings) as cloud,
        EdgeWorker.from_settings(settings) as edge,
    ):
        counts = await run_cameras(nc, cameras, "site1")
        await wait_until(lambda: len(results) >= counts.published, timeout_s, "a result per frame")
        await wait_until(
            lambda: edge.metrics.value("hybridfleet_edge_pending_escalations", site="site1") == 0,
            timeout_s,
            "the cloud's answers",
        )
    await nc.flush()
    await asyncio.sleep(0.2)  # a duplicate would have arrived by now
    return VideoRun(results, escalations, counts.published, edge, cloud)
