"""Typed, immutable message types. No I/O here: ``schemas.codec`` turns them into bytes.

The field list of each type is the wire contract of docs/wire-format.md; change one
together with the other and bump ``SCHEMA_VERSION`` (``schemas.limits``) when old
readers would break. ``KINDS`` gives each type its wire name (the ``type`` key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np

from schemas.errors import SchemaError

__all__ = [
    "KINDS",
    "Colour",
    "DeadLetter",
    "Detection",
    "Encoded",
    "Encoding",
    "Escalation",
    "Frame",
    "InferenceResult",
    "M",
    "Message",
    "Pixels",
    "PrivacyClass",
    "Reason",
    "Region",
    "Source",
    "TextLine",
]


class PrivacyClass(StrEnum):
    """What of a frame may leave its site, listed from least to most.

    ``local_only`` < ``embedding`` < ``crop`` < ``full``: each lets out everything the
    one before it does and more. Compare them by that order, never as strings.
    """

    LOCAL_ONLY = "local_only"  # nothing: the edge answer is final
    EMBEDDING = "embedding"  # only an embedding computed at the site; never pixels
    CROP = "crop"  # only the pixels inside the regions of interest
    FULL = "full"  # the whole frame


class Source(StrEnum):
    """A tier: which one produced an answer, or one step of a frame's ``path``.

    Listed in tier order, device < edge < cloud; a path follows that order.
    """

    DEVICE = "device"  # the camera's own tiny model
    EDGE = "edge"
    CLOUD = "cloud"


class Reason(StrEnum):
    """Why a final result is what it is. One code per decision path."""

    CONFIDENT = "confident"  # the answering tier's confidence met the frame's threshold
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
    # The device skipped the frame as too similar to the last one it processed for the
    # camera, and reused that frame's answer.
    UNCHANGED = "unchanged"


class Encoding(StrEnum):
    """How an image's bytes are encoded on the wire."""

    JPEG = "jpeg"
    PNG = "png"

    @property
    def signature(self) -> bytes:
        """The bytes every file of this encoding starts with; readers check them."""
        return _SIGNATURES[self]


# JPEG: SOI marker FF D8, then the first byte of the next marker. PNG: its 8-byte
# signature (PNG specification, section 5.2).
_SIGNATURES = {Encoding.JPEG: b"\xff\xd8\xff", Encoding.PNG: b"\x89PNG\r\n\x1a\n"}


class Colour(StrEnum):
    """The channels of a frame's raw pixels: one grey channel (H x W), or three in this
    order (H x W x 3). An encoded image is ``rgb``: its file says what it holds.
    """

    GRAY = "gray"
    RGB = "rgb"
    BGR = "bgr"


@dataclass(frozen=True, slots=True)
class Encoded:
    """An encoded image (``jpeg`` or ``png``) as it travels; decoded at the edge.

    ``data`` is the whole file and starts with ``encoding.signature``; the wire checks
    no more than that (nothing in ``schemas`` decodes images). Decoded, a colour image
    is RGB (H x W x 3) and a grey one H x W uint8:
    ``pipeline.inference.images.decode`` is the one decoder.
    """

    data: bytes
    encoding: Encoding


# Pixels as a message carries them: a raw uint8 array (H x W grey, or H x W x 3) or an
# encoded image.
Pixels = np.ndarray | Encoded


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle in a frame, in pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The pixels of ``image`` inside this region (a view, not a copy)."""
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


@dataclass(frozen=True, slots=True)
class Detection:
    """One thing a model found or classified: its box in frame pixels, its label (name
    and index in the model's labels), its calibrated score and the tier that said so.

    A classifier's answer for a region is a detection whose box is the region; for a
    whole frame, the frame's box.
    """

    box: Region
    label: str
    label_index: int
    score: float
    source: Source


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text read in a frame: its box in frame pixels, the text, the
    reading's calibrated confidence and the tier that read it."""

    box: Region
    text: str
    confidence: float
    source: Source


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera image and what the camera asks of it.

    ``image`` is the pixels: a raw uint8 array, H x W grey or H x W x 3 in ``colour``
    order, or an ``Encoded`` JPEG/PNG image (decoded to RGB or grey at the edge).
    ``colour`` must fit the image: ``gray`` for H x W, ``rgb`` or ``bgr`` for
    H x W x 3, ``rgb`` for an encoded image. The regions of a raw image lie inside it;
    those of an encoded image are checked by the edge once it has decoded it.
    ``regions`` are the rectangles the camera asks about; empty when the model finds
    its own (a detector) or classifies the whole frame. ``deadline_ms`` counts
    from ``captured_at`` (Unix seconds). ``threshold`` overrides the edge worker's
    confidence threshold for this frame. ``path`` lists the tiers (``Source`` values)
    the frame already passed before this message, in tier order: ``("device",)`` when
    a camera forwards a frame its own model was unsure of; empty when it came straight
    from the camera.
    """

    frame_id: str
    site: str
    camera: str
    seq: int
    captured_at: float
    image: Pixels
    regions: tuple[Region, ...] = ()
    priority: int = 2
    deadline_ms: int = 250
    threshold: float | None = None
    privacy: PrivacyClass = PrivacyClass.CROP
    path: tuple[str, ...] = ()
    colour: Colour = Colour.GRAY

    @property
    def deadline_at(self) -> float:
        """The Unix time by which the final result is due."""
        return self.captured_at + self.deadline_ms / 1000.0

    @property
    def raw_image(self) -> np.ndarray:
        """The raw pixels of a raw frame; ``SchemaError`` for an encoded one."""
        if isinstance(self.image, Encoded):
            raise SchemaError("frame: an encoded image has no raw pixels until it is decoded")
        return self.image

    def crops(self) -> list[np.ndarray]:
        """The pixels of every region of interest, in order (raw frames only)."""
        return _crops(self.image, self.regions)


def _crops(image: Pixels, regions: tuple[Region, ...]) -> list[np.ndarray]:
    if isinstance(image, Encoded):
        raise SchemaError("frame: an encoded image has no crops until it is decoded")
    return [r.crop(image) for r in regions]


@dataclass(frozen=True, slots=True, eq=False)
class InferenceResult:
    """An answer for one frame: what was found or read in it.

    A classifier answers one label per region of interest (``labels``, ``scores``, and
    a ``detections`` entry per region with the label's name); a detector lists its
    ``detections``; a text reader its ``lines``. ``scores`` is float32
    (regions, classes) of calibrated probabilities, empty (0, 0) for other tasks;
    ``confidence`` is how sure the answer is: for a classifier the lowest per-region
    confidence, for a declared detector or reader the lowest of its items at or above
    its band's lower end (docs/models.md). ``edge_labels`` carries the edge model's own answer when
    the final answer came from elsewhere, so edge and cloud can be compared.
    ``path`` lists the tiers (``Source`` values) the frame passed through, in tier
    order, ending with ``source``, the tier that answered: ``("device", "edge")`` for
    a frame the camera forwarded and the edge answered. Empty means not recorded.
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
    path: tuple[str, ...] = ()
    detections: tuple[Detection, ...] = ()
    lines: tuple[TextLine, ...] = ()

    @property
    def label(self) -> int | None:
        """The label of the first region, or None for a frame with no answer."""
        return self.labels[0] if self.labels else None


@dataclass(frozen=True, slots=True, eq=False)
class Escalation:
    """What the edge sends the cloud for one frame, and where the answer goes.

    What is sent depends on ``privacy``: with ``crop`` only ``crops``, one per entry of
    ``regions`` (the camera's regions, or the boxes of the detections or text lines the
    edge was unsure of); with ``full`` the whole ``image`` and no crops; with ``embedding`` only
    ``embedding``, computed at the site, and no pixels at all. ``embedding`` is float32,
    either one vector ``(D,)`` for the frame or one row per region ``(regions, D)``,
    and is None for every other privacy class. ``deadline_at`` is absolute Unix time
    as the site's clock sees it. Pixels are raw (H x W grey, or H x W x 3 always in
    RGB order: ``of_frame`` turns a ``bgr`` frame's pixels around) or ``Encoded``.
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
    crops: tuple[Pixels, ...]
    image: Pixels | None
    reply_to: str
    edge_labels: tuple[int, ...]
    edge_confidence: float
    embedding: np.ndarray | None = None

    @classmethod
    def of_frame(
        cls,
        frame: Frame,
        send: PrivacyClass,
        reply_to: str,
        edge_labels: tuple[int, ...],
        edge_confidence: float,
        *,
        embedding: np.ndarray | None = None,
    ) -> Escalation:
        """What leaves the site for ``frame`` when privacy ``send`` allows.

        ``crop`` sends the region crops, ``full`` the whole image, raw pixels of a
        ``bgr`` frame as RGB (a view, no copy). ``embedding`` sends the given
        ``embedding`` and no pixels. Raises ``SchemaError`` for ``local_only`` (nothing
        may leave), for ``embedding`` without an embedding, for an embedding given with
        ``crop`` or ``full`` (a message carries one kind of payload), and for ``crop``
        of an encoded frame (decode it and build the escalation from its pixels).
        """
        if send is PrivacyClass.LOCAL_ONLY:
            raise SchemaError("escalation.privacy: a local_only frame must never be escalated")
        if (send is PrivacyClass.EMBEDDING) != (embedding is not None):
            raise SchemaError(
                f"escalation.embedding: privacy {send.value!r} "
                + ("needs an embedding" if embedding is None else "carries no embedding")
            )
        full = send is PrivacyClass.FULL
        pixels = send is not PrivacyClass.EMBEDDING
        image = frame.image
        if frame.colour is Colour.BGR and isinstance(image, np.ndarray):
            image = image[..., ::-1]  # the wire's 3-channel pixels are RGB
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
            crops=tuple(_crops(image, frame.regions)) if pixels and not full else (),
            image=image if full else None,
            reply_to=reply_to,
            edge_labels=edge_labels,
            edge_confidence=edge_confidence,
            embedding=embedding,
        )

    def region_pixels(self) -> list[Pixels]:
        """The pixels to classify, one per region, whichever way they were sent: crops
        of a raw image, or the crops as sent (raw, or encoded for the cloud to decode).

        Raises ``SchemaError`` for privacy ``embedding``: no pixels left the site, so
        classify ``embedding`` instead. (An empty list would look like a frame with no
        regions and be answered as one.) Raises it too for an encoded whole image:
        decode it, then cut the regions from its pixels.
        """
        if self.privacy is PrivacyClass.EMBEDDING:
            raise SchemaError(
                "escalation: privacy 'embedding' carries no pixels; classify its embedding"
            )
        if isinstance(self.image, np.ndarray):
            return [r.crop(self.image) for r in self.regions]
        if self.image is not None:
            raise SchemaError("escalation: decode an encoded image before cutting its regions")
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


Message = Frame | InferenceResult | Escalation | DeadLetter
M = TypeVar("M", bound=Message)
# The wire name (the ``type`` key) of each message type.
KINDS: Mapping[type[Any], str] = {
    Frame: "frame",
    InferenceResult: "result",
    Escalation: "escalation",
    DeadLetter: "dead_letter",
}
