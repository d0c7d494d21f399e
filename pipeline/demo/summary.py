"""Collect final results and score a run: counts, accuracy, bytes, latency.

The collector listens on ``results.<site>.*`` like any downstream consumer would.
Edge-only and cloud-only accuracy are measured by running both models on exactly the
crops that were published, so the three accuracies compare the same frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from pipeline.camera.simulator import PublishedFrame
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.digits import pixels_to_features
from pipeline.planning.costs import CostModel, Mode
from schemas import subjects
from schemas.codec import decode_result
from schemas.errors import SchemaError
from schemas.messages import InferenceResult, Source

__all__ = ["ResultCollector", "format_summary", "percentiles", "summarize"]


@dataclass
class ResultCollector:
    """Keeps the first final result per frame and counts any repeat."""

    results: dict[str, tuple[InferenceResult, float]] = field(default_factory=dict)
    duplicates: int = 0
    undecodable: int = 0
    _sub: Subscription | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, nc: Client, site: str) -> None:
        self._sub = await nc.subscribe(subjects.results(site), cb=self._on_result)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    async def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` distinct frames have a result; False if time ran out."""
        deadline = time.monotonic() + timeout
        while len(self.results) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return True

    async def _on_result(self, msg: Msg) -> None:
        received = time.time()
        try:
            result = decode_result(msg.data)
        except SchemaError:
            self.undecodable += 1
            return
        if result.frame_id in self.results:
            self.duplicates += 1
        else:
            self.results[result.frame_id] = (result, received)
            self._arrived.set()


def _accuracy(correct: int, total: int) -> float | None:
    return None if total == 0 else round(correct / total, 4)


def _offline_accuracy(analyser: Analyser, published: Sequence[PublishedFrame]) -> float | None:
    """A region classifier's accuracy on every published region (None for other tiers)."""
    crops = [c for p in published for c in p.crops]
    truth = np.array([t for p in published for t in p.truth])
    if not crops or not isinstance(analyser, RegionClassifier):
        return None
    predicted = analyser.model.predict_proba(pixels_to_features(crops)).argmax(axis=1)
    return _accuracy(int((predicted == truth).sum()), len(truth))


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2)}


def summarize(
    published: Sequence[PublishedFrame],
    collector: ResultCollector,
    *,
    edge_model: Analyser,
    cloud_model: Analyser,
    escalated_bytes: float,
    escalations: float,
    dead_letters: float,
    seconds: float,
    answer_bytes: float = 0.0,
    costs: CostModel | None = None,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """The run's figures as one JSON-ready dict (docs/architecture.md explains each)."""
    sent = {p.frame_id: p for p in published}
    answered = {fid: r for fid, r in collector.results.items() if fid in sent}
    missing = len(sent) - len(answered)
    reasons = Counter(r.reason.value for r, _ in answered.values())
    sources = Counter(r.source.value for r, _ in answered.values())
    degraded = sum(1 for r, _ in answered.values() if r.degraded)
    # Regions right and regions scored: all frames, the skipped ones, the others.
    scores = {"all": [0, 0], "skipped": [0, 0], "fresh": [0, 0]}
    for fid, (result, _) in answered.items():
        truth = sent[fid].truth
        right = 0
        if len(result.labels) == len(truth):
            right = sum(int(a == b) for a, b in zip(result.labels, truth, strict=True))
        for key in ("all", "skipped" if sent[fid].skipped else "fresh"):
            scores[key][0] += right
            scores[key][1] += len(truth)
    correct, total = scores["all"]
    all_frames_bytes = sum(p.size_bytes for p in published)
    to_edge_bytes = sum(p.size_bytes for p in published if p.tier == "edge")
    latencies = [
        (received - sent[fid].captured_at) * 1000 for fid, (_, received) in answered.items()
    ]
    n = len(sent)
    summary: dict[str, Any] = {
        "frames_published": n,
        "final_results": len(answered),
        "missing_results": missing,
        "duplicate_results": collector.duplicates,
        "every_frame_one_result": missing == 0 and collector.duplicates == 0,
        "seconds": round(seconds, 2),
        "share_final_from_device": _accuracy(sources[Source.DEVICE.value], n),
        "share_final_from_edge": _accuracy(sources[Source.EDGE.value], n),
        "share_final_from_cloud": _accuracy(sources[Source.CLOUD.value], n),
        "share_escalated": _accuracy(int(escalations), n),
        "degraded_results": degraded,
        "reasons": dict(sorted(reasons.items())),
        "dead_letters": int(dead_letters),
        "frames_skipped": sum(p.skipped for p in published),
        "accuracy": {
            "edge_only": _offline_accuracy(edge_model, published),
            "hybrid": _accuracy(correct, total),
            "cloud_only": _offline_accuracy(cloud_model, published),
            # Hybrid, split by whether the device reused an earlier answer.
            "skipped_frames": _accuracy(*scores["skipped"]),
            "fresh_frames": _accuracy(*scores["fresh"]),
        },
        "bytes_camera_to_edge": to_edge_bytes,
        "bytes_to_cloud": {
            "hybrid": int(escalated_bytes),
            "every_frame": all_frames_bytes,
            "share": _accuracy(int(escalated_bytes), all_frames_bytes),
        },
        "latency_ms": percentiles(latencies),
        "models": {
            "edge": f"{edge_model.name} {edge_model.version}",
            "cloud": f"{cloud_model.name} {cloud_model.version}",
        },
    }
    summary["cost_per_million_frames_usd"] = _costs(
        costs or CostModel(),
        share=escalations / n if n else 0.0,
        bytes_per_escalation=escalated_bytes / escalations if escalations else 0.0,
        bytes_per_frame=all_frames_bytes / n if n else 0.0,
        bytes_per_reply=answer_bytes / escalations if escalations else 0.0,
    )
    if keep_latencies:
        summary["latency_samples_ms"] = [round(v, 3) for v in latencies]
    return summary


def _costs(
    model: CostModel,
    *,
    share: float,
    bytes_per_escalation: float,
    bytes_per_frame: float,
    bytes_per_reply: float,
) -> dict[str, float]:
    """Dollars per 1M frames in each mode, at this run's measured shares and sizes."""

    def total(mode: Mode) -> float:
        breakdown = model.cost_per_million(
            mode, share, bytes_per_escalation, bytes_per_frame, bytes_per_reply=bytes_per_reply
        )
        return round(breakdown.total, 4)

    return {mode.value: total(mode) for mode in (Mode.EDGE_ONLY, Mode.HYBRID, Mode.CLOUD_ONLY)}


def format_summary(s: dict[str, Any]) -> str:
    """The summary as the lines a person reads at the end of ``hybridfleet stack``."""
    acc = s["accuracy"]
    b = s["bytes_to_cloud"]
    lat = s["latency_ms"]

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    tiers = []
    if s["share_final_from_device"]:
        tiers = [
            f"answered on a device  {pct(s['share_final_from_device'])} "
            f"(skipped as unchanged {s['frames_skipped']}; accuracy on skipped "
            f"{pct(acc['skipped_frames'])}, on the others {pct(acc['fresh_frames'])})",
            f"bytes camera to edge  {s['bytes_camera_to_edge']:,} of {b['every_frame']:,}",
        ]
    return "\n".join(
        [
            f"frames published      {s['frames_published']}",
            f"final results         {s['final_results']} "
            f"(missing {s['missing_results']}, duplicates {s['duplicate_results']})",
            *tiers,
            f"answered on the edge  {pct(s['share_final_from_edge'])}",
            f"escalated             {pct(s['share_escalated'])} "
            f"(answered by the cloud {pct(s['share_final_from_cloud'])}, "
            f"degraded {s['degraded_results']})",
            f"decisions             {', '.join(f'{k} {v}' for k, v in s['reasons'].items())}",
            f"accuracy              edge-only {pct(acc['edge_only'])}, hybrid {pct(acc['hybrid'])}"
            f", cloud-only {pct(acc['cloud_only'])}",
            f"bytes to the cloud    {b['hybrid']:,} of {b['every_frame']:,} if every frame "
            f"were sent ({pct(b['share'])})",
            f"end-to-end latency    p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms",
            "cost per 1M frames    "
            + ", ".join(f"{k} ${v:.2f}" for k, v in s["cost_per_million_frames_usd"].items())
            + " (docs/cost-model.md; placeholder prices)",
            f"dead letters          {s['dead_letters']}",
            f"models                edge {s['models']['edge']}, cloud {s['models']['cloud']}",
        ]
    )
