"""What integration tests feed the workers and collect from them over a real server.

``collect`` keeps every result published on a subject from now on. ``SiteStream``
stores escalations in site1's stream as its edge would, for the cloud workers to
fetch.
"""

from __future__ import annotations

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from pipeline.config import StreamSettings
from pipeline.messaging.natsio import ensure_site_streams
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.messages import Escalation, InferenceResult

__all__ = ["SiteStream", "collect"]


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
