"""Canary judgement: is a new model version at least as good as the one it replaces?

Pure: the two arms' counters (``ArmCounters``, pipeline/release/tallies.py) go in, a
``Decision`` comes out. ``CanaryJudge`` decides ``WAIT``, ``PROMOTE`` or
``ROLL_BACK``:

* Primary signal: the canary's rate of **disagreement with the cloud** on compared
  frames (``1 - agreed / compared``). With ``d`` the baseline's rate, a sequential
  probability ratio test (SPRT) weighs "the canary disagrees at ``d + margin``"
  (acceptable) against "at ``d + detect``" (must be caught). Its log-likelihood ratio
  over the canary's ``n`` compared frames, ``x`` of them disagreeing, is
  ``x log(p1/p0) + (n-x) log((1-p1)/(1-p0))``.

  - ROLL_BACK when it reaches ``log(1/alpha)``. The likelihood ratio is a
    non-negative martingale when the canary is acceptable, so by Ville's inequality
    this happens with probability at most ``alpha`` however often it is looked at.
  - PROMOTE when it falls to ``log(beta)``, once the canary has ``min_compared``
    compared frames: the same argument bounds the chance of promoting a canary
    ``detect`` or more worse by ``beta``.
  - A canary between ``margin`` and ``detect`` worse (the indifference zone) goes
    either way; after ``max_compared`` compared frames without a decision it is
    rolled back as inconclusive.

  ``d`` is estimated, so each side uses the end of its Wilson interval (``baseline_z``)
  that favours the status quo: the roll-back test assumes the baseline is as bad as
  plausible, the promotion test as good as plausible.
* Guard rails, roll back only, by the same test: the **escalated share** of frames
  (``escalation_margin`` / ``escalation_detect``) and the **failure rate**,
  dead letters plus errors over frames plus dead letters (``failure_margin`` /
  ``failure_detect``), each at ``guard_alpha``. And **latency**: the median of the
  canary's per-interval p95 above ``latency_ratio`` times the baseline's plus
  ``latency_slack_ms``, once each arm has ``min_latency_intervals`` intervals (a
  plain threshold, no stated error rate).

``bench/canary_sim.py`` measures the resulting rates; docs/rollout.md has them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, Final

from pipeline.release.checks import require_at_least, require_int, require_open, require_pair
from pipeline.release.tallies import ArmCounters
from schemas.errors import ConfigError

__all__ = ["CanaryConfig", "CanaryJudge", "Decision", "Verdict", "wilson_interval"]

# Rates are kept this far inside (0, 1) so every log-likelihood term is finite.
_EPS: Final = 1e-6


class Verdict(StrEnum):
    """What the judge says about the canary now."""

    WAIT = "wait"
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"


@dataclass(frozen=True, slots=True)
class CanaryConfig:
    """Parameters of ``CanaryJudge``. Rates and margins are absolute (0.02 = 2 points).

    The defaults: a canary up to 2 points less in agreement with the cloud is
    acceptable (rolled back with probability <= 1% per step), one 5 points or more
    worse must be caught (promoted with probability <= 5% per step).
    """

    margin: float = 0.02  # agreement loss tolerated
    detect: float = 0.05  # agreement loss that must be caught
    alpha: float = 0.01  # bound on rolling back a canary within margin (per step)
    beta: float = 0.05  # bound on promoting a canary at least `detect` worse (per step)
    baseline_z: float = 2.0  # Wilson interval of the baseline's rates
    min_compared: int = 300  # canary compared frames before a promotion
    max_compared: int = 10_000  # no decision by then: roll back as inconclusive
    min_baseline_compared: int = 100  # before the agreement test runs at all
    escalation_margin: float = 0.05
    escalation_detect: float = 0.15
    failure_margin: float = 0.01
    failure_detect: float = 0.05
    guard_alpha: float = 0.01
    min_baseline_frames: int = 500  # before the escalation and failure guards run
    latency_ratio: float = 1.5
    latency_slack_ms: float = 5.0
    min_latency_intervals: int = 10

    def __post_init__(self) -> None:
        require_pair("", self.margin, self.detect)
        require_pair("escalation_", self.escalation_margin, self.escalation_detect)
        require_pair("failure_", self.failure_margin, self.failure_detect)
        for name in ("alpha", "beta", "guard_alpha"):
            require_open(name, getattr(self, name), 0, 0.5)
        require_at_least("baseline_z", self.baseline_z, 0.0)
        require_int("min_compared", self.min_compared, 1)
        require_int("max_compared", self.max_compared, 1)
        if self.max_compared <= self.min_compared:
            raise ConfigError(
                f"max_compared ({self.max_compared}) must be greater than "
                f"min_compared ({self.min_compared})"
            )
        require_int("min_baseline_compared", self.min_baseline_compared, 1)
        require_int("min_baseline_frames", self.min_baseline_frames, 1)
        require_at_least("latency_ratio", self.latency_ratio, 1.0)
        require_at_least("latency_slack_ms", self.latency_slack_ms, 0.0)
        require_int("min_latency_intervals", self.min_latency_intervals, 1)


@dataclass(frozen=True, slots=True)
class Decision:
    """The judge's verdict, which check gave it, and why (for people and events).

    ``check`` is ``agreement``, ``escalation``, ``failures``, ``latency``,
    ``inconclusive`` or ``waiting``. ``llr`` is the agreement test's log-likelihood
    ratio toward roll back (None while it cannot run).
    """

    verdict: Verdict
    check: str
    reason: str
    llr: float | None = None
    canary_agreement: float | None = None
    baseline_agreement: float | None = None
    canary_compared: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def wilson_interval(bad: int, total: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a rate; (0, 1) when there is nothing to go on."""
    if total <= 0:
        return 0.0, 1.0
    p, z2 = bad / total, z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _llr(bad: int, total: int, baseline: float, margin: float, detect: float) -> float | None:
    """SPRT log-likelihood ratio of rate ``baseline + detect`` over ``baseline + margin``.

    None when both hypotheses are squeezed against 1 and cannot be told apart.
    """
    p0 = min(max(baseline + margin, _EPS), 1 - 2 * _EPS)
    p1 = min(baseline + detect, 1 - _EPS)
    if p1 <= p0:
        return None
    return bad * math.log(p1 / p0) + (total - bad) * math.log((1 - p1) / (1 - p0))


@dataclass(frozen=True, slots=True)
class _RateGuard:
    """A guard rail on a rate: which counts of an arm it tests, with which margins."""

    check: str
    what: str
    count: Callable[[ArmCounters], tuple[int, int]]  # (bad, trials)
    limits: Callable[[CanaryConfig], tuple[float, float]]  # (margin, detect)


# In the order they are consulted; a failing canary is named for its failures first.
_RATE_GUARDS: Final = (
    _RateGuard(
        "failures",
        "dead letters and errors",
        lambda arm: (arm.failures, arm.failure_trials),
        lambda cfg: (cfg.failure_margin, cfg.failure_detect),
    ),
    _RateGuard(
        "escalation",
        "escalated share",
        lambda arm: (arm.escalated, arm.frames),
        lambda cfg: (cfg.escalation_margin, cfg.escalation_detect),
    ),
)


class CanaryJudge:
    """The sequential test of the module docstring. Stateless: call ``decide`` each time."""

    def __init__(self, config: CanaryConfig | None = None) -> None:
        """A judge with ``config`` (the defaults when None)."""
        self.config = config if config is not None else CanaryConfig()
        if not isinstance(self.config, CanaryConfig):
            raise ConfigError(f"config must be a CanaryConfig, got {type(config).__name__}")
        self.roll_back_at = math.log(1 / self.config.alpha)
        self.promote_at = math.log(self.config.beta)
        self.guard_at = math.log(1 / self.config.guard_alpha)

    def decide(self, canary: ArmCounters, baseline: ArmCounters) -> Decision:
        """The verdict on the canary's evidence of this step against the baseline's."""
        cfg = self.config
        if canary.frames == 0 and canary.compared == 0 and canary.dead_letters == 0:
            return Decision(Verdict.WAIT, "waiting", "waiting: no canary traffic yet")
        for guard in _RATE_GUARDS:
            verdict = self._rate_guard(guard, canary, baseline)
            if verdict is not None:
                return verdict
        verdict = self._latency(canary, baseline)
        if verdict is not None:
            return verdict

        def said(verdict: Verdict, check: str, reason: str, llr: float | None = None) -> Decision:
            return Decision(
                verdict, check, reason, llr, canary.agreement, baseline.agreement, canary.compared
            )

        if baseline.compared < cfg.min_baseline_compared:
            short = (
                f"baseline has {baseline.compared} of {cfg.min_baseline_compared} compared frames"
            )
            if canary.compared >= cfg.max_compared:
                return said(Verdict.ROLL_BACK, "inconclusive", f"inconclusive: {short}")
            return said(Verdict.WAIT, "waiting", f"waiting: {short}")
        low, high = wilson_interval(_disagreement(baseline), baseline.compared, cfg.baseline_z)
        d_c = _disagreement(canary)
        llr_back = _llr(d_c, canary.compared, high, cfg.margin, cfg.detect)
        llr_promote = _llr(d_c, canary.compared, low, cfg.margin, cfg.detect)
        facts = (
            f"canary agrees with the cloud on {_pct(canary.agreement)} of {canary.compared} "
            f"compared frames, baseline on {_pct(baseline.agreement)} of {baseline.compared}"
        )
        if llr_back is not None and llr_back >= self.roll_back_at:
            return said(
                Verdict.ROLL_BACK,
                "agreement",
                f"{facts}: log-likelihood ratio {llr_back:.2f} >= {self.roll_back_at:.2f} "
                f"for 'at least {cfg.detect:.0%} worse' (alpha {cfg.alpha:g})",
                llr_back,
            )
        if (
            llr_promote is not None
            and llr_promote <= self.promote_at
            and canary.compared >= cfg.min_compared
        ):
            return said(
                Verdict.PROMOTE,
                "agreement",
                f"{facts}: log-likelihood ratio {llr_promote:.2f} <= {self.promote_at:.2f} "
                f"for 'not more than {cfg.margin:.0%} worse' (beta {cfg.beta:g})",
                llr_back,
            )
        if canary.compared >= cfg.max_compared:
            return said(
                Verdict.ROLL_BACK,
                "inconclusive",
                f"inconclusive after {canary.compared} compared frames: {facts}",
                llr_back,
            )
        return said(
            Verdict.WAIT,
            "waiting",
            f"waiting: {facts}; log-likelihood ratio {_fmt(llr_back)} (roll back at "
            f"{self.roll_back_at:.2f}), {_fmt(llr_promote)} (promote at "
            f"{self.promote_at:.2f} after {cfg.min_compared} compared frames)",
            llr_back,
        )

    # Each guard returns a ROLL_BACK decision or None.

    def _rate_guard(
        self, guard: _RateGuard, canary: ArmCounters, baseline: ArmCounters
    ) -> Decision | None:
        cfg = self.config
        bad, base = guard.count(canary), guard.count(baseline)
        margin, detect = guard.limits(cfg)
        if base[1] < cfg.min_baseline_frames or bad[1] == 0:
            return None
        _, high = wilson_interval(base[0], base[1], cfg.baseline_z)
        llr = _llr(bad[0], bad[1], high, margin, detect)
        if llr is None or llr < self.guard_at:
            return None
        return Decision(
            Verdict.ROLL_BACK,
            guard.check,
            f"{guard.what}: canary {bad[0]} of {bad[1]} ({bad[0] / bad[1]:.1%}), baseline "
            f"{base[0]} of {base[1]} ({base[0] / base[1]:.1%}); log-likelihood ratio "
            f"{llr:.2f} >= {self.guard_at:.2f} for 'at least {detect:.0%} higher' "
            f"(alpha {cfg.guard_alpha:g})",
        )

    def _latency(self, canary: ArmCounters, baseline: ArmCounters) -> Decision | None:
        cfg = self.config
        enough = min(canary.latency_intervals, baseline.latency_intervals)
        if enough < cfg.min_latency_intervals:
            return None
        limit = baseline.latency_p95_ms * cfg.latency_ratio + cfg.latency_slack_ms
        if canary.latency_p95_ms <= limit:
            return None
        return Decision(
            Verdict.ROLL_BACK,
            "latency",
            f"latency: canary median p95 {canary.latency_p95_ms:.1f} ms over "
            f"{canary.latency_intervals} intervals > {limit:.1f} ms (baseline "
            f"{baseline.latency_p95_ms:.1f} ms x {cfg.latency_ratio:g} + "
            f"{cfg.latency_slack_ms:g} ms)",
        )


def _disagreement(arm: ArmCounters) -> int:
    return arm.compared - arm.agreed


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
