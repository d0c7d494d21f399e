"""What leaves the site for an escalated frame: only what its privacy class allows.

* ``crop``: the pixels of its regions; ``full``: the whole frame, faces blurred first
  (edge_worker/sanitize.py, in a thread of its own: it is slow and must never hold up
  the model); ``embedding``: the site's embedding of each region, never a pixel.
* Every escalation is stored in the site's stream with its frame id as
  ``Nats-Msg-Id`` (a repeat within the dedup window is not stored twice) and the
  site's tag (edge_worker/tags.py) that the cloud's answer must carry back.

``size_bound`` is what the decision prices before anything is built: no escalation of
the frame can be larger.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import numpy as np
from nats.js import JetStreamContext

from edge_worker.metrics import EdgeMetrics
from edge_worker.sanitize import FaceBlur
from edge_worker.tags import TAG_HEADER, EscalationTags
from pipeline.inference.embedding import EmbeddingModel
from schemas import subjects
from schemas.messages import Escalation, Frame, PrivacyClass

__all__ = ["Outbound", "size_bound"]

# Everything of an escalation but its pixels or embedding: ids, times, labels, per
# region its box; generous, so that it bounds any real message.
_FIXED_BYTES = 1024
_PER_REGION_BYTES = 64


def size_bound(frame: Frame, send: PrivacyClass, embedding_dim: int) -> int:
    """The most bytes an escalation of ``frame`` with privacy ``send`` can take."""
    regions = len(frame.regions)
    if send is PrivacyClass.LOCAL_ONLY:
        return 0
    if send is PrivacyClass.FULL:
        payload = frame.image.nbytes
    elif send is PrivacyClass.CROP:
        payload = sum(r.w * r.h for r in frame.regions) * frame.image.itemsize
    else:
        payload = regions * embedding_dim * 4
    return _FIXED_BYTES + regions * _PER_REGION_BYTES + payload


@dataclass(eq=False, kw_only=True)
class Outbound:
    """Builds and stores a site's escalations. ``bind`` it once connected."""

    reply_subject: str
    publish_timeout_s: float
    face_blur: FaceBlur | None
    embedder: EmbeddingModel
    sanitizer: Executor
    executor: Executor
    metrics: EdgeMetrics
    js: JetStreamContext | None = field(default=None, init=False)
    tags: EscalationTags | None = field(default=None, init=False)

    def bind(self, js: JetStreamContext, tags: EscalationTags) -> None:
        self.js, self.tags = js, tags

    async def build(
        self,
        frame: Frame,
        send: PrivacyClass,
        edge_labels: tuple[int, ...],
        edge_confidence: float,
        features: np.ndarray,
    ) -> Escalation:
        """The escalation of ``frame``; ``features`` are its regions' model inputs."""
        loop = asyncio.get_running_loop()
        if send is PrivacyClass.FULL and self.face_blur is not None:
            # People must not leave the site: blur faces in a whole frame that does.
            report = await loop.run_in_executor(
                self.sanitizer, self.face_blur.sanitize, frame.image
            )
            self.metrics.faces_blurred.labels(frame.site).inc(len(report.faces))
            frame = replace(frame, image=report.image)
        embedding = None
        if send is PrivacyClass.EMBEDDING:
            embedding = await loop.run_in_executor(self.executor, self.embedder.embed, features)
        return Escalation.of_frame(
            frame, send, self.reply_subject, edge_labels, edge_confidence, embedding=embedding
        )

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
