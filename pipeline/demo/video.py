"""The stack on video cameras: JPEG frames from real sources, and what happened to them.

``hybridfleet stack --source URL`` runs the edge and cloud workers of the stack with
video cameras (pipeline/camera/sources) instead of the digits simulator. Video has no
ground truth, so the summary counts rather than scores: frames, final results (each
frame exactly once), what was found and read per tier, escalations and the crops they
carried, bytes to the cloud against sending every frame, latency.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.camera.sources.cameras import CameraCounts
from pipeline.demo.summary import ResultCollector, percentiles

__all__ = ["format_video_summary", "summarize_video"]


def summarize_video(
    counts: CameraCounts,
    collector: ResultCollector,
    *,
    models: dict[str, str],
    frame_bytes: int,
    escalations: int,
    escalated_bytes: float,
    crops: int,
    dead_letters: float,
    seconds: float,
    tracked_lines: dict[str, int] | None = None,
    cloud_spend_usd: float = 0.0,
    keep_results: bool = False,
) -> dict[str, Any]:
    """The summary of a video run (see the module's doc); with ``keep_results``, the
    final results themselves under ``results`` (not JSON)."""
    results = [r for r, _ in collector.results.values()]
    published = counts.published
    found = Counter(d.source.value for r in results for d in r.detections)
    read = Counter(line.source.value for r in results for line in r.lines)
    return {
        "frames_published": published,
        "frames_dropped_at_cameras": counts.dropped,
        "camera_reconnects": counts.reconnects,
        "final_results": len(results),
        "missing_results": max(0, published - len(results)),
        "duplicate_results": collector.duplicates,
        "every_frame_one_result": len(results) == published and collector.duplicates == 0,
        "answered_by": dict(Counter(r.source.value for r in results)),
        "reasons": dict(Counter(r.reason.value for r in results)),
        "detections_by_tier": dict(found),
        "lines_by_tier": dict(read),
        "escalations": escalations,
        "crops_escalated": crops,
        "tracked_lines": tracked_lines or {},
        "cloud_spend_usd": round(cloud_spend_usd, 6),
        "bytes_to_cloud": {
            "hybrid": int(escalated_bytes),
            "every_frame": frame_bytes,
            "share": round(escalated_bytes / frame_bytes, 4) if frame_bytes else None,
        },
        "latency_ms": percentiles([r.latency_ms for r in results]),
        "dead_letters": int(dead_letters),
        "seconds": round(seconds, 2),
        "models": models,
    } | ({"results": results} if keep_results else {})


def format_video_summary(s: dict[str, Any]) -> str:
    """The summary as the lines a person reads at the end of the run."""
    b, lat = s["bytes_to_cloud"], s["latency_ms"]
    share = "n/a" if b["share"] is None else f"{100 * b['share']:.1f}%"

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"

    return "\n".join(
        [
            f"frames published      {s['frames_published']} (dropped at the cameras "
            f"{s['frames_dropped_at_cameras']}, reconnects {s['camera_reconnects']})",
            f"final results         {s['final_results']} "
            f"(missing {s['missing_results']}, duplicates {s['duplicate_results']})",
            f"answered by           {listed(s['answered_by'])}",
            f"decisions             {listed(s['reasons'])}",
            f"detections            {listed(s['detections_by_tier'])}",
            f"text lines            {listed(s['lines_by_tier'])}",
            f"escalated             {s['escalations']} frames, {s['crops_escalated']} crops",
            f"tracked lines         {listed(s['tracked_lines'])}",
            f"bytes to the cloud    {b['hybrid']:,} of {b['every_frame']:,} if every frame "
            f"were sent ({share})",
            f"end-to-end latency    p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms",
            f"dead letters          {s['dead_letters']}",
            f"models                edge {s['models']['edge']}, cloud {s['models']['cloud']}",
        ]
    )
