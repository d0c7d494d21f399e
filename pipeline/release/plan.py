"""The rollout plan and its state: steps, canaries, and what happened.

Pure. ``RolloutPlan`` says what to roll out where in which steps of growing canary
shares; ``RolloutState`` is the rollout itself: the step, which workers are canaries,
and the history. ``RolloutState.apply`` advances on the judge's PROMOTE and ends on
ROLL_BACK (``Decision``, pipeline/release/judge.py); the controller
(``pipeline/release/rollout.py``) stores the state in ``HF_ROLLOUT`` and carries out what
changed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Final

import orjson

from pipeline.release.checks import is_number
from pipeline.release.judge import Decision, Verdict
from schemas import subjects
from schemas.errors import ConfigError, SchemaError
from schemas.heartbeat import Tier
from schemas.subjects import check_token

__all__ = [
    "CLOUD_SITE",
    "HistoryEntry",
    "RolloutPhase",
    "RolloutPlan",
    "RolloutState",
    "TIERS",
    "pick_canaries",
]

STATE_SCHEMA: Final = 1
TIERS: Final = tuple(tier.value for tier in Tier)
CLOUD_SITE: Final = subjects.CLOUD_SITE  # the site token of cloud workers (contracts.md)


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
            or not all(is_number(s) and 0 < s <= 1 for s in steps)
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
        if not is_number(canary_share) or not 0 < canary_share < 1:
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
