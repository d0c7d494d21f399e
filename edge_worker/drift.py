"""Drift monitoring: is the edge model still as good as when it was deployed?

The cloud model is the reference. Two kinds of frames have both answers:

* **escalated** frames, which the edge was unsure of and the cloud answered;
* a **shadow sample** of frames the edge kept, sent to the cloud as well only to be
  compared (``ShadowSampler`` picks them). Only this sample says how good the edge is
  on the frames it answers alone, because escalated frames are chosen for being hard.

``DriftMonitor`` is pure: answers and the time go in, a ``HealthReport``
(edge_worker/health.py) comes out; the worker publishes it and owns the clock.

Detection rule (one sequential test, one windowed check; ``DriftConfig`` holds the
parameters):

1. A one-sided Bernoulli CUSUM on disagreements in the shadow sample. Each shadow
   sample adds ``log(p1/p0)`` if edge and cloud disagree, ``log((1-p1)/(1-p0))`` if they
   agree, and the sum is floored at 0; it alarms at ``cusum_threshold`` and restarts
   from 0. ``p0`` (``baseline_disagreement``) is the disagreement on kept frames when
   healthy, ``p1`` (``drift_disagreement``) the rate it is tuned to catch. The alarm
   latches: it clears when a block of ``recovery_samples`` shadow samples without a
   new alarm shows a disagreement rate no higher than ``recovery_disagreement``, or on
   ``reset()``.
2. The confidence gap, mean edge confidence minus agreement over the last ``window``
   compared frames (escalated and shadow), above ``max_confidence_gap`` once at least
   ``min_gap_samples`` are in the window: the edge has become overconfident.

Either makes the status ``degraded``. The recommendation is worked out on the
shadow samples since the change (the CUSUM's own estimate: the last time it was 0
before the alarm; the whole shadow window when only the gap check fired):

* fewer than ``min_threshold_samples`` of them: ``raise_threshold`` without a number.
  Escalating more is the safe first response, and it is reversible;
* some higher threshold brings them back to ``1 - p0`` agreement while keeping at least
  ``min_coverage`` of them and ``min_threshold_samples`` at the edge:
  ``raise_threshold`` with the lowest such threshold;
* otherwise ``retrain``: the errors are confident, or the confidence no longer means
  what it did, and no threshold fixes that.

Limit: agreement is measured against the cloud model, not the truth. A drift that
also hurts the cloud model (strong blur does) makes "edge accuracy" an estimate of
agreement only.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from edge_worker.health import HealthReport, HealthStatus, Recommendation
from schemas.checks import is_number, require_int, require_number
from schemas.errors import ConfigError

__all__ = ["DriftConfig", "DriftMonitor", "ShadowSampler"]


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Parameters of ``DriftMonitor``; the defaults are argued in docs/benchmarks.md.

    ``baseline_disagreement`` must sit above the edge-cloud disagreement on kept frames
    at the threshold in use: on the held-out digits with the shipped models it is 0.6%
    at threshold 0.9 and 1.3% at 0.72. With ``drift_disagreement`` 0.10 and
    ``cusum_threshold`` 7, a clean stream alarmed within 50,000 shadow samples in 0.5%
    (true rate 0.6%), 1% (1.0%) and 11% (1.3%) of simulated runs: at a threshold as
    low as 0.72, raise ``baseline_disagreement`` to about 0.03.
    """

    window: int = 300  # compared frames (escalated + shadow): agreement and gap
    shadow_window: int = 300  # shadow samples: kept-frame accuracy and threshold search
    max_age_s: float = 600.0  # older samples leave both windows
    baseline_disagreement: float = 0.02  # p0
    drift_disagreement: float = 0.10  # p1
    cusum_threshold: float = 7.0  # h, in nats
    max_confidence_gap: float = 0.05
    min_gap_samples: int = 200
    recovery_samples: int = 200
    # Below p1 with room to spare, so a drift just under p1 does not clear the alarm.
    recovery_disagreement: float = 0.04
    min_coverage: float = 0.5  # share of kept frames a raised threshold must still keep
    min_threshold_samples: int = 30  # shadow samples at or above a recommended threshold

    def __post_init__(self) -> None:
        require_int("window", self.window, 1)
        require_int("shadow_window", self.shadow_window, 1)
        if not is_number(self.max_age_s) or self.max_age_s <= 0:
            raise ConfigError(f"max_age_s must be a finite number > 0, got {self.max_age_s!r}")
        require_number("baseline_disagreement", self.baseline_disagreement, 0, 1, open_=True)
        require_number("drift_disagreement", self.drift_disagreement, 0, 1, open_=True)
        if self.drift_disagreement <= self.baseline_disagreement:
            raise ConfigError(
                f"drift_disagreement ({self.drift_disagreement!r}) must be greater than "
                f"baseline_disagreement ({self.baseline_disagreement!r})"
            )
        if not is_number(self.cusum_threshold) or self.cusum_threshold <= 0:
            raise ConfigError(
                f"cusum_threshold must be a finite number > 0, got {self.cusum_threshold!r}"
            )
        require_number("max_confidence_gap", self.max_confidence_gap, 0, 1, open_=True)
        require_int("min_gap_samples", self.min_gap_samples, 1)
        if self.min_gap_samples > self.window:
            raise ConfigError(
                f"min_gap_samples ({self.min_gap_samples}) must be <= window ({self.window})"
            )
        require_int("recovery_samples", self.recovery_samples, 1)
        require_number("recovery_disagreement", self.recovery_disagreement, 0, 1, open_=False)
        if not (self.baseline_disagreement <= self.recovery_disagreement < self.drift_disagreement):
            raise ConfigError(
                f"recovery_disagreement ({self.recovery_disagreement!r}) must be in "
                f"[baseline_disagreement, drift_disagreement) = [{self.baseline_disagreement!r}, "
                f"{self.drift_disagreement!r})"
            )
        require_number("min_coverage", self.min_coverage, 0, 1, open_=False)
        require_int("min_threshold_samples", self.min_threshold_samples, 1)

    @property
    def disagree_step(self) -> float:
        """What one disagreement adds to the CUSUM: log(p1 / p0) > 0."""
        return math.log(self.drift_disagreement / self.baseline_disagreement)

    @property
    def agree_step(self) -> float:
        """What one agreement adds to the CUSUM: log((1 - p1) / (1 - p0)) < 0."""
        return math.log((1 - self.drift_disagreement) / (1 - self.baseline_disagreement))


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    confidence: float
    agree: bool
    kept: bool


class DriftMonitor:
    """Rolling comparison of edge and cloud answers; see the module docstring.

    ``now`` passed to ``observe`` and ``report`` must come from one clock. Wall time
    (``time.time()``) makes ``at`` and ``alarm_at`` of a published report meaningful to
    whoever reads it; the windows only use differences between samples.
    """

    def __init__(self, config: DriftConfig | None = None, *, site: str | None = None) -> None:
        """Create a monitor that has seen nothing (healthy)."""
        self.config = config if config is not None else DriftConfig()
        if not isinstance(self.config, DriftConfig):
            raise ConfigError(f"config must be a DriftConfig, got {type(config).__name__}")
        self.site = site
        self._compared: deque[_Sample] = deque(maxlen=self.config.window)
        self._shadow: deque[_Sample] = deque(maxlen=self.config.shadow_window)
        self._cusum = 0.0
        self._alarm_at: float | None = None
        # Time of the first shadow sample since the CUSUM was last 0; frozen by an alarm.
        self._change_at: float | None = None
        self._since_alarm = 0  # shadow samples since the alarm (or since recovery restarted)
        self._since_alarm_disagree = 0
        self._observed_total = 0

    def observe(
        self,
        edge_labels: Sequence[int],
        edge_confidence: float,
        cloud_labels: Sequence[int],
        kept: bool,
        now: float,
    ) -> None:
        """Record one frame with both answers.

        ``kept`` is True for a shadow-sampled frame the edge answered itself, False for
        an escalated frame. The frame agrees when every region's label is the same. A
        frame without regions (both label lists empty) is not a comparison and is
        ignored.
        """
        if not is_number(edge_confidence) or not 0.0 <= edge_confidence <= 1.0:
            raise ValueError(f"edge_confidence must be a number in [0, 1], got {edge_confidence!r}")
        if not is_number(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        edge, cloud = tuple(edge_labels), tuple(cloud_labels)
        if not edge and not cloud:
            return
        self.observe_agreement(edge == cloud, edge_confidence, kept, now)

    def observe_agreement(
        self, agree: bool, edge_confidence: float, kept: bool, now: float
    ) -> None:
        """Record one frame whose answers were compared (``agree``: the measure of
        ``pipeline.inference.agreement`` said they agree); as ``observe``."""
        if not is_number(edge_confidence) or not 0.0 <= edge_confidence <= 1.0:
            raise ValueError(f"edge_confidence must be a number in [0, 1], got {edge_confidence!r}")
        if not is_number(now):
            raise ValueError(f"now must be a finite number, got {now!r}")
        sample = _Sample(float(now), float(edge_confidence), bool(agree), bool(kept))
        self._observed_total += 1
        self._compared.append(sample)
        if sample.kept:
            self._shadow.append(sample)
            self._update_cusum(sample.agree, sample.at)
        self._prune(sample.at)

    def report(self, now: float) -> HealthReport:
        """The health as of ``now``: figures over the windows, status, recommendation."""
        cfg = self.config
        oldest = now - cfg.max_age_s
        compared = [s for s in self._compared if s.at >= oldest]
        shadow = [s for s in self._shadow if s.at >= oldest]
        escalated = [s for s in compared if not s.kept]
        agreement = _agreement(compared)
        gap = None
        if compared and agreement is not None:
            gap = sum(s.confidence for s in compared) / len(compared) - agreement
        kept_accuracy = _agreement(shadow)

        reasons = []
        if self._alarm_at is not None:
            disagree = sum(not s.agree for s in shadow)
            reasons.append(
                "edge and cloud disagree more often on the frames the edge keeps: CUSUM "
                f"over the shadow sample crossed {cfg.cusum_threshold:g} (baseline "
                f"{cfg.baseline_disagreement:.1%}; {disagree} of the last {len(shadow)} "
                "shadow samples disagree)"
            )
        if (
            gap is not None
            and len(compared) >= cfg.min_gap_samples
            and gap > cfg.max_confidence_gap
        ):
            reasons.append(
                f"the edge is overconfident: mean confidence exceeds agreement by {gap:.3f} "
                f"(> {cfg.max_confidence_gap:g}) over the last {len(compared)} compared frames"
            )
        status = HealthStatus.DEGRADED if reasons else HealthStatus.HEALTHY
        recommendation, threshold = Recommendation.NONE, None
        if reasons:
            change_at = self._change_at if self._alarm_at is not None else None
            evidence = shadow if change_at is None else [s for s in shadow if s.at >= change_at]
            if len(evidence) < cfg.min_threshold_samples:
                recommendation = Recommendation.RAISE_THRESHOLD
            else:
                threshold = self._threshold_restoring(evidence)
                recommendation = (
                    Recommendation.RETRAIN if threshold is None else Recommendation.RAISE_THRESHOLD
                )
        return HealthReport(
            at=float(now),
            status=status,
            reasons=tuple(reasons),
            recommendation=recommendation,
            recommended_threshold=threshold,
            rolling_agreement=agreement,
            confidence_gap=gap,
            kept_accuracy_estimate=kept_accuracy,
            escalated_agreement=_agreement(escalated),
            cusum=self._cusum,
            cusum_threshold=cfg.cusum_threshold,
            alarm_at=self._alarm_at,
            change_at=self._change_at if self._alarm_at is not None else None,
            compared_samples=len(compared),
            shadow_samples=len(shadow),
            escalated_samples=len(escalated),
            window=cfg.window,
            shadow_window=cfg.shadow_window,
            observed_total=self._observed_total,
            site=self.site,
        )

    def reset(self) -> None:
        """Forget every sample and any alarm: call after a new threshold or model."""
        self._compared.clear()
        self._shadow.clear()
        self._cusum = 0.0
        self._alarm_at = self._change_at = None
        self._since_alarm = self._since_alarm_disagree = 0

    @property
    def alarmed(self) -> bool:
        """True while the CUSUM alarm is latched."""
        return self._alarm_at is not None

    # ------------------------------------------------------------------ internals

    def _update_cusum(self, agree: bool, now: float) -> None:
        cfg = self.config
        step = cfg.agree_step if agree else cfg.disagree_step
        was_zero = self._cusum == 0.0
        self._cusum = max(0.0, self._cusum + step)
        if self._alarm_at is None:
            if self._cusum == 0.0:
                self._change_at = None
            elif was_zero:
                self._change_at = now
        if self._cusum >= cfg.cusum_threshold:
            # (Re)start the alarm: the statistic restarts, and so does the recovery count.
            if self._alarm_at is None:
                self._alarm_at = now
            self._cusum = 0.0
            self._since_alarm = self._since_alarm_disagree = 0
            return
        if self._alarm_at is None:
            return
        self._since_alarm += 1
        self._since_alarm_disagree += not agree
        if self._since_alarm >= cfg.recovery_samples:
            if self._since_alarm_disagree <= cfg.recovery_disagreement * self._since_alarm:
                self._alarm_at = self._change_at = None
            self._since_alarm = self._since_alarm_disagree = 0

    def _prune(self, now: float) -> None:
        oldest = now - self.config.max_age_s
        for window in (self._compared, self._shadow):
            while window and window[0].at < oldest:
                window.popleft()

    def _threshold_restoring(self, shadow: Sequence[_Sample]) -> float | None:
        """The lowest confidence threshold, above some kept frames, that restores them.

        Among the shadow samples with confidence >= t there must be at least
        ``min_threshold_samples`` and ``min_coverage`` of them, agreeing at least
        ``1 - baseline_disagreement`` of the time. None when no t that excludes some
        samples does that (a higher threshold does not help).
        """
        cfg = self.config
        if not shadow:
            return None
        ordered = sorted(shadow, key=lambda s: s.confidence)
        total = len(ordered)
        target = 1.0 - cfg.baseline_disagreement
        lowest = ordered[0].confidence
        # Walk up from the most confident: suffix agreement for each cut point.
        agree_suffix = [0] * (total + 1)
        for i in range(total - 1, -1, -1):
            agree_suffix[i] = agree_suffix[i + 1] + ordered[i].agree
        for i in range(1, total):
            t = ordered[i].confidence
            if t <= lowest or ordered[i - 1].confidence == t:
                continue  # not a cut point: it would exclude nothing, or split a tie
            kept = total - i
            if kept < cfg.min_threshold_samples or kept < cfg.min_coverage * total:
                return None  # higher cuts keep even fewer
            if agree_suffix[i] >= target * kept:
                return t
        return None


def _agreement(samples: Sequence[_Sample]) -> float | None:
    return sum(s.agree for s in samples) / len(samples) if samples else None


class ShadowSampler:
    """Decides which kept frames also go to the cloud, only to be compared.

    Deterministic per frame id: a keyed hash of the id (key: ``seed``) mapped to [0, 1)
    is compared with ``rate``. Every worker and every restart makes the same choice
    for the same frame, and the choice does not depend on the order of frames.
    """

    __slots__ = ("_key", "rate", "seed")

    def __init__(self, rate: float, seed: int = 0) -> None:
        """``rate`` in [0, 1]: the share of kept frames to sample; ``seed`` in [0, 2**64)."""
        require_number("rate", rate, 0, 1, open_=False)
        require_int("seed", seed, 0)
        if seed >= 1 << 64:
            raise ConfigError(f"seed must be < 2**64, got {seed!r}")
        self.rate = float(rate)
        self.seed = seed
        self._key = seed.to_bytes(8, "little")

    def decide(self, frame_id: str) -> bool:
        """True if the frame ``frame_id`` belongs to the shadow sample."""
        if self.rate >= 1.0:
            return True
        if self.rate <= 0.0:
            return False
        digest = hashlib.blake2b(frame_id.encode(), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "big") / 2.0**64 < self.rate
