"""Prometheus metrics of one cloud worker, in a registry of its own (pipeline/metrics.py)."""

from __future__ import annotations

from pipeline.metrics import BATCH_BUCKETS, WorkerMetrics, counter, histogram

__all__ = ["CloudMetrics"]

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class CloudMetrics(WorkerMetrics):
    """Counters and histograms named ``hybridfleet_cloud_*``."""

    tier = "cloud"

    escalations = counter("Escalations fetched from the stream (redeliveries included).")
    answered = counter("Answers published to a reply subject and acked.", "site", name="answers")
    redelivered = counter(
        "Escalations fetched more than once (a worker died or was too slow to ack).",
        name="redeliveries",
    )
    expired_dropped = counter(
        "Escalations acked unanswered because their deadline had passed (setting 'drop')."
    )
    model_failures = counter("Escalations the model failed on (naked for redelivery).")
    dead_letters = counter(
        "Escalations refused, stored on a dead-letter subject and terminated.", "site", "kind"
    )
    batch_size = histogram("Escalations per model call.", buckets=BATCH_BUCKETS)
    inference_seconds = histogram(
        "Wall time of one batched model call, pre-processing included.", buckets=_SECONDS_BUCKETS
    )
    deferred = counter(
        "Non-urgent escalations parked to be answered in a bigger batch (cloud.defer_batch).",
        name="deferred_escalations",
    )
