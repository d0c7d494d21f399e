"""Prometheus metrics of one edge worker, in a registry of its own (pipeline/metrics.py)."""

from __future__ import annotations

from pipeline.metrics import BATCH_BUCKETS, WorkerMetrics, counter, gauge, histogram

__all__ = ["EdgeMetrics"]

_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class EdgeMetrics(WorkerMetrics):
    """Counters, gauges and histograms named ``hybridfleet_edge_*``, labelled by site."""

    tier = "edge"
    worker_labels = ("site",)

    frames_received = counter("Frames taken off NATS.")
    decisions = counter("Final results published, by the reason code that decided them.", "reason")
    escalations = counter(
        "Frames stored in the escalation stream, by what left the site.", "privacy"
    )
    escalated_bytes = counter("Bytes of escalation messages sent towards the cloud.")
    escalated_crops = counter(
        "Crops sent towards the cloud in escalations: the regions, detections or text "
        "lines the edge was unsure of."
    )
    answer_bytes = counter("Bytes of cloud answers received.")
    received_bytes = counter(
        "Bytes of frame messages received: what sending every frame would cost."
    )
    escalation_failures = counter(
        "Escalations the site stream did not store (full or unreachable)."
    )
    link_up = gauge(
        "1 while the cloud's streams answer, 0 while they cannot be reached.", name="cloud_link_up"
    )
    dead_letters = counter(
        "Messages refused and stored on a dead-letter subject, by kind of fault.", "kind"
    )
    shed = counter(
        "Frames dropped unanswered by the full queue (answered with reason 'shed').",
        name="shed_frames",
    )
    dropped_frames = counter(
        "Frames dropped unread, by where: 'intake' (a subscription's buffer in this worker "
        "was full) or 'site_stream' (FRAMES_<site> discarded them before any worker of the "
        "site pulled them; each counted by one worker only).",
        "place",
    )
    intake_backlog = gauge(
        "Frames waiting in FRAMES_<site> for the site's edge workers, as of the last pull."
    )
    repeated_frames = counter(
        "Frames whose id was in flight or already answered (edge_worker/repeats.py).", "state"
    )
    late_replies = counter(
        "Cloud answers that came after the frame was final (deadline passed, or a repeat).",
        name="late_cloud_replies",
    )
    cloud_spend_usd = counter(
        "Estimated US dollars spent on escalations (cloud inference and bytes sent)."
    )
    tracked_lines = counter(
        "Text lines the edge was unsure of, by what their track decided (edge_worker/"
        "tracks.py): ask (with the reason), reuse the cloud's reading, wait for it, or "
        "untracked (asked about as without tracks).",
        "action",
        "reason",
    )
    shadow_escalations = counter(
        "Confidently kept frames also sent to the cloud, only to be compared (drift)."
    )
    compared = counter(
        "Frames with both an edge and a cloud answer, by kind (escalated or shadow).",
        "kind",
        name="drift_compared",
    )
    agreed = counter(
        "Compared frames whose edge and cloud labels agree, by kind.", "kind", name="drift_agreed"
    )
    drift_agreement = gauge("Rolling edge-cloud agreement over the drift monitor's window.")
    health_degraded = gauge("1 while the drift monitor reports the edge model degraded.")
    offload_pressure = gauge("0..1: how hard heat and queue depth make the edge lean on the cloud.")
    temperature = gauge(
        "The device's temperature (sysfs thermal zones, or the simulated device).",
        name="temperature_celsius",
    )
    site_backlog = gauge("Escalations stored at the site, not yet taken by the cloud.")
    # Inherited, listed again for their place among the others.
    model_swaps = WorkerMetrics.model_swaps
    bundle_refusals = WorkerMetrics.bundle_refusals
    faces_blurred = counter("Faces found and blurred in whole frames before they left the site.")
    queue_depth = gauge("Frames waiting for the model.")
    pending_escalations = gauge("Escalated frames waiting for a cloud answer.")
    batch_size = histogram("Frames per model call.", buckets=BATCH_BUCKETS)
    inference_seconds = histogram(
        "Wall time of one batched model call, pre-processing included.", buckets=_SECONDS_BUCKETS
    )
    cloud_round_trip_seconds = histogram(
        "From storing an escalation to receiving the cloud's answer.", buckets=_SECONDS_BUCKETS
    )
