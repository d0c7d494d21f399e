"""Every result the edge worker makes, built here and nowhere else.

A frame's result is built once when its decision is made (``decided``), or when it is
shed before the model (``shed``); ``fallback`` turns the edge's answer into a final
one when the cloud was wanted and did not answer; ``from_cloud`` takes the cloud's
answer as final. ``final`` stamps what only the moment of publishing knows: the
latency and the tiers the frame passed.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from edge_worker.decision import Decision
from edge_worker.intake import Request
from pipeline.inference.model import OnnxModel
from schemas.messages import Frame, InferenceResult, Reason, Source

__all__ = ["decided", "fallback", "final", "from_cloud", "shed"]

_EDGE = (Source.EDGE.value,)
_EDGE_THEN_CLOUD = (Source.EDGE.value, Source.CLOUD.value)


def decided(
    frame: Frame, scores: np.ndarray, confidence: float, model: OnnxModel, decision: Decision
) -> InferenceResult:
    """The edge's answer to ``frame``, with the reason its decision gave."""
    return InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=tuple(int(i) for i in scores.argmax(axis=1)),
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        confidence=confidence,
        source=Source.EDGE,
        model=model.name,
        model_version=model.version,
        latency_ms=0.0,  # set by ``final``
        reason=decision.reason,
        degraded=decision.degraded,
    )


def shed(frame: Frame, model: OnnxModel) -> InferenceResult:
    """No answer: the edge was too hot or too full to look at ``frame``."""
    return InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=(),
        scores=np.zeros((0, model.n_classes), dtype=np.float32),
        confidence=0.0,
        source=Source.EDGE,
        model=model.name,
        model_version=model.version,
        latency_ms=0.0,
        reason=Reason.SHED,
        degraded=True,
    )


def fallback(edge_result: InferenceResult, reason: Reason) -> InferenceResult:
    """The edge's own answer as the final one, marked degraded: the cloud was wanted."""
    return replace(edge_result, reason=reason, degraded=True, edge_labels=edge_result.labels)


def from_cloud(cloud: InferenceResult, edge_labels: tuple[int, ...] | None) -> InferenceResult:
    """The cloud's answer as the final result."""
    return replace(cloud, reason=Reason.CLOUD_ANSWER, degraded=False, edge_labels=edge_labels)


def final(result: InferenceResult, request: Request | None) -> InferenceResult:
    """``result`` as published: its latency since capture and the tiers it passed."""
    here = _EDGE if result.source is Source.EDGE else _EDGE_THEN_CLOUD
    if request is None:
        # A cloud answer for a frame this run never saw: where it came from is lost.
        return replace(result, path=here)
    latency_ms = (time.time() - request.frame.captured_at) * 1000
    return replace(result, latency_ms=max(0.0, latency_ms), path=request.frame.path + here)
