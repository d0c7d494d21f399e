"""Message sizes measured with the real codec on a simulator frame.

``measure_message_sizes`` encodes one camera frame, both escalations of it (crops and
the full frame) and a cloud answer; the bytes feed the cost of an escalation
(``MessageSizes.hybrid_cost``, ``MessageSizes.cloud_only_cost``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.planning.costs import CostModel, Mode
from schemas.messages import PrivacyClass

__all__ = ["MessageSizes", "measure_message_sizes"]


@dataclass(frozen=True)
class MessageSizes:
    """Encoded sizes in bytes of a simulator frame, its escalations and a cloud answer."""

    frame: int
    crop_escalation: int
    full_escalation: int
    reply: int

    def escalation(self, privacy: PrivacyClass | str) -> int:
        """Bytes one escalation sends under ``privacy`` (``crop`` or ``full``)."""
        kind = PrivacyClass(privacy)
        if kind is PrivacyClass.LOCAL_ONLY:
            raise ValueError("a local_only frame is never sent")
        return self.crop_escalation if kind is PrivacyClass.CROP else self.full_escalation

    def hybrid_cost(self, costs: CostModel, privacy: PrivacyClass | str, share: float) -> float:
        """US$ per 1M frames of a hybrid that escalates ``share`` of them under ``privacy``."""
        return costs.cost_per_million(
            Mode.HYBRID, share, self.escalation(privacy), bytes_per_reply=self.reply
        ).total

    def cloud_only_cost(self, costs: CostModel, privacy: PrivacyClass | str) -> float:
        """US$ per 1M frames of a pure-cloud fleet, every frame sent under ``privacy``."""
        return costs.cost_per_million(
            Mode.CLOUD_ONLY, bytes_per_frame=self.escalation(privacy), bytes_per_reply=self.reply
        ).total


def measure_message_sizes(regions: int = 1) -> MessageSizes:
    """Encode one simulator frame, both escalations of it and a cloud answer; their sizes."""
    import time

    from pipeline.camera.simulator import CameraOptions, CameraSimulator
    from schemas.codec import encode
    from schemas.messages import Escalation, InferenceResult, Reason, Source

    frame, _ = CameraSimulator(CameraOptions(cameras=1, regions_per_frame=regions)).make_frame(
        "cam1", 0, time.time()
    )

    def escalation(full: bool) -> Escalation:
        send = PrivacyClass.FULL if full else PrivacyClass.CROP
        return Escalation.of_frame(frame, send, f"replies.{frame.site}.edge-1", (0,) * regions, 0.5)

    reply = InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=(0,) * regions,
        scores=np.zeros((regions, 10), dtype=np.float32),
        confidence=0.5,
        source=Source.CLOUD,
        model="digits-svc",
        model_version="1.0.0",
        latency_ms=10.0,
        reason=Reason.CLOUD_ANSWER,
        edge_labels=(0,) * regions,
    )
    return MessageSizes(
        frame=len(encode(frame)),
        crop_escalation=len(encode(escalation(full=False))),
        full_escalation=len(encode(escalation(full=True))),
        reply=len(encode(reply)),
    )
