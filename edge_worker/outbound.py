"""What leaves the site for an escalated frame: only what its privacy class allows.

* ``crop``: the pixels of what the edge asks about (the camera's regions, or the
  detections and text lines it is unsure of); ``full``: the whole frame. Either way
  faces are blurred first (edge_worker/sanitize.py, in a thread of its own: it is slow
  and must never hold up the model); ``embedding``: the site's embedding of each
  region, never a pixel (a region classifier's frames only: ``can_send``).
* Every escalation is stored in the site's stream with its frame id as
  ``Nats-Msg-Id`` (a repeat within the dedup window is not stored twice) and the
  site's tag (edge_worker/tags.py) that the cloud's answer must carry back.

``size_bound`` is what the decision prices before anything is built: no escalation of
the frame can be larger.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from nats.js import JetStreamContext

from edge_worker.inference import Answered
from edge_worker.metrics import EdgeMetrics
from edge_worker.sanitize import FaceBlur
from edge_worker.tags import TAG_HEADER, EscalationTags
from pipeline.inference.embedding import EmbeddingModel
from pipeline.inference.images import encode_jpeg
from schemas import subjects
from schemas.errors import SchemaError
from schemas.messages import Escalation, Frame, Pixels, PrivacyClass, Region

__all__ = ["Outbound", "can_send", "size_bound"]

# Everything of an escalation but its pixels or embedding: ids, times, labels, per
# region its box; generous, so that it bounds any real message.
_FIXED_BYTES = 1024
_PER_REGION_BYTES = 64


def size_bound(one: Answered, send: PrivacyClass, embedding_dim: int) -> int:
    """The most bytes an escalation of ``one`` with privacy ``send`` can take.

    Pixels are bounded by their raw size (an encoded crop or frame is smaller).
    """
    asks = one.analysis.asks
    if send is PrivacyClass.LOCAL_ONLY:
        return 0
    image = one.image
    if send is PrivacyClass.FULL:
        payload = image.nbytes
    elif send is PrivacyClass.CROP:
        channels = image.shape[2] if image.ndim == 3 else 1
        payload = sum(r.w * r.h for r in asks) * channels
    else:
        payload = len(asks) * embedding_dim * 4
    return _FIXED_BYTES + len(asks) * _PER_REGION_BYTES + payload


def can_send(one: Answered, send: PrivacyClass) -> bool:
    """Whether ``one`` has what privacy ``send`` lets leave: an embedding needs the
    region classifier's features (a detector's answer has none)."""
    return send is not PrivacyClass.EMBEDDING or one.analysis.features is not None


@dataclass(eq=False, kw_only=True)
class Outbound:
    """Builds and stores a site's escalations. ``bind`` it once connected.

    Pixels leave as they came: a raw frame's crops and image raw, an encoded frame's
    as JPEG at ``jpeg_quality``.
    """

    reply_subject: str
    publish_timeout_s: float
    face_blur: FaceBlur | None
    embedder: EmbeddingModel
    sanitizer: Executor
    executor: Executor
    metrics: EdgeMetrics
    jpeg_quality: int = 90
    js: JetStreamContext | None = field(default=None, init=False)
    tags: EscalationTags | None = field(default=None, init=False)

    def bind(self, js: JetStreamContext, tags: EscalationTags) -> None:
        self.js, self.tags = js, tags

    async def build(
        self,
        one: Answered,
        send: PrivacyClass,
        edge_labels: tuple[int, ...],
        edge_confidence: float,
    ) -> Escalation:
        """The escalation of ``one``: what its privacy ``send`` lets leave, of what the
        edge asks about (``analysis.asks``)."""
        frame, asks = one.request.frame, one.analysis.asks
        loop = asyncio.get_running_loop()
        if send is PrivacyClass.LOCAL_ONLY:
            raise SchemaError("escalation.privacy: a local_only frame must never be escalated")
        image: Pixels | None = None
        crops: tuple[Pixels, ...] = ()
        embedding = None
        if send in (PrivacyClass.FULL, PrivacyClass.CROP):
            pixels = one.image
            if self.face_blur is not None:
                # People must not leave the site: blur the faces of the frame first (found
                # in the whole frame, so a face cut by a crop's edge is found too).
                report = await loop.run_in_executor(self.sanitizer, self.face_blur.sanitize, pixels)
                self.metrics.faces_blurred.labels(frame.site).inc(len(report.faces))
                pixels = report.image
            if send is PrivacyClass.FULL:
                image = await loop.run_in_executor(self.executor, self._pixels, frame, pixels)
            else:
                crops = await loop.run_in_executor(self.executor, self._crops, frame, pixels, asks)
        else:
            assert one.analysis.features is not None, "can_send() first"
            embedding = await loop.run_in_executor(
                self.executor, self.embedder.embed, one.analysis.features
            )
        return Escalation(
            frame_id=frame.frame_id,
            site=frame.site,
            camera=frame.camera,
            seq=frame.seq,
            captured_at=frame.captured_at,
            deadline_at=frame.deadline_at,
            priority=frame.priority,
            privacy=send,
            regions=asks,
            crops=crops,
            image=image,
            reply_to=self.reply_subject,
            edge_labels=edge_labels,
            edge_confidence=edge_confidence,
            embedding=embedding,
        )

    def _pixels(self, frame: Frame, pixels: np.ndarray) -> Pixels:
        """Pixels as they leave: raw for a raw frame, else JPEG."""
        if isinstance(frame.image, np.ndarray):
            return pixels
        return encode_jpeg(pixels, self.jpeg_quality)

    def _crops(
        self, frame: Frame, pixels: np.ndarray, asks: tuple[Region, ...]
    ) -> tuple[Pixels, ...]:
        return tuple(self._pixels(frame, box.crop(pixels)) for box in asks)

    async def store(self, frame: Frame, data: bytes) -> bool:
        """Store an escalation in the site's stream; raises if it was not stored.

        Returns False when the stream already had it (a repeat within its dedup window).
        """
        assert self.js is not None and self.tags is not None, "bind() first"
        ack = await self.js.publish(
            subjects.escalations(frame.site, frame.camera),
            data,
            timeout=self.publish_timeout_s,
            headers={"Nats-Msg-Id": frame.frame_id, TAG_HEADER: self.tags.tag(frame.frame_id)},
        )
        return not ack.duplicate
