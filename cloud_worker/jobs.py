"""An escalation as a cloud worker's job: its checks, a batch's model input, its answer.

Pure, no I/O. An escalation speaks only for the site of its subject, and its answer
may only go to that site's reply subjects; one that carries an embedding carries one
row per region, as wide as the embedding model's input. A batch of jobs is looked at
region by region (each region's pixels on their own); the answers are handed back job
by job, their boxes in the frame's pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
from nats.aio.msg import Msg

from pipeline.inference.analysis import Analyser, Analysis, Look, RegionClassifier, no_scores
from pipeline.inference.images import decode
from schemas.errors import SchemaError
from schemas.fields import check_inside
from schemas.messages import Encoded, Escalation, InferenceResult, Reason, Region, Source

__all__ = [
    "Job",
    "answer",
    "check_addressing",
    "check_embedding",
    "embedding_analyses",
    "embedding_input",
    "pixel_analyses",
    "site_of",
]


@dataclass(slots=True)
class Job:
    """A fetched escalation, with the message to ack (or nak, or term) once answered."""

    msg: Msg
    escalation: Escalation


def site_of(subject: str) -> str:
    """The site of ``escalations.<site>.<camera>``; ``unknown`` for any other subject."""
    tokens = subject.split(".")
    return tokens[1] if len(tokens) == 3 else "unknown"


def check_addressing(escalation: Escalation, subject: str) -> None:
    """SchemaError unless the escalation speaks for its subject's site and answers to it."""
    # A crafted reply_to cannot reach another site.
    site = site_of(subject)
    if escalation.site != site:
        raise SchemaError(f"escalation.site: {escalation.site!r} but it came on {subject!r}")
    if not escalation.reply_to.startswith(f"replies.{site}."):
        raise SchemaError(
            f"escalation.reply_to: {escalation.reply_to!r} is not a reply subject of site {site!r}"
        )


def _embedding_rows(escalation: Escalation) -> np.ndarray:
    """The embedding as (rows, width): a single vector is one row."""
    assert escalation.embedding is not None
    embedding = escalation.embedding
    return embedding.reshape(1, -1) if embedding.ndim == 1 else embedding


def check_embedding(escalation: Escalation, width: int) -> None:
    """An embedding must be one row per region, ``width`` values each."""
    if escalation.embedding is None:
        return
    rows, got = _embedding_rows(escalation).shape
    if rows != len(escalation.regions) or got != width:
        raise SchemaError(
            f"escalation.embedding: shape {list(escalation.embedding.shape)} but "
            f"{len(escalation.regions)} regions of {width} values each are needed"
        )


def embedding_input(jobs: list[Job]) -> np.ndarray:
    """The embedding model's input: every job's embedding rows, float32."""
    rows = [_embedding_rows(job.escalation) for job in jobs]
    return np.concatenate(rows).astype(np.float32, copy=False)


def _region_images(escalation: Escalation) -> list[np.ndarray]:
    """The pixels of every region, decoded: its crop, or cut from the whole image.

    SchemaError for a region reaching outside an encoded whole image (a raw one's
    regions are checked when the message is read).
    """
    if not isinstance(escalation.image, Encoded):
        return [decode(pixels) for pixels in escalation.region_pixels()]
    whole = decode(escalation.image)
    check_inside("escalation.regions", escalation.regions, whole)
    return [r.crop(whole) for r in escalation.regions]


def _looks(escalation: Escalation) -> list[Look]:
    """One look per region: its pixels, decoded, asked about as a whole."""
    looks = []
    for image in _region_images(escalation):
        height, width = image.shape[:2]
        looks.append(Look(image, (Region(0, 0, width, height),)))
    return looks


def pixel_analyses(analyser: Analyser, jobs: list[Job]) -> list[Analysis]:
    """The analyser's answer per job: every region's pixels looked at on their own."""
    looks = [_looks(job.escalation) for job in jobs]
    answers = analyser.analyse([look for per_job in looks for look in per_job])
    out, at = [], 0
    for job, per_job in zip(jobs, looks, strict=True):
        out.append(_combine(job.escalation.regions, answers[at : at + len(per_job)]))
        at += len(per_job)
    return out


def embedding_analyses(classifier: RegionClassifier, jobs: list[Job]) -> list[Analysis]:
    """The embedding classifier's answer per job: one row per region."""
    probabilities = classifier.model.predict_proba(embedding_input(jobs))
    out, row = [], 0
    for job in jobs:
        regions = job.escalation.regions
        out.append(classifier.of_rows(regions, probabilities[row : row + len(regions)], None))
        row += len(regions)
    return out


def _moved(box: Region, to: Region) -> Region:
    return Region(box.x + to.x, box.y + to.y, box.w, box.h)


def _combine(regions: tuple[Region, ...], answers: list[Analysis]) -> Analysis:
    """Per-region answers (boxes in the region's own pixels) as one, in frame pixels."""
    rows = [a.scores for a in answers if a.scores.size]
    return Analysis(
        confidence=min((a.confidence for a in answers), default=1.0),
        labels=tuple(label for a in answers for label in a.labels),
        scores=np.concatenate(rows) if len(rows) == len(answers) and rows else no_scores(),
        detections=tuple(
            replace(d, box=_moved(d.box, region))
            for region, a in zip(regions, answers, strict=True)
            for d in a.detections
        ),
        lines=tuple(
            replace(line, box=_moved(line.box, region))
            for region, a in zip(regions, answers, strict=True)
            for line in a.lines
        ),
    )


def answer(escalation: Escalation, analysis: Analysis, analyser: Analyser) -> InferenceResult:
    """The cloud's answer to ``escalation``."""
    return InferenceResult(
        frame_id=escalation.frame_id,
        site=escalation.site,
        camera=escalation.camera,
        seq=escalation.seq,
        labels=analysis.labels,
        scores=analysis.scores,
        confidence=min(1.0, analysis.confidence),
        source=Source.CLOUD,
        model=analyser.name,
        model_version=analyser.version,
        # Never negative, whatever the clocks of edge and cloud say.
        latency_ms=max(0.0, (time.time() - escalation.captured_at) * 1000),
        reason=Reason.CLOUD_ANSWER,
        edge_labels=escalation.edge_labels,
        detections=analysis.detections,
        lines=analysis.lines,
    )
