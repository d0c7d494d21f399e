"""Where should each stage of a pipeline run? Scores for device, edge and cloud, with reasons.

Two hard constraints exclude a tier: the privacy class (the stage's input would
have to leave the site and may not) and capacity (the model is bigger than the tier
takes). A third follows from the data flow (device -> edge -> cloud, never back): a
stage cannot run below the tier its input comes from. The tiers that remain get a
weighted score in [0, 1] from latency, data sensitivity, throughput, cost per
inference and operational burden. Every number used is a :class:`Figure` that says
where it comes from (pipeline/planning/figures.py); capacities, fleet and weights are
stated assumptions (pipeline/planning/assumptions.py). :func:`plan` is pure and makes a
:class:`~pipeline.planning.scores.Plan`. The scoring is written out in
``docs/pipelines.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pipeline.planning.assumptions import Fleet, TierCapabilities, Weights
from pipeline.planning.costs import Mode
from pipeline.planning.figures import Figure, Figures, format_number
from pipeline.planning.pipelines import (
    Data,
    PipelineSpec,
    Privacy,
    StageSpec,
    Tier,
    may_leave,
    transform_for,
)
from pipeline.planning.scores import Plan, StagePlan, TierScore

__all__ = ["EXPOSURE", "plan"]

# Sensitivity score of a stage whose input leaves the site, by what it is; input that
# stays on the site scores 1. Stated judgements, not measurements.
EXPOSURE: Final[Mapping[Data, float]] = {
    Data.EMBEDDING: 0.8,
    Data.CROPS: 0.5,
    Data.REGIONS: 0.5,
    Data.FRAME: 0.2,
}
# An assumed smart camera: $30 of extra compute over 36 months, 1 W, its own 25 frames/s.


@dataclass(frozen=True, slots=True)
class _Inputs:
    figures: Figures
    capabilities: TierCapabilities
    fleet: Fleet
    weights: Weights
    privacy: Privacy


def plan(
    spec: PipelineSpec,
    figures: Figures,
    *,
    capabilities: TierCapabilities | None = None,
    fleet: Fleet | None = None,
    weights: Weights | None = None,
) -> Plan:
    """Score every tier for every stage of ``spec`` and recommend the best allowed one.

    Stages are placed in order, each on top of where the earlier ones were placed,
    so the recommendations respect the data flow. Ties go to the declared tier.
    """
    given = _Inputs(
        figures,
        capabilities or TierCapabilities(),
        fleet or Fleet(),
        weights or Weights(),
        spec.privacy,
    )
    placed: list[tuple[StageSpec, Tier]] = []
    stages = []
    for stage in spec.stages:
        source, producer = _input_source(stage.needs, placed)
        tiers = tuple(_score(stage, tier, source, producer, given) for tier in Tier)
        allowed = [t for t in tiers if t.score is not None]
        best = max(
            allowed,
            key=lambda t: (round(t.score or 0.0, 9), t.tier is stage.tier, -t.tier.rank),
            default=None,
        )
        recommended = None if best is None else best.tier
        placed.append((stage, stage.tier if recommended is None else recommended))
        stages.append(StagePlan(stage, recommended, tiers))
    return Plan(
        spec.name,
        spec.privacy,
        tuple(stages),
        _figures_used(spec, figures),
        given.weights,
        given.capabilities,
        given.fleet,
    )


def _input_source(needs: Data, placed: list[tuple[StageSpec, Tier]]) -> tuple[Tier, str]:
    """The tier a stage's input comes from, and what produces it there."""
    same = {Data.CROPS, Data.REGIONS}  # crops are cut wherever the regions are found
    for earlier, tier in reversed(placed):
        if earlier.emits is needs or (needs in same and earlier.emits in same):
            return tier, f"stage {earlier.name!r}"
    return Tier.DEVICE, "the camera"


def _score(stage: StageSpec, tier: Tier, source: Tier, producer: str, given: _Inputs) -> TierScore:
    f, w = given.figures, given.weights
    reasons: list[str] = []

    def excluded(why: str) -> TierScore:
        return TierScore(tier, None, why, {}, tuple(reasons))

    if tier.rank < source.rank:
        return excluded(
            f"its input ({stage.needs}) comes from {producer} on the {source}, and data "
            f"flows only device -> edge -> cloud"
        )
    size, limit = f.model_bytes.get(stage.model), given.capabilities.limit(tier)
    if size is None:
        reasons.append(f"model {stage.model!r}: size unknown, so capacity is not checked")
    elif limit is not None and size.value > limit:
        return excluded(
            f"model {stage.model!r} is {size.cite()}, over the {tier} limit of "
            f"{format_number(limit)} B (TierCapabilities)"
        )
    else:
        within = "no limit" if limit is None else f"the limit is {format_number(limit)} B"
        reasons.append(f"model {stage.model!r} is {size.cite()}; {within}")
    leaves = tier is Tier.CLOUD and source is not Tier.CLOUD
    sent = transform_for(stage.needs)
    if leaves and not may_leave(given.privacy, sent):
        return excluded(
            f"its input ({stage.needs}) would leave the site as {sent}, which privacy "
            f"{given.privacy} forbids"
        )

    factors: dict[str, float] = {}
    factors["latency"] = _latency(stage, tier, f, reasons)
    factors["sensitivity"] = EXPOSURE[stage.needs] if leaves else 1.0
    if leaves:
        reasons.append(
            f"its input ({stage.needs}) leaves the site as {sent}, allowed by privacy "
            f"{given.privacy}; sensitivity {factors['sensitivity']}"
        )
    factors["throughput"] = _throughput(stage, tier, f, given.fleet, reasons)
    cost = _cost_per_million(stage, tier, leaves, f, reasons)
    factors["cost"] = 1.0 / (1.0 + cost / w.cost_scale_per_million)
    units = given.fleet.units(tier)
    factors["operations"] = 1.0 / (1.0 + math.log10(units))
    reasons.append(f"{units} {'unit' if units == 1 else 'units'} to update ({_fleet(tier, given)})")
    weight = {
        "latency": w.latency,
        "sensitivity": w.sensitivity,
        "throughput": w.throughput,
        "cost": w.cost,
        "operations": w.operations,
    }
    score = sum(weight[k] * v for k, v in factors.items()) / sum(weight.values())
    return TierScore(tier, score, None, factors, tuple(reasons))


def _latency(stage: StageSpec, tier: Tier, f: Figures, reasons: list[str]) -> float:
    slo = stage.latency_slo_ms
    if slo is None:
        return 1.0
    p50, p99 = f.latency_p50_ms[tier], f.latency_p99_ms[tier]
    if slo >= p99.value:
        verdict, score = "meets it at p99", 1.0
    elif slo >= p50.value:
        verdict, score = "meets it at p50 but not at p99", 0.5
    else:
        verdict, score = "misses it even at p50", 0.0
    figures = (
        f"p50 and p99 {p50.cite()}"
        if (p50.value, p50.source) == (p99.value, p99.source)
        else f"p50 {p50.cite()}, p99 {p99.cite()}"
    )
    reasons.append(f"latency {figures} against the SLO of {format_number(slo)} ms: {verdict}")
    return score


def _throughput(
    stage: StageSpec, tier: Tier, f: Figures, fleet: Fleet, reasons: list[str]
) -> float:
    need = stage.min_throughput_fps
    if need is None:
        return 1.0
    per_unit = f.throughput_fps[tier]
    # Each camera runs its own device stage, so the device tier's rate per site adds up.
    count = fleet.cameras_per_site if tier is Tier.DEVICE else 1
    rate = per_unit.value * count
    how = (
        f"{format_number(rate)} frames/s per site: {count} cameras x {per_unit.cite()}"
        if count > 1
        else f"{per_unit.cite()} per site"
    )
    reasons.append(f"throughput {how}, for the {format_number(need)} frames/s needed")
    return min(1.0, rate / need)


def _cost_per_million(
    stage: StageSpec, tier: Tier, leaves: bool, f: Figures, reasons: list[str]
) -> float:
    """US$ per 1M inferences on ``tier`` (``pipeline/planning/costs.py``), without the
    site's link."""
    if tier is Tier.CLOUD:
        sent = f.crossing_bytes[stage.needs].value if leaves else 0.0
        back = f.reply_bytes.value if leaves else 0.0
        c = f.costs.cost_per_million(Mode.HYBRID, 1.0, sent, bytes_per_reply=back)
        cost = c.cloud_compute + c.transfer
        moved = (
            f" of {format_number(sent)} B out and {format_number(back)} B back "
            f"({f.crossing_bytes[stage.needs].source})"
            if leaves
            else ""
        )
        reasons.append(
            f"cost ${cost:.3f} per 1M inferences (pipeline/planning/costs.py, prices assumed): "
            f"${c.cloud_compute:.3f} GPU + ${c.transfer:.3f} transfer{moved}"
        )
        return cost
    model = f.device_costs if tier is Tier.DEVICE else f.costs
    c = model.cost_per_million(Mode.EDGE_ONLY)
    cost = c.edge_device + c.edge_power
    unit = "camera compute module" if tier is Tier.DEVICE else "edge box"
    reasons.append(
        f"cost ${cost:.3f} per 1M inferences (pipeline/planning/costs.py, prices assumed): a "
        f"${format_number(model.edge_device)} {unit} over "
        f"{format_number(model.edge_life_months)} months at {format_number(model.edge_power_w)} W, "
        f"over its {format_number(model.frames_per_month)} frames a month"
    )
    return cost


def _fleet(tier: Tier, given: _Inputs) -> str:
    fleet = given.fleet
    if tier is Tier.DEVICE:
        return f"{fleet.sites} sites x {fleet.cameras_per_site} cameras; fleet assumed"
    if tier is Tier.EDGE:
        return f"{fleet.sites} sites; fleet assumed"
    return "one cloud deployment"


def _figures_used(spec: PipelineSpec, f: Figures) -> tuple[tuple[str, Figure], ...]:
    out: list[tuple[str, Figure]] = []
    for tier in Tier:
        out.append((f"{tier} latency p50", f.latency_p50_ms[tier]))
        out.append((f"{tier} latency p99", f.latency_p99_ms[tier]))
        out.append((f"{tier} throughput per unit", f.throughput_fps[tier]))
    for kind in (Data.FRAME, Data.CROPS, Data.EMBEDDING):
        out.append((f"{kind} message off the site", f.crossing_bytes[kind]))
    out.append(("cloud answer message", f.reply_bytes))
    for role in dict.fromkeys(s.model for s in spec.stages):
        if role in f.model_bytes:
            out.append((f"model {role!r}", f.model_bytes[role]))
    return tuple(out)
