"""The edge's health as the drift monitor reports it, published on ``health.<site>``.

``HealthReport`` is what ``DriftMonitor.report`` returns (edge_worker/drift.py): the
status, why, what to do about it (``Recommendation``) and the figures behind it.
``to_json`` is its wire form (docs/wire-format.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final

import orjson

__all__ = ["HEALTH_SCHEMA", "HealthReport", "HealthStatus", "Recommendation"]

HEALTH_SCHEMA: Final = 1


class HealthStatus(StrEnum):
    """Whether the edge model can be trusted as deployed."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"


class Recommendation(StrEnum):
    """What an operator (or a controller) should do about a degraded edge."""

    NONE = "none"
    RAISE_THRESHOLD = "raise_threshold"
    RETRAIN = "retrain"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The edge's health as of ``at`` (seconds on the clock the monitor was fed).

    Figures are None while their window is empty. ``rolling_agreement`` and
    ``confidence_gap`` are over the compared window (escalated and shadow frames),
    ``kept_accuracy_estimate`` over the shadow window, ``escalated_agreement`` over the
    escalated frames of the compared window. ``alarm_at`` is when the CUSUM alarmed
    (None when not alarmed), ``change_at`` its estimate of when the change began.
    """

    at: float
    status: HealthStatus
    reasons: tuple[str, ...]
    recommendation: Recommendation
    recommended_threshold: float | None
    rolling_agreement: float | None
    confidence_gap: float | None
    kept_accuracy_estimate: float | None
    escalated_agreement: float | None
    cusum: float
    cusum_threshold: float
    alarm_at: float | None
    change_at: float | None
    compared_samples: int
    shadow_samples: int
    escalated_samples: int
    window: int
    shadow_window: int
    observed_total: int
    site: str | None = None

    def to_json(self) -> bytes:
        """The report as one JSON object (UTF-8), as published on ``health.<site>``."""
        return orjson.dumps({"type": "health", "v": HEALTH_SCHEMA, **asdict(self)})
