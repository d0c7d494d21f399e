"""Typed, immutable message types. No I/O here: ``schemas.codec`` turns them into bytes.

The field list of each type is the wire contract of docs/wire-format.md; change one
together with the other and bump ``SCHEMA_VERSION`` when old readers would break.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

__all__ = [
    "DeadLetter",
    "Escalation",
    "Frame",
    "InferenceResult",
    "PrivacyClass",
    "Reason",
    "Region",
    "Source",
]


class PrivacyClass(StrEnum):
    """What of a frame may leave its site."""

    LOCAL_ONLY = "local_only"  # nothing: the edge answer is final
    CROP = "crop"  # only the pixels inside the regions of interest
    FULL = "full"  # the whole frame


class Source(StrEnum):
    """Which tier produced an answer."""

    EDGE = "edge"
    CLOUD = "cloud"


class Reason(StrEnum):
    """Why a final result is what it is. One code per decision path."""

    CONFIDENT = "confident"  # edge confidence met the frame's threshold
    PRIORITY_LOCAL = "priority_local"  # priority 1 frames are always answered on the edge
    PRIVACY_LOCAL_ONLY = "privacy_local_only"  # uncertain, but nothing may leave the site
    DEADLINE_TOO_SHORT = "deadline_too_short"  # uncertain, but the cloud cannot answer in time
    NO_REGIONS = "no_regions"  # nothing to classify in the frame
    EDGE_ONLY = "edge_only"  # the worker is set to never escalate (edge.routing)
    CLOUD_ANSWER = "cloud_answer"  # escalated and answered by the cloud in time
    CLOUD_TIMEOUT = "cloud_timeout"  # escalated, no cloud answer by the deadline (degraded)
    ESCALATION_FAILED = "escalation_failed"  # could not be stored for the cloud (degraded)
    LINK_DOWN = "link_down"  # stored for the cloud, but the link is down: edge answer (degraded)
    SHED = "shed"  # dropped unanswered by an overloaded edge (no labels)
    BUDGET = "budget"  # uncertain, but the site's daily cloud budget is used up (degraded)


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of interest in a frame, in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The pixels of ``image`` inside this region (a view, not a copy)."""
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera image and what the camera asks of it.

    ``image`` is a 2-D uint8 grayscale array (rows, columns). ``deadline_ms`` counts
    from ``captured_at`` (Unix seconds). ``threshold`` overrides the edge worker's
    confidence threshold for this frame.
    """

    frame_id: str
    site: str
    camera: str
    seq: int
    captured_at: float
    image: np.ndarray
    regions: tuple[Region, ...]
    priority: int = 2
    deadline_ms: int = 250
    threshold: float | None = None
    privacy: PrivacyClass = PrivacyClass.CROP

    @property
    def deadline_at(self) -> float:
        """The Unix time by which the final result is due."""
        return self.captured_at + self.deadline_ms / 1000.0

    def crops(self) -> list[np.ndarray]:
        """The pixels of every region of interest, in order."""
        return [r.crop(self.image) for r in self.regions]


@dataclass(frozen=True, slots=True, eq=False)
class InferenceResult:
    """An answer for one frame: one label per region of interest.

    ``scores`` is float32 (regions, classes) of calibrated probabilities;
    ``confidence`` is the lowest per-region confidence (a frame is as certain as its
    least certain region). ``edge_labels`` carries the edge model's own answer when
    the final answer came from elsewhere, so edge and cloud can be compared.
    """

    frame_id: str
    site: str
    camera: str
    seq: int
    labels: tuple[int, ...]
    scores: np.ndarray
    confidence: float
    source: Source
    model: str
    model_version: str
    latency_ms: float
    reason: Reason
    degraded: bool = False
    edge_labels: tuple[int, ...] | None = None

    @property
    def label(self) -> int | None:
        """The label of the first region, or None for a frame with no answer."""
        return self.labels[0] if self.labels else None


@dataclass(frozen=True, slots=True, eq=False)
class Escalation:
    """What the edge sends the cloud for one frame, and where the answer goes.

    With privacy ``crop`` only ``crops`` (one per region) are sent; with ``full``
    the whole ``image`` is sent and ``crops`` is empty. ``deadline_at`` is absolute
    Unix time as the site's clock sees it.
    """

    frame_id: str
    site: str
    camera: str
    seq: int
    captured_at: float
    deadline_at: float
    priority: int
    privacy: PrivacyClass
    regions: tuple[Region, ...]
    crops: tuple[np.ndarray, ...]
    image: np.ndarray | None
    reply_to: str
    edge_labels: tuple[int, ...]
    edge_confidence: float

    @classmethod
    def of_frame(
        cls,
        frame: Frame,
        send: PrivacyClass,
        reply_to: str,
        edge_labels: tuple[int, ...],
        edge_confidence: float,
    ) -> Escalation:
        """What leaves the site for ``frame`` when privacy ``send`` (crop or full) allows."""
        full = send is PrivacyClass.FULL
        return cls(
            frame_id=frame.frame_id,
            site=frame.site,
            camera=frame.camera,
            seq=frame.seq,
            captured_at=frame.captured_at,
            deadline_at=frame.deadline_at,
            priority=frame.priority,
            privacy=send,
            regions=frame.regions,
            crops=() if full else tuple(frame.crops()),
            image=frame.image if full else None,
            reply_to=reply_to,
            edge_labels=edge_labels,
            edge_confidence=edge_confidence,
        )

    def region_pixels(self) -> list[np.ndarray]:
        """The pixels to classify, one array per region, whichever way they were sent."""
        if self.image is not None:
            return [r.crop(self.image) for r in self.regions]
        return list(self.crops)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a stage refused, kept whole with the reason, for a human to look at."""

    stage: str
    site: str
    subject: str
    reason: str
    data: bytes
    at: float
