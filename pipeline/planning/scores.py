"""What a placement comes to: each tier's score for each stage, as data and as text.

:func:`pipeline.planning.placement.plan` makes a :class:`Plan`; ``to_dict`` is what
``hybridfleet plan --json`` prints and :func:`render_plan` what it prints otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.planning.assumptions import Fleet, TierCapabilities, Weights
from pipeline.planning.figures import Figure
from pipeline.planning.pipelines import Privacy, StageSpec, Tier

__all__ = ["Plan", "StagePlan", "TierScore", "render_plan"]


@dataclass(frozen=True, slots=True)
class TierScore:
    """One tier for one stage: its score (None when excluded), why, and each factor."""

    tier: Tier
    score: float | None
    excluded: str | None
    factors: Mapping[str, float]
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StagePlan:
    """The recommendation for one stage; ``recommended`` is None when every tier is excluded."""

    stage: StageSpec
    recommended: Tier | None
    tiers: tuple[TierScore, ...]

    @property
    def scores(self) -> dict[Tier, float | None]:
        """The score of each tier, None where excluded."""
        return {t.tier: t.score for t in self.tiers}


@dataclass(frozen=True, slots=True)
class Plan:
    """A recommendation for every stage of a pipeline, and every figure it used."""

    pipeline: str
    privacy: Privacy
    stages: tuple[StagePlan, ...]
    figures: tuple[tuple[str, Figure], ...]
    weights: Weights
    capabilities: TierCapabilities
    fleet: Fleet

    def stage(self, name: str) -> StagePlan:
        """The plan of the stage called ``name``."""
        return next(s for s in self.stages if s.stage.name == name)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data."""
        return {
            "pipeline": self.pipeline,
            "privacy": str(self.privacy),
            "weights": asdict(self.weights),
            "capabilities": asdict(self.capabilities),
            "fleet": asdict(self.fleet),
            "figures": [{"name": n, **asdict(f)} for n, f in self.figures],
            "stages": [
                {
                    "stage": s.stage.name,
                    "model": s.stage.model,
                    "declared": str(s.stage.tier),
                    "recommended": None if s.recommended is None else str(s.recommended),
                    "tiers": {
                        str(t.tier): {
                            "score": t.score,
                            "excluded": t.excluded,
                            "factors": dict(t.factors),
                            "reasons": list(t.reasons),
                        }
                        for t in s.tiers
                    },
                }
                for s in self.stages
            ],
        }


def render_plan(p: Plan) -> str:
    """The plan as text: the figures with their sources, then each stage's tiers and reasons."""
    w = p.weights
    lines = [
        f"pipeline {p.pipeline}, privacy {p.privacy}: {len(p.stages)} "
        f"stage{'' if len(p.stages) == 1 else 's'}",
        f"weights: latency {w.latency:g}, sensitivity {w.sensitivity:g}, throughput "
        f"{w.throughput:g}, cost {w.cost:g}, operations {w.operations:g}; "
        f"hard: privacy, model size, data flow",
        "",
        "figures:",
    ]
    width = max(len(name) for name, _ in p.figures)
    for name, fig in p.figures:
        detail = f" ({fig.note})" if fig.note else ""
        lines.append(f"  {name:<{width}}  {fig.text():>16}  {fig.source}{detail}")
    for number, s in enumerate(p.stages, 1):
        st = s.stage
        chosen = "none: every tier is excluded" if s.recommended is None else str(s.recommended)
        lines += [
            "",
            f"stage {number} {st.name}: model {st.model!r}, needs {st.needs}, emits "
            f"{st.emits}; declared {st.tier} -> recommended {chosen}",
        ]
        for t in s.tiers:
            mark = "  <- recommended" if t.tier is s.recommended else ""
            if t.score is None:
                lines.append(f"  {t.tier:<6}  excluded: {t.excluded}")
                continue
            factors = ", ".join(f"{k} {v:.2f}" for k, v in t.factors.items())
            lines.append(f"  {t.tier:<6}  score {t.score:.3f} ({factors}){mark}")
            lines += [f"          - {r}" for r in t.reasons]
    return "\n".join(lines)
