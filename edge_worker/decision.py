"""The one decision of the edge: answer a frame here, or escalate it to the cloud.

Pure. The worker gathers the facts about a frame and its site's state (link, budget,
heat and load, shadow sampling, the cloud round trip); ``EscalationPolicy.decide``
returns one ``Decision`` with one ``Reason``, and the worker acts on it: nothing after
it overrides it. ``shed_before_model`` is the one rule applied earlier, when a frame
arrives, so that a frame that could only be answered here is not queued under load.
docs/architecture.md ("Decisions at the edge") lists the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.errors import ConfigError, SchemaError
from schemas.messages import PrivacyClass, Reason

__all__ = [
    "ROUTINGS",
    "SHED_AT",
    "Decision",
    "EscalationPolicy",
    "FrameFacts",
    "raised_threshold",
    "shed_before_model",
    "sheds",
]

ROUTINGS = ("hybrid", "edge_only", "cloud_only")


@dataclass(frozen=True, slots=True)
class FrameFacts:
    """What the escalation decision needs to know about one frame.

    ``confidence`` is the calibrated edge confidence (a NaN counts as not confident);
    ``threshold`` is the frame's own or the worker default (see
    ``EscalationPolicy.threshold_for``); ``time_left_s`` is the time until the frame's
    deadline and may be negative. The site's state: ``link_up``; ``budget_left``, true
    when the site's daily budget covers this frame's escalation; ``pressure`` in 0..1
    from heat and load (edge_worker/thermal.py); ``shadow_sampled``, the drift monitor's
    sampler picked this frame (edge_worker/drift.py).
    """

    priority: int
    confidence: float
    threshold: float
    privacy: PrivacyClass
    time_left_s: float
    has_regions: bool
    link_up: bool = True
    budget_left: bool = True  # the site's daily cloud budget pays for this escalation
    pressure: float = 0.0
    shadow_sampled: bool = False

    def __post_init__(self) -> None:
        if self.priority not in (1, 2, 3) or isinstance(self.priority, bool):
            raise ValueError(f"priority must be 1, 2 or 3, got {self.priority!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one frame.

    ``send`` is what leaves the site: ``PrivacyClass.LOCAL_ONLY`` (nothing) for every
    local decision, else the frame's own privacy class. ``shadow``: a confident frame,
    answered here, that is also sent to the cloud only to compare answers (``send`` is
    then its privacy class).
    """

    escalate: bool
    reason: Reason
    send: PrivacyClass
    shadow: bool = False

    @property
    def degraded(self) -> bool:
        """The cloud was wanted and only money stood in the way."""
        return self.reason is Reason.BUDGET

    @property
    def awaits_cloud(self) -> bool:
        """True when the frame's final result should wait for the cloud's answer."""
        return self.escalate and self.reason is Reason.CLOUD_ANSWER


class EscalationPolicy:
    """The decision table, first match wins.

    1. no regions -> local, ``NO_REGIONS``
    2. priority 1 -> local, ``PRIORITY_LOCAL``
    3. confidence >= threshold -> local, ``CONFIDENT``; the threshold of a frame that
       may leave rises with the pressure by up to ``threshold_raise``. A confident frame
       the shadow sampler picked, that may leave, with the link up and the budget
       paying, is also sent to the cloud to compare (``shadow``).
    4. privacy ``LOCAL_ONLY`` -> local, ``PRIVACY_LOCAL_ONLY``
    5. the site's daily cloud budget does not pay for it -> local, ``BUDGET``
    6. link to the cloud down -> escalate (stored at the site, answered after the link
       returns, for drift and audit) but answer now from the edge, ``LINK_DOWN``
    7. cloud round trip >= time left -> local, ``DEADLINE_TOO_SHORT``
    8. otherwise escalate, ``CLOUD_ANSWER``, sending what the frame's privacy allows.
    """

    __slots__ = ("_default_threshold", "_routing", "_threshold_raise")

    def __init__(
        self, default_threshold: float = 0.9, routing: str = "hybrid", threshold_raise: float = 0.0
    ) -> None:
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
        if not 0.0 <= threshold_raise <= 1.0:
            raise ConfigError(f"threshold_raise must be in [0, 1], got {threshold_raise!r}")
        self._threshold_raise = float(threshold_raise)

    @property
    def default_threshold(self) -> float:
        """The confidence threshold for frames without their own."""
        return self._default_threshold

    @property
    def routing(self) -> str:
        """``hybrid``, ``edge_only`` or ``cloud_only`` (``edge.routing``)."""
        return self._routing

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
        threshold = facts.threshold
        if facts.privacy is not PrivacyClass.LOCAL_ONLY:
            # Under heat or load, frames that may leave lean on the cloud more.
            threshold = raised_threshold(threshold, facts.pressure, self._threshold_raise)
        if facts.confidence >= threshold and not cloud_only:
            if (
                facts.shadow_sampled
                and facts.privacy is not PrivacyClass.LOCAL_ONLY
                and facts.link_up
                and facts.budget_left
            ):
                return Decision(False, Reason.CONFIDENT, facts.privacy, shadow=True)
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


def raised_threshold(threshold: float, pressure: float, max_raise: float = 0.05) -> float:
    """The confidence threshold under pressure: ``threshold + pressure * max_raise``,
    at most 1. A higher threshold escalates more frames, moving work to the cloud;
    use it only for frames whose privacy lets them leave the site."""
    return min(1.0, threshold + min(1.0, max(0.0, pressure)) * max_raise)


# Priority -> the pressure at which frames of that priority are shed (answered
# ``shed``) when they may not be offloaded. Priority 1 is never shed: it is always
# answered at the edge (row 2).
SHED_AT: dict[int, float] = {3: 0.5, 2: 1.0}


def sheds(priority: int, pressure: float) -> bool:
    """Whether a frame of ``priority`` that cannot be offloaded is shed at ``pressure``:
    lowest priority first (3 from 0.5), then 2 at 1.0, never 1."""
    at = SHED_AT.get(priority)
    return at is not None and pressure >= at


def shed_before_model(priority: int, privacy: PrivacyClass, pressure: float) -> bool:
    """Row 0, when a frame arrives: hot or overloaded, a frame that may not be offloaded
    is answered ``shed`` instead of queued, lowest priority first."""
    return privacy is PrivacyClass.LOCAL_ONLY and sheds(priority, pressure)
