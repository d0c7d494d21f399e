"""An escalation as a cloud worker's job: its checks, a batch's model input, its answer.

Pure, no I/O. An escalation speaks only for the site of its subject, and its answer
may only go to that site's reply subjects; one that carries an embedding carries one
row per region, as wide as the embedding model's input. A batch of jobs becomes one
row of model input per region; the model's rows are handed back job by job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from nats.aio.msg import Msg

from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.errors import SchemaError
from schemas.messages import Escalation, InferenceResult, Reason, Source

__all__ = [
    "Job",
    "answer",
    "check_addressing",
    "check_embedding",
    "embedding_input",
    "pixel_input",
    "rows_per_job",
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


def pixel_input(jobs: list[Job]) -> np.ndarray:
    """The classifier's input: the features of every region of every job."""
    return pixels_to_features([crop for job in jobs for crop in job.escalation.region_pixels()])


def rows_per_job(jobs: list[Job], probabilities: np.ndarray) -> list[tuple[Job, np.ndarray]]:
    """The model's rows for a batch, handed back job by job (one row per region)."""
    out, row = [], 0
    for job in jobs:
        n = len(job.escalation.regions)
        out.append((job, probabilities[row : row + n]))
        row += n
    return out


def answer(escalation: Escalation, scores: np.ndarray, model: OnnxModel) -> InferenceResult:
    """The cloud's answer to ``escalation`` from the model's ``scores`` (a row per region)."""
    labels = tuple(int(i) for i in scores.argmax(axis=1))
    return InferenceResult(
        frame_id=escalation.frame_id,
        site=escalation.site,
        camera=escalation.camera,
        seq=escalation.seq,
        labels=labels,
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        confidence=min(1.0, float(scores.max(axis=1).min())) if labels else 1.0,
        source=Source.CLOUD,
        model=model.name,
        model_version=model.version,
        # Never negative, whatever the clocks of edge and cloud say.
        latency_ms=max(0.0, (time.time() - escalation.captured_at) * 1000),
        reason=Reason.CLOUD_ANSWER,
        edge_labels=escalation.edge_labels,
    )
