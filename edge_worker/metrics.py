"""Prometheus metrics of one edge worker, in a registry of its own.

A registry per worker lets the embedded stack run several workers in one process
and read each one's counters for its summary.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

__all__ = ["EdgeMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class EdgeMetrics:
    """Counters, gauges and histograms named ``hybridfleet_edge_*``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames_received = Counter(
            "hybridfleet_edge_frames_received", "Frames taken off NATS.", ["site"], registry=r
        )
        self.decisions = Counter(
            "hybridfleet_edge_decisions",
            "Final results published, by the reason code that decided them.",
            ["site", "reason"],
            registry=r,
        )
        self.escalations = Counter(
            "hybridfleet_edge_escalations",
            "Frames stored in the escalation stream, by what left the site.",
            ["site", "privacy"],
            registry=r,
        )
        self.escalated_bytes = Counter(
            "hybridfleet_edge_escalated_bytes",
            "Bytes of escalation messages sent towards the cloud.",
            ["site"],
            registry=r,
        )
        self.answer_bytes = Counter(
            "hybridfleet_edge_answer_bytes",
            "Bytes of cloud answers received.",
            ["site"],
            registry=r,
        )
        self.received_bytes = Counter(
            "hybridfleet_edge_received_bytes",
            "Bytes of frame messages received: what sending every frame would cost.",
            ["site"],
            registry=r,
        )
        self.escalation_failures = Counter(
            "hybridfleet_edge_escalation_failures",
            "Escalations the site stream did not store (full or unreachable).",
            ["site"],
            registry=r,
        )
        self.link_up = Gauge(
            "hybridfleet_edge_cloud_link_up",
            "1 while the cloud's streams answer, 0 while they cannot be reached.",
            ["site"],
            registry=r,
        )
        self.dead_letters = Counter(
            "hybridfleet_edge_dead_letters",
            "Messages refused and stored on a dead-letter subject, by kind of fault.",
            ["site", "kind"],
            registry=r,
        )
        self.shed = Counter(
            "hybridfleet_edge_shed_frames",
            "Frames dropped unanswered by the full queue (answered with reason 'shed').",
            ["site"],
            registry=r,
        )
        self.repeated_frames = Counter(
            "hybridfleet_edge_repeated_frames",
            "Frames whose id was in flight or already answered (edge_worker/repeats.py).",
            ["site", "state"],
            registry=r,
        )
        self.late_replies = Counter(
            "hybridfleet_edge_late_cloud_replies",
            "Cloud answers that came after the frame was final (deadline passed, or a repeat).",
            ["site"],
            registry=r,
        )
        self.cloud_spend_usd = Counter(
            "hybridfleet_edge_cloud_spend_usd",
            "Estimated US dollars spent on escalations (cloud inference and bytes sent).",
            ["site"],
            registry=r,
        )
        self.shadow_escalations = Counter(
            "hybridfleet_edge_shadow_escalations",
            "Confidently kept frames also sent to the cloud, only to be compared (drift).",
            ["site"],
            registry=r,
        )
        self.compared = Counter(
            "hybridfleet_edge_drift_compared",
            "Frames with both an edge and a cloud answer, by kind (escalated or shadow).",
            ["site", "kind"],
            registry=r,
        )
        self.agreed = Counter(
            "hybridfleet_edge_drift_agreed",
            "Compared frames whose edge and cloud labels agree, by kind.",
            ["site", "kind"],
            registry=r,
        )
        self.drift_agreement = Gauge(
            "hybridfleet_edge_drift_agreement",
            "Rolling edge-cloud agreement over the drift monitor's window.",
            ["site"],
            registry=r,
        )
        self.health_degraded = Gauge(
            "hybridfleet_edge_health_degraded",
            "1 while the drift monitor reports the edge model degraded.",
            ["site"],
            registry=r,
        )
        self.offload_pressure = Gauge(
            "hybridfleet_edge_offload_pressure",
            "0..1: how hard heat and queue depth make the edge lean on the cloud.",
            ["site"],
            registry=r,
        )
        self.temperature = Gauge(
            "hybridfleet_edge_temperature_celsius",
            "The device's temperature (sysfs thermal zones, or the simulated device).",
            ["site"],
            registry=r,
        )
        self.site_backlog = Gauge(
            "hybridfleet_edge_site_backlog",
            "Escalations stored at the site, not yet taken by the cloud.",
            ["site"],
            registry=r,
        )
        self.model_swaps = Counter(
            "hybridfleet_edge_model_swaps",
            "Times the worker switched to another model (desired state in HF_DESIRED).",
            ["site"],
            registry=r,
        )
        self.bundle_refusals = Counter(
            "hybridfleet_edge_bundle_refusals",
            "Model bundles refused (bad signature or checksum, unreachable); the model ran on.",
            ["site"],
            registry=r,
        )
        self.faces_blurred = Counter(
            "hybridfleet_edge_faces_blurred",
            "Faces found and blurred in whole frames before they left the site.",
            ["site"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "hybridfleet_edge_queue_depth", "Frames waiting for the model.", ["site"], registry=r
        )
        self.pending_escalations = Gauge(
            "hybridfleet_edge_pending_escalations",
            "Escalated frames waiting for a cloud answer.",
            ["site"],
            registry=r,
        )
        self.batch_size = Histogram(
            "hybridfleet_edge_batch_size",
            "Frames per model call.",
            ["site"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "hybridfleet_edge_inference_seconds",
            "Wall time of one batched model call, pre-processing included.",
            ["site"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.cloud_round_trip_seconds = Histogram(
            "hybridfleet_edge_cloud_round_trip_seconds",
            "From storing an escalation to receiving the cloud's answer.",
            ["site"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.model = Info("hybridfleet_edge_model", "The model this worker runs.", registry=r)

    def value(self, name: str, **labels: str) -> float:
        """Read one sample back (0 when it has not been observed yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0
