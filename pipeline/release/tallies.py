"""Per-arm tallies: heartbeats in, one ``ArmCounters`` per arm out.

Pure. Two arms, told apart by the ``model_version`` a worker reports (contracts.md,
"Heartbeats"): the **canary** arm runs the new version, the **baseline** arm any
other. ``ArmTally`` turns heartbeats into one ``ArmCounters`` per arm: the canary's
counters are those earned since the current rollout step began (every step is judged
on fresh evidence), the baseline's are everything its workers have reported since
they loaded their model, including what the canary workers reported before they
switched.

``pipeline/release/judge.py`` weighs the two arms; ``pipeline/release/rollout.py`` feeds the
tally the heartbeats it reads.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipeline.release.checks import is_number
from schemas.errors import SchemaError
from schemas.subjects import check_token

__all__ = ["ArmCounters", "ArmTally"]


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
        if not is_number(self.latency_p95_ms) or self.latency_p95_ms < 0:
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
