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

from edge_worker.decision import Decision
from edge_worker.intake import Request
from pipeline.inference.analysis import Analyser, Analysis, no_scores
from schemas.messages import Frame, InferenceResult, Reason, Source

__all__ = ["decided", "fallback", "final", "from_cloud", "shed"]

_EDGE = (Source.EDGE.value,)
_EDGE_THEN_CLOUD = (Source.EDGE.value, Source.CLOUD.value)


def decided(
    frame: Frame, analysis: Analysis, analyser: Analyser, decision: Decision
) -> InferenceResult:
    """The edge's answer to ``frame``, with the reason its decision gave."""
    return InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=analysis.labels,
        scores=analysis.scores,
        confidence=analysis.confidence,
        source=Source.EDGE,
        model=analyser.name,
        model_version=analyser.version,
        latency_ms=0.0,  # set by ``final``
        reason=decision.reason,
        degraded=decision.degraded,
        detections=analysis.detections,
        lines=analysis.lines,
    )


def shed(frame: Frame, analyser: Analyser) -> InferenceResult:
    """No answer: the edge was too hot or too full to look at ``frame``."""
    return InferenceResult(
        frame_id=frame.frame_id,
        site=frame.site,
        camera=frame.camera,
        seq=frame.seq,
        labels=(),
        scores=no_scores(),
        confidence=0.0,
        source=Source.EDGE,
        model=analyser.name,
        model_version=analyser.version,
        latency_ms=0.0,
        reason=Reason.SHED,
        degraded=True,
    )


def fallback(edge_result: InferenceResult, reason: Reason) -> InferenceResult:
    """The edge's own answer as the final one, marked degraded: the cloud was wanted."""
    return replace(edge_result, reason=reason, degraded=True, edge_labels=edge_result.labels)


def from_cloud(
    cloud: InferenceResult,
    edge_labels: tuple[int, ...] | None,
    edge: InferenceResult | None = None,
) -> InferenceResult:
    """The cloud's answer as the final result.

    A region classifier's escalation sent every region, so the cloud's answer is the
    whole answer. A detector's or reader's sent only what the edge was unsure of: the
    cloud's detections and lines then take the place of the edge's with the same box,
    and the edge's others stay (its answer, ``edge``, when this worker still has it).
    """
    final = replace(cloud, reason=Reason.CLOUD_ANSWER, degraded=False, edge_labels=edge_labels)
    if edge is None or edge.labels or not (edge.detections or edge.lines):
        return final
    found = {d.box: d for d in cloud.detections}
    read = {line.box: line for line in cloud.lines}
    detections = tuple(found.pop(d.box, d) for d in edge.detections) + tuple(found.values())
    lines = tuple(read.pop(line.box, line) for line in edge.lines) + tuple(read.values())
    certainties = [d.score for d in detections] + [line.confidence for line in lines]
    return replace(
        final,
        detections=detections,
        lines=lines,
        confidence=min(certainties, default=cloud.confidence),
    )


def final(result: InferenceResult, request: Request | None) -> InferenceResult:
    """``result`` as published: its latency since capture and the tiers it passed."""
    here = _EDGE if result.source is Source.EDGE else _EDGE_THEN_CLOUD
    if request is None:
        # A cloud answer for a frame this run never saw: where it came from is lost.
        return replace(result, path=here)
    latency_ms = (time.time() - request.frame.captured_at) * 1000
    return replace(result, latency_ms=max(0.0, latency_ms), path=request.frame.path + here)
