"""Whether the edge answers a frame itself or escalates it to the cloud.

Pure: the worker gathers the facts about a frame and the current cloud round trip,
and ``EscalationPolicy.decide`` returns the decision with one ``Reason`` per path.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from schemas.errors import ConfigError, SchemaError
from schemas.messages import PrivacyClass, Reason

__all__ = ["ROUTINGS", "Decision", "EscalationPolicy", "FrameFacts", "RoundTripEstimator"]

ROUTINGS = ("hybrid", "edge_only", "cloud_only")


@dataclass(frozen=True, slots=True)
class FrameFacts:
    """What the escalation decision needs to know about one frame.

    ``confidence`` is the calibrated edge confidence (a NaN counts as not confident);
    ``threshold`` is the frame's own or the worker default (see
    ``EscalationPolicy.threshold_for``); ``time_left_s`` is the time until the frame's
    deadline and may be negative.
    """

    priority: int
    confidence: float
    threshold: float
    privacy: PrivacyClass
    time_left_s: float
    has_regions: bool
    link_up: bool = True
    budget_left: bool = True  # the site's daily cloud budget is not used up

    def __post_init__(self) -> None:
        if self.priority not in (1, 2, 3) or isinstance(self.priority, bool):
            raise ValueError(f"priority must be 1, 2 or 3, got {self.priority!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one frame.

    ``send`` is what leaves the site: ``PrivacyClass.LOCAL_ONLY`` (nothing) for every
    local decision, else the frame's own privacy class.
    """

    escalate: bool
    reason: Reason
    send: PrivacyClass

    @property
    def awaits_cloud(self) -> bool:
        """True when the frame's final result should wait for the cloud's answer."""
        return self.escalate and self.reason is Reason.CLOUD_ANSWER


class EscalationPolicy:
    """The decision table, first match wins.

    1. no regions -> local, ``NO_REGIONS``
    2. priority 1 -> local, ``PRIORITY_LOCAL``
    3. confidence >= threshold -> local, ``CONFIDENT``
    4. privacy ``LOCAL_ONLY`` -> local, ``PRIVACY_LOCAL_ONLY``
    5. the site's daily cloud budget used up -> local, ``BUDGET``
    6. link to the cloud down -> escalate (stored at the site, answered after the link
       returns, for drift and audit) but answer now from the edge, ``LINK_DOWN``
    7. cloud round trip >= time left -> local, ``DEADLINE_TOO_SHORT``
    8. otherwise escalate, ``CLOUD_ANSWER``, sending what the frame's privacy allows.
    """

    __slots__ = ("_default_threshold", "_routing")

    def __init__(self, default_threshold: float = 0.9, routing: str = "hybrid") -> None:
        """``default_threshold`` applies to frames that carry none; within [0, 1].

        ``routing`` other than ``hybrid`` replaces the table for baselines and for
        operators who must pin a fleet: ``edge_only`` never escalates (reason
        ``edge_only``); ``cloud_only`` escalates every frame whose privacy allows,
        whatever its priority or confidence (rows 1, 4, 5 and 6 still apply).
        """
        if routing not in ROUTINGS:
            raise ConfigError(f"routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
        self._routing = routing
        if (
            not isinstance(default_threshold, int | float)
            or isinstance(default_threshold, bool)
            or not 0.0 <= default_threshold <= 1.0
        ):
            raise ConfigError(
                f"default_threshold must be a number in [0, 1], got {default_threshold!r}"
            )
        self._default_threshold = float(default_threshold)

    @property
    def default_threshold(self) -> float:
        """The confidence threshold for frames without their own."""
        return self._default_threshold

    def threshold_for(self, frame_threshold: float | None) -> float:
        """The threshold that applies to a frame: its own if set, else the default."""
        if frame_threshold is None:
            return self._default_threshold
        if not 0.0 <= frame_threshold <= 1.0:
            raise SchemaError(f"frame.threshold must be in [0, 1], got {frame_threshold!r}")
        return float(frame_threshold)

    def decide(self, facts: FrameFacts, cloud_round_trip_s: float) -> Decision:
        """Apply the decision table to one frame.

        ``cloud_round_trip_s`` is the expected time to get a cloud answer, e.g.
        ``RoundTripEstimator.estimate()``.
        """
        if not facts.has_regions:
            return _local(Reason.NO_REGIONS)
        if self._routing == "edge_only":
            return _local(Reason.EDGE_ONLY)
        cloud_only = self._routing == "cloud_only"
        if facts.priority == 1 and not cloud_only:
            return _local(Reason.PRIORITY_LOCAL)
        if facts.confidence >= facts.threshold and not cloud_only:
            return _local(Reason.CONFIDENT)
        if facts.privacy is PrivacyClass.LOCAL_ONLY:
            return _local(Reason.PRIVACY_LOCAL_ONLY)
        if not facts.budget_left:
            return _local(Reason.BUDGET)
        if not facts.link_up:
            return Decision(escalate=True, reason=Reason.LINK_DOWN, send=facts.privacy)
        # Written as "not <" so that a NaN round trip or time left stays local.
        if not cloud_round_trip_s < facts.time_left_s and not cloud_only:
            return _local(Reason.DEADLINE_TOO_SHORT)
        return Decision(escalate=True, reason=Reason.CLOUD_ANSWER, send=facts.privacy)


def _local(reason: Reason) -> Decision:
    return Decision(escalate=False, reason=reason, send=PrivacyClass.LOCAL_ONLY)


class RoundTripEstimator:
    """Recent cloud round trips, summarised as their 95th percentile.

    The estimate feeds a deadline decision, where an optimistic guess costs a missed
    deadline (the frame is escalated, the cloud answers too late, and the result is a
    degraded timeout) while a pessimistic one only answers a frame on the edge. So it
    is the p95 of recent samples rather than the mean or the median, which the slow
    tail of a network would not move. Until ``min_samples`` samples have been seen it
    returns ``prior_s``.
    """

    __slots__ = ("_dirty", "_min_samples", "_p95", "_prior", "_samples")

    def __init__(self, prior_s: float = 0.05, *, min_samples: int = 5, window: int = 256) -> None:
        """Keep the last ``window`` samples; use ``prior_s`` until ``min_samples``."""
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ConfigError(f"window must be an integer >= 1, got {window!r}")
        if (
            not isinstance(min_samples, int)
            or isinstance(min_samples, bool)
            or not 1 <= min_samples <= window
        ):
            raise ConfigError(
                f"min_samples must be an integer in [1, window={window}], got {min_samples!r}"
            )
        if (
            not isinstance(prior_s, int | float)
            or isinstance(prior_s, bool)
            or not math.isfinite(prior_s)
            or prior_s < 0
        ):
            raise ConfigError(f"prior_s must be a finite number >= 0, got {prior_s!r}")
        self._prior = float(prior_s)
        self._min_samples = min_samples
        self._samples: deque[float] = deque(maxlen=window)
        self._p95 = self._prior
        self._dirty = False

    def observe(self, seconds: float) -> None:
        """Record one cloud round trip, in seconds."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._samples.append(float(seconds))
        self._dirty = True

    def estimate(self) -> float:
        """The p95 of recent round trips (nearest rank, an observed value), or the prior."""
        if len(self._samples) < self._min_samples:
            return self._prior
        if self._dirty:
            # Sorted on read and cached: the frames of one batch are decided between two
            # answers and share one sort.
            ordered = sorted(self._samples)
            self._p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
            self._dirty = False
        return self._p95

    def __len__(self) -> int:
        return len(self._samples)
