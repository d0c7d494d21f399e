"""Prometheus metrics of a process's video cameras, in a registry of their own
(pipeline/metrics.py): ``hybridfleet_camera_*``, labelled by camera."""

from __future__ import annotations

from pipeline.metrics import WorkerMetrics, counter

__all__ = ["CameraMetrics"]


class CameraMetrics(WorkerMetrics):
    """Frames sent, skipped and dropped, and reconnects, per camera."""

    tier = "camera"

    published_frames = counter("Frames published to the site.", "camera")
    skipped_frames = counter(
        "Decoded frames not sent, to hold the camera's rate (rate_hz).", "camera"
    )
    dropped_frames = counter(
        "Frames dropped at the camera: superseded by a newer one before the publisher "
        "took them, or refused by the NATS client (publish_refused).",
        "camera",
        "reason",
    )
    reconnects = counter(
        "Times a live source was reopened after it ended, failed or could not be opened.",
        "camera",
    )
