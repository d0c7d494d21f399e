"""Prometheus metrics of one cloud worker, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, Info

__all__ = ["CloudMetrics"]


class CloudMetrics:
    """Counters and histograms named ``hybridfleet_cloud_*``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.escalations = Counter(
            "hybridfleet_cloud_escalations",
            "Escalations fetched from the stream (redeliveries included).",
            registry=r,
        )
        self.answered = Counter(
            "hybridfleet_cloud_answers",
            "Answers published to a reply subject and acked.",
            ["site"],
            registry=r,
        )
        self.redelivered = Counter(
            "hybridfleet_cloud_redeliveries",
            "Escalations fetched more than once (a worker died or was too slow to ack).",
            registry=r,
        )
        self.expired_dropped = Counter(
            "hybridfleet_cloud_expired_dropped",
            "Escalations acked unanswered because their deadline had passed (setting 'drop').",
            registry=r,
        )
        self.model_failures = Counter(
            "hybridfleet_cloud_model_failures",
            "Escalations the model failed on (naked for redelivery).",
            registry=r,
        )
        self.dead_letters = Counter(
            "hybridfleet_cloud_dead_letters",
            "Escalations refused, stored on a dead-letter subject and terminated.",
            ["site", "kind"],
            registry=r,
        )
        self.batch_size = Histogram(
            "hybridfleet_cloud_batch_size",
            "Escalations per model call.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "hybridfleet_cloud_inference_seconds",
            "Wall time of one batched model call, pre-processing included.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.deferred = Counter(
            "hybridfleet_cloud_deferred_escalations",
            "Non-urgent escalations parked to be answered in a bigger batch (cloud.defer_batch).",
            registry=r,
        )
        self.model_swaps = Counter(
            "hybridfleet_cloud_model_swaps",
            "Times the worker switched to another model (desired state in HF_DESIRED).",
            registry=r,
        )
        self.bundle_refusals = Counter(
            "hybridfleet_cloud_bundle_refusals",
            "Model bundles refused (bad signature or checksum, unreachable); the model ran on.",
            registry=r,
        )
        self.model = Info("hybridfleet_cloud_model", "The model this worker runs.", registry=r)

    def value(self, name: str, **labels: str) -> float:
        """Read one sample back (0 when it has not been observed yet)."""
        return self.registry.get_sample_value(name, labels) or 0.0
