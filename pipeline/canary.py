"""Canary judgement: is a new model version at least as good as the one it replaces?

Pure: heartbeat counters and the time go in, decisions and new states come out.
``pipeline/rollout.py`` reads the heartbeats and writes the desired state.

Two arms, told apart by the ``model_version`` a worker reports (contracts.md,
"Heartbeats"): the **canary** arm runs the new version, the **baseline** arm any
other. ``ArmTally`` turns heartbeats into one ``ArmCounters`` per arm: the canary's
counters are those earned since the current rollout step began (every step is judged
on fresh evidence), the baseline's are everything its workers have reported since
they loaded their model, including what the canary workers reported before they
switched.

``CanaryJudge`` decides, from the two arms, ``WAIT``, ``PROMOTE`` or ``ROLL_BACK``:

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

``RolloutPlan`` and ``RolloutState`` are the rollout itself: steps of growing canary
shares, which workers are canaries, and what happened. ``RolloutState.apply`` advances
on PROMOTE and ends on ROLL_BACK; the controller carries out what changed.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final

import orjson

from schemas.codec import check_token
from schemas.errors import ConfigError, SchemaError

__all__ = [
    "ArmCounters",
    "ArmTally",
    "CLOUD_SITE",
    "CanaryConfig",
    "CanaryJudge",
    "Decision",
    "HistoryEntry",
    "RolloutPhase",
    "RolloutPlan",
    "RolloutState",
    "TIERS",
    "Verdict",
    "pick_canaries",
]

STATE_SCHEMA: Final = 1
TIERS: Final = ("edge", "cloud", "device")
CLOUD_SITE: Final = "_all"  # the site token of cloud workers (contracts.md)
# Rates are kept this far inside (0, 1) so every log-likelihood term is finite.
_EPS: Final = 1e-6


class Verdict(StrEnum):
    """What the judge says about the canary now."""

    WAIT = "wait"
    PROMOTE = "promote"
    ROLL_BACK = "roll_back"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_open(name: str, value: object, low: float, high: float) -> None:
    if not (_is_number(value) and low < float(value) < high):  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a number in ({low:g}, {high:g}), got {value!r}")


def _require_at_least(name: str, value: object, low: float) -> None:
    if not (_is_number(value) and float(value) >= low):  # type: ignore[arg-type]
        raise ConfigError(f"{name} must be a finite number >= {low:g}, got {value!r}")


def _require_pair(prefix: str, margin: float, detect: float) -> None:
    _require_open(f"{prefix}margin", margin, 0, 1)
    _require_open(f"{prefix}detect", detect, 0, 1)
    if detect <= margin:
        raise ConfigError(
            f"{prefix}detect ({detect!r}) must be greater than {prefix}margin ({margin!r})"
        )


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
        _require_pair("", self.margin, self.detect)
        _require_pair("escalation_", self.escalation_margin, self.escalation_detect)
        _require_pair("failure_", self.failure_margin, self.failure_detect)
        for name in ("alpha", "beta", "guard_alpha"):
            _require_open(name, getattr(self, name), 0, 0.5)
        _require_at_least("baseline_z", self.baseline_z, 0.0)
        _require_int("min_compared", self.min_compared, 1)
        _require_int("max_compared", self.max_compared, 1)
        if self.max_compared <= self.min_compared:
            raise ConfigError(
                f"max_compared ({self.max_compared}) must be greater than "
                f"min_compared ({self.min_compared})"
            )
        _require_int("min_baseline_compared", self.min_baseline_compared, 1)
        _require_int("min_baseline_frames", self.min_baseline_frames, 1)
        _require_at_least("latency_ratio", self.latency_ratio, 1.0)
        _require_at_least("latency_slack_ms", self.latency_slack_ms, 0.0)
        _require_int("min_latency_intervals", self.min_latency_intervals, 1)


# ------------------------------------------------------------------ the arms


@dataclass(frozen=True, slots=True)
class ArmCounters:
    """One arm's evidence: counters summed over its workers (contracts.md names).

    ``latency_p95_ms`` is the median of the per-interval p95 values the arm's
    heartbeats reported (p95s cannot be summed), over ``latency_intervals`` of them.
    """

    frames: int = 0
    escalated: int = 0
    dead_letters: int = 0
    errors: int = 0
    compared: int = 0
    agreed: int = 0
    latency_p95_ms: float = 0.0
    latency_intervals: int = 0

    def __post_init__(self) -> None:
        for name in ("frames", "escalated", "dead_letters", "errors", "compared", "agreed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SchemaError(f"{name} must be an integer >= 0, got {value!r}")
        if self.agreed > self.compared:
            raise SchemaError(f"agreed ({self.agreed}) exceeds compared ({self.compared})")
        if self.escalated > self.frames:
            raise SchemaError(f"escalated ({self.escalated}) exceeds frames ({self.frames})")
        if not _is_number(self.latency_p95_ms) or self.latency_p95_ms < 0:
            raise SchemaError(f"latency_p95_ms must be >= 0, got {self.latency_p95_ms!r}")

    @property
    def agreement(self) -> float | None:
        """Agreed over compared, None before the first comparison."""
        return self.agreed / self.compared if self.compared else None

    @property
    def failures(self) -> int:
        """Dead letters plus errors, never more than ``failure_trials``."""
        return min(self.dead_letters + self.errors, self.failure_trials)

    @property
    def failure_trials(self) -> int:
        # A dead-lettered message may never have become a counted frame.
        return self.frames + self.dead_letters


_COUNTERS: Final = ("frames", "escalated", "dead_letters", "errors", "compared", "agreed")


def _sum(parts: Iterable[ArmCounters], latencies: Sequence[float]) -> ArmCounters:
    totals = dict.fromkeys(_COUNTERS, 0)
    for part in parts:
        for name in _COUNTERS:
            totals[name] += getattr(part, name)
    median = statistics.median(latencies) if latencies else 0.0
    return ArmCounters(**totals, latency_p95_ms=median, latency_intervals=len(latencies))


@dataclass(frozen=True, slots=True)
class _Beat:
    """The heartbeat fields the tally reads."""

    worker: str
    tier: str
    model_version: str
    model_since: float
    at: float
    counters: ArmCounters
    latency_p95_ms: float

    @classmethod
    def parse(cls, hb: Mapping[str, Any]) -> _Beat:
        def get(name: str, kind: type | tuple[type, ...]) -> Any:
            value = hb.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SchemaError(f"heartbeat.{name}: missing or not a {kind}, got {value!r}")
            return value

        number = (int, float)
        latency = float(get("latency_p95_ms", number))
        counts = {name: get(name, int) for name in _COUNTERS}
        return cls(
            worker=check_token(get("worker", str), "heartbeat.worker"),
            tier=get("tier", str),
            model_version=get("model_version", str),
            model_since=float(get("model_since", number)),
            at=float(get("at", number)),
            counters=ArmCounters(**counts),
            latency_p95_ms=latency,
        )


_SessionKey = tuple[str, str, float]  # worker, model_version, model_since


class ArmTally:
    """Heartbeats of one tier at one site in, the two arms' counters out.

    A *session* is one worker running one model since one ``model_since``; its
    counters are cumulative, so the latest heartbeat of each session is all that is
    kept (duplicates and reordering are harmless). Canary sessions (``version``)
    count from the start of the step: a session that began before it is counted
    from the first heartbeat seen in the step. Baseline sessions count whole.
    """

    def __init__(
        self, tier: str, version: str, step_started_at: float, latency_window: int = 256
    ) -> None:
        """A tally for ``version`` of ``tier`` whose current step began at ``step_started_at``."""
        self.tier = tier
        self.version = version
        self.step_started_at = float(step_started_at)
        self._latest: dict[_SessionKey, _Beat] = {}
        self._offset: dict[_SessionKey, ArmCounters] = {}
        self._last_seen: dict[str, _Beat] = {}
        # The last interval p95s of each arm (the canary's within the step only).
        self._canary_latency: deque[float] = deque(maxlen=latency_window)
        self._baseline_latency: deque[float] = deque(maxlen=latency_window)

    def observe(self, heartbeat: Mapping[str, Any]) -> bool:
        """Count one heartbeat; False (and nothing counted) if it is of another tier.

        Raises ``SchemaError`` when a field the tally needs is missing or mistyped.
        """
        beat = _Beat.parse(heartbeat)
        if beat.tier != self.tier:
            return False
        key = (beat.worker, beat.model_version, beat.model_since)
        previous = self._latest.get(key)
        if previous is not None and previous.at >= beat.at:
            return True  # a duplicate or an older heartbeat of a session we know
        self._latest[key] = beat
        seen = self._last_seen.get(beat.worker)
        if seen is None or seen.at <= beat.at:
            self._last_seen[beat.worker] = beat
        canary = beat.model_version == self.version
        if canary and key not in self._offset:
            started_in_step = beat.model_since >= self.step_started_at
            self._offset[key] = ArmCounters() if started_in_step else beat.counters
        if beat.latency_p95_ms > 0:
            if canary and beat.at >= self.step_started_at:
                self._canary_latency.append(beat.latency_p95_ms)
            elif not canary:
                self._baseline_latency.append(beat.latency_p95_ms)
        return True

    def new_step(self, started_at: float) -> None:
        """Start a step: the canary's evidence so far no longer counts."""
        self.step_started_at = float(started_at)
        for key, beat in self._latest.items():
            if beat.model_version == self.version:
                self._offset[key] = beat.counters
        self._canary_latency.clear()

    def canary(self) -> ArmCounters:
        """What the new version has shown during the current step."""
        parts = [
            _minus(beat.counters, self._offset[key])
            for key, beat in self._latest.items()
            if beat.model_version == self.version
        ]
        return _sum(parts, self._canary_latency)

    def baseline(self) -> ArmCounters:
        """What every other version has shown (whole sessions)."""
        parts = [b.counters for b in self._latest.values() if b.model_version != self.version]
        return _sum(parts, self._baseline_latency)

    def running(self, version: str) -> set[str]:
        """Workers whose latest heartbeat reports ``version``."""
        return {w for w, b in self._last_seen.items() if b.model_version == version}

    def live_workers(self, now: float, ttl_s: float) -> list[str]:
        """Workers heard from within ``ttl_s`` of ``now``, sorted."""
        return sorted(w for w, b in self._last_seen.items() if now - b.at <= ttl_s)


def _minus(a: ArmCounters, b: ArmCounters) -> ArmCounters:
    """What ``a`` added to ``b`` (the latest heartbeat minus the step's offset)."""
    if any(getattr(a, n) < getattr(b, n) for n in _COUNTERS):
        # A counter went down: the worker reset them; everything it has counts.
        return ArmCounters(**{n: getattr(a, n) for n in _COUNTERS})
    d = {n: getattr(a, n) - getattr(b, n) for n in _COUNTERS}
    # Two heartbeats need not be taken at the same instant for every counter.
    d["escalated"] = min(d["escalated"], d["frames"])
    d["agreed"] = min(d["agreed"], d["compared"])
    return ArmCounters(**d)


# ------------------------------------------------------------------ the judge


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


def _wilson(bad: int, total: int, z: float) -> tuple[float, float]:
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
        for guard in (self._failures, self._escalation, self._latency):
            verdict = guard(canary, baseline)
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
        low, high = _wilson(_disagreement(baseline), baseline.compared, cfg.baseline_z)
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
        self,
        check: str,
        what: str,
        bad: tuple[int, int],
        base: tuple[int, int],
        margin: float,
        detect: float,
    ) -> Decision | None:
        cfg = self.config
        if base[1] < cfg.min_baseline_frames or bad[1] == 0:
            return None
        _, high = _wilson(base[0], base[1], cfg.baseline_z)
        llr = _llr(bad[0], bad[1], high, margin, detect)
        if llr is None or llr < self.guard_at:
            return None
        return Decision(
            Verdict.ROLL_BACK,
            check,
            f"{what}: canary {bad[0]} of {bad[1]} ({bad[0] / bad[1]:.1%}), baseline "
            f"{base[0]} of {base[1]} ({base[0] / base[1]:.1%}); log-likelihood ratio "
            f"{llr:.2f} >= {self.guard_at:.2f} for 'at least {detect:.0%} higher' "
            f"(alpha {cfg.guard_alpha:g})",
        )

    def _failures(self, canary: ArmCounters, baseline: ArmCounters) -> Decision | None:
        cfg = self.config
        return self._rate_guard(
            "failures",
            "dead letters and errors",
            (canary.failures, canary.failure_trials),
            (baseline.failures, baseline.failure_trials),
            cfg.failure_margin,
            cfg.failure_detect,
        )

    def _escalation(self, canary: ArmCounters, baseline: ArmCounters) -> Decision | None:
        cfg = self.config
        return self._rate_guard(
            "escalation",
            "escalated share",
            (canary.escalated, canary.frames),
            (baseline.escalated, baseline.frames),
            cfg.escalation_margin,
            cfg.escalation_detect,
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


# ------------------------------------------------------------------ the rollout


class RolloutPhase(StrEnum):
    """Where a rollout is: judging a step, or ended one way or the other."""

    RUNNING = "running"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


def _check_version(version: object) -> str:
    if (
        not isinstance(version, str)
        or not version
        or len(version) > 64
        or not all(c.isalnum() or c in "._-+" for c in version)
    ):
        raise ConfigError(f"version must be 1-64 letters, digits or '._-+', got {version!r}")
    return version


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """What to roll out where, in which steps, and what the fleet looked like before.

    ``steps`` are canary shares, increasing, the last 1.0 (reaching it completes the
    rollout). ``baseline_seed`` holds the workers' last heartbeats before the rollout
    began, so their counters on the old version stay in the baseline after they
    switch (a one-worker site has no other baseline).
    """

    tier: str
    site: str
    version: str
    steps: tuple[float, ...]
    previous_version: str | None
    started_at: float
    baseline_seed: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {self.tier!r}")
        try:
            check_token(self.site, "site")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None
        if self.tier == "cloud" and self.site != CLOUD_SITE:
            raise ConfigError(f"cloud workers are not per site: use site {CLOUD_SITE}")
        _check_version(self.version)
        steps = self.steps
        if (
            not steps
            or not all(_is_number(s) and 0 < s <= 1 for s in steps)
            or any(b <= a for a, b in itertools.pairwise(steps))
            or steps[-1] != 1.0
        ):
            raise ConfigError(
                f"steps must be increasing shares in (0, 1] ending with 1.0, got {steps!r}"
            )
        if self.version == self.previous_version:
            raise ConfigError(f"version {self.version} is already the site's version")

    @classmethod
    def with_canary(
        cls,
        tier: str,
        site: str,
        version: str,
        canary_share: float,
        *,
        later_steps: Sequence[float] = (0.5, 1.0),
        previous_version: str | None,
        started_at: float,
        baseline_seed: Sequence[Mapping[str, Any]] = (),
    ) -> RolloutPlan:
        """A plan that starts at ``canary_share`` (in (0, 1)) and goes on through the
        ``later_steps`` above it, ending at 1.0."""
        if not _is_number(canary_share) or not 0 < canary_share < 1:
            raise ConfigError(f"canary_share must be a number in (0, 1), got {canary_share!r}")
        later = [float(s) for s in later_steps if s > canary_share]
        if not later or later[-1] != 1.0:
            later.append(1.0)
        return cls(
            tier=tier,
            site=site,
            version=version,
            steps=(float(canary_share), *later),
            previous_version=previous_version,
            started_at=float(started_at),
            baseline_seed=tuple(dict(b) for b in baseline_seed),
        )

    @property
    def key(self) -> str:
        """The rollout's key in ``HF_ROLLOUT``: ``<tier>.<site>``."""
        return f"{self.tier}.{self.site}"


def pick_canaries(
    share: float, workers: Iterable[str], current: Sequence[str] = ()
) -> tuple[str, ...]:
    """The canary workers for ``share``: ``current`` ones stay, sorted others are added.

    With no current canaries this is the first ``ceil(share * n)`` of the sorted
    workers, at least one. Canaries are never taken back within a rollout, so the set
    only grows and every worker given an override is remembered.
    """
    everyone = sorted(set(workers) | set(current))
    # The epsilon keeps 0.3 * 10 = 3.0000000000000004 at 3.
    wanted = max(1, math.ceil(share * len(everyone) - 1e-9))
    chosen = list(current)
    for worker in everyone:
        if len(chosen) >= wanted:
            break
        if worker not in chosen:
            chosen.append(worker)
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One thing that happened to a rollout: ``started``, ``promoted``, ``completed``
    or ``rolled_back``, at which step, with the judge's reason."""

    at: float
    kind: str
    step: int
    share: float
    canary_workers: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RolloutState:
    """A rollout as stored in ``HF_ROLLOUT``: the plan, the step, the canaries, the history.

    Immutable: ``begin`` makes the first state, ``apply`` the next one.
    """

    plan: RolloutPlan
    phase: RolloutPhase
    step: int
    canary_workers: tuple[str, ...]
    step_started_at: float
    history: tuple[HistoryEntry, ...] = field(default=())
    reason: str = ""

    @classmethod
    def begin(cls, plan: RolloutPlan, workers: Iterable[str], now: float) -> RolloutState:
        """Step 0 with its canaries picked from ``workers`` (at least one needed)."""
        workers = list(workers)
        if not workers:
            raise ConfigError(f"no live {plan.tier} workers at site {plan.site} to canary")
        canaries = pick_canaries(plan.steps[0], workers)
        entry = HistoryEntry(now, "started", 0, plan.steps[0], canaries)
        return cls(plan, RolloutPhase.RUNNING, 0, canaries, float(now), (entry,))

    @property
    def share(self) -> float:
        """The canary share of the current step."""
        return self.plan.steps[self.step]

    @property
    def running(self) -> bool:
        """True until the rollout completed or was rolled back."""
        return self.phase is RolloutPhase.RUNNING

    def apply(self, decision: Decision, workers: Iterable[str], now: float) -> RolloutState:
        """The state after ``decision``; unchanged on WAIT or once the rollout ended.

        PROMOTE moves to the next step with more canaries picked from ``workers``, or
        completes the rollout when that step's share is 1.0. ROLL_BACK ends it.
        """
        if not self.running or decision.verdict is Verdict.WAIT:
            return self
        if decision.verdict is Verdict.ROLL_BACK:
            entry = HistoryEntry(
                now, "rolled_back", self.step, self.share, self.canary_workers, decision.reason
            )
            return replace(
                self,
                phase=RolloutPhase.ROLLED_BACK,
                history=(*self.history, entry),
                reason=decision.reason,
            )
        step = self.step + 1
        share = self.plan.steps[step]
        if share >= 1.0:
            entry = HistoryEntry(
                now, "completed", step, share, self.canary_workers, decision.reason
            )
            return replace(
                self,
                phase=RolloutPhase.COMPLETED,
                step=step,
                step_started_at=float(now),
                history=(*self.history, entry),
                reason=decision.reason,
            )
        canaries = pick_canaries(share, workers, self.canary_workers)
        entry = HistoryEntry(now, "promoted", step, share, canaries, decision.reason)
        return replace(
            self,
            step=step,
            canary_workers=canaries,
            step_started_at=float(now),
            history=(*self.history, entry),
            reason=decision.reason,
        )

    def with_reason(self, reason: str) -> RolloutState:
        """The same state with the judge's latest word (shown by ``rollout status``)."""
        return replace(self, reason=reason)

    def to_json(self) -> bytes:
        """The state as one JSON object (UTF-8), as stored in ``HF_ROLLOUT``."""
        return orjson.dumps({"schema": STATE_SCHEMA, **self.as_dict()})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (what ``rollout status --json`` prints)."""
        plan = {f.name: getattr(self.plan, f.name) for f in fields(self.plan)}
        plan["steps"] = list(self.plan.steps)
        plan["baseline_seed"] = list(self.plan.baseline_seed)
        return {
            "plan": plan,
            "phase": self.phase.value,
            "step": self.step,
            "share": self.share,
            "canary_workers": list(self.canary_workers),
            "step_started_at": self.step_started_at,
            "history": [{f.name: getattr(h, f.name) for f in fields(h)} for h in self.history],
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: bytes) -> RolloutState:
        """Parse ``to_json`` output; ``SchemaError`` if it is not one."""
        try:
            raw = orjson.loads(data)
            if raw.get("schema") != STATE_SCHEMA:
                raise SchemaError(f"rollout state schema {raw.get('schema')!r} is not 1")
            p = raw["plan"]
            plan = RolloutPlan(
                tier=p["tier"],
                site=p["site"],
                version=p["version"],
                steps=tuple(float(s) for s in p["steps"]),
                previous_version=p["previous_version"],
                started_at=float(p["started_at"]),
                baseline_seed=tuple(p.get("baseline_seed", ())),
            )
            history = tuple(
                HistoryEntry(
                    at=float(h["at"]),
                    kind=str(h["kind"]),
                    step=int(h["step"]),
                    share=float(h["share"]),
                    canary_workers=tuple(h["canary_workers"]),
                    reason=str(h.get("reason", "")),
                )
                for h in raw["history"]
            )
            return cls(
                plan=plan,
                phase=RolloutPhase(raw["phase"]),
                step=int(raw["step"]),
                canary_workers=tuple(raw["canary_workers"]),
                step_started_at=float(raw["step_started_at"]),
                history=history,
                reason=str(raw.get("reason", "")),
            )
        except SchemaError:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"rollout state is not valid: {exc}") from None
