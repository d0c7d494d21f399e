"""Where should each stage of a pipeline run? Scores for device, edge and cloud, with reasons.

Two hard constraints exclude a tier: the privacy class (the stage's input would
have to leave the site and may not) and capacity (the model is bigger than the tier
takes). A third follows from the data flow (device -> edge -> cloud, never back): a
stage cannot run below the tier its input comes from. The tiers that remain get a
weighted score in [0, 1] from latency, data sensitivity, throughput, cost per
inference and operational burden. Every number used is a :class:`Figure` that says
where it comes from: measured (a file under bench/results, the model manifest) or
assumed. :func:`plan` and :func:`render_plan` are pure; only :meth:`Figures.load`
reads files. The scoring is written out in ``docs/pipelines.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from pipeline.planning.costs import (
    HOURS_PER_MONTH,
    MEASURED_CLOUD_THROUGHPUT,
    MEASURED_ON,
    CostModel,
    Mode,
)
from pipeline.planning.pipelines import (
    Data,
    PipelineSpec,
    Privacy,
    StageSpec,
    Tier,
    manifest_sizes,
    may_leave,
    transform_for,
)
from schemas.checks import is_number
from schemas.errors import ConfigError

__all__ = [
    "Figure",
    "Figures",
    "Fleet",
    "Plan",
    "StagePlan",
    "TierCapabilities",
    "TierScore",
    "Weights",
    "plan",
    "render_plan",
]

EDGE_THROUGHPUT: Final = "bench/results/edge_throughput.json"
LATENCY: Final = "bench/results/latency.json"
BYTES: Final = "bench/results/bytes.json"
# Sensitivity score of a stage whose input leaves the site, by what it is; input that
# stays on the site scores 1. Stated judgements, not measurements.
EXPOSURE: Final[Mapping[Data, float]] = {
    Data.EMBEDDING: 0.8,
    Data.CROPS: 0.5,
    Data.REGIONS: 0.5,
    Data.FRAME: 0.2,
}
# An assumed smart camera: $30 of extra compute over 36 months, 1 W, its own 25 frames/s.
DEVICE_COSTS: Final = CostModel(
    edge_device=30.0, edge_power_w=1.0, frames_per_month=25 * 3600 * HOURS_PER_MONTH
)


@dataclass(frozen=True, slots=True)
class Figure:
    """One number, its unit, where it comes from ("measured: FILE" or "assumed"), and detail."""

    value: float
    unit: str
    source: str
    note: str = ""

    @property
    def measured(self) -> bool:
        """True when the number was measured rather than assumed."""
        return self.source.startswith("measured")

    def text(self) -> str:
        """The number and its unit, e.g. ``928 frames/s``."""
        return f"{_number(self.value)} {self.unit}"

    def cite(self) -> str:
        """The number, its unit and its source, e.g. ``928 frames/s (measured: ...)``."""
        return f"{self.text()} ({self.source})"


@dataclass(frozen=True, slots=True)
class Figures:
    """The measured or assumed figures a plan is scored with.

    Throughput is per unit of the tier: per camera on the device, per site on the edge,
    per GPU in the cloud. ``crossing_bytes`` is the message one item of each kind
    makes when it leaves the site; ``model_bytes`` is by manifest role. ``costs``
    prices the edge and the cloud (``pipeline/planning/costs.py``), ``device_costs`` a camera.
    """

    latency_p50_ms: Mapping[Tier, Figure]
    latency_p99_ms: Mapping[Tier, Figure]
    throughput_fps: Mapping[Tier, Figure]
    crossing_bytes: Mapping[Data, Figure]
    reply_bytes: Figure
    model_bytes: Mapping[str, Figure] = field(default_factory=dict)
    costs: CostModel = field(default_factory=CostModel)
    device_costs: CostModel = DEVICE_COSTS

    @classmethod
    def assumed(cls, cloud_round_trip_prior_ms: float | None = None) -> Figures:
        """Every figure at its stated default, with no files read.

        ``cloud_round_trip_prior_ms`` defaults to ``edge.cloud_round_trip_prior_ms``
        of the default settings (``pipeline/config.py``).
        """
        from pipeline.config import EdgeSettings

        prior = (
            EdgeSettings().cloud_round_trip_prior_ms
            if cloud_round_trip_prior_ms is None
            else cloud_round_trip_prior_ms
        )
        rtt = ("assumed: edge.cloud_round_trip_prior_ms", "the prior in pipeline/config.py")
        demo = ("assumed", "one `make demo` run in README.md, hybrid routing")
        device = ("assumed", "a camera-class CPU running a model under 1 MB")
        sizes = ("measured: docs/cost-model.md", "schemas.codec.encode of a simulator frame")
        return cls(
            latency_p50_ms={
                Tier.DEVICE: Figure(15.0, "ms", *device),
                Tier.EDGE: Figure(5.88, "ms", *demo),
                Tier.CLOUD: Figure(prior, "ms", *rtt),
            },
            latency_p99_ms={
                Tier.DEVICE: Figure(40.0, "ms", *device),
                Tier.EDGE: Figure(23.71, "ms", *demo),
                Tier.CLOUD: Figure(prior, "ms", *rtt),
            },
            throughput_fps={
                Tier.DEVICE: Figure(30.0, "frames/s", *device),
                Tier.EDGE: Figure(500.0, "frames/s", "assumed", "an edge worker taking frames"),
                Tier.CLOUD: Figure(
                    MEASURED_CLOUD_THROUGHPUT,
                    "frames/s",
                    "measured: pipeline/planning/costs.py",
                    f"{MEASURED_ON}; not this project's model",
                ),
            },
            crossing_bytes={
                Data.FRAME: Figure(307_481, "B", *sizes),
                Data.CROPS: Figure(1_300, "B", *sizes),
                Data.REGIONS: Figure(1_300, "B", *sizes),
                Data.EMBEDDING: Figure(800, "B", "assumed", "128 float32 in a message envelope"),
            },
            reply_bytes=Figure(298, "B", *sizes),
        )

    @classmethod
    def load(cls, repo_root: Path | str, cloud_round_trip_prior_ms: float | None = None) -> Figures:
        """The assumed figures, replaced by measurements where ``repo_root`` has them.

        Reads ``bench/results/edge_throughput.json`` (edge frames/s),
        ``bench/results/latency.json`` (edge and cloud p50/p99), ``bench/results/bytes.json``
        (message sizes) and ``models/manifest.json`` (model sizes). A missing file or
        key leaves the assumption in place, and its source then says which file was absent.
        """
        root = Path(repo_root)
        base = cls.assumed(cloud_round_trip_prior_ms)
        fps = dict(base.throughput_fps)
        fps[Tier.EDGE] = _edge_throughput(root) or _absent(fps[Tier.EDGE], EDGE_THROUGHPUT)
        p50, p99 = dict(base.latency_p50_ms), dict(base.latency_p99_ms)
        latency = _read_json(root / LATENCY)
        for tier, routing in ((Tier.EDGE, "edge_only"), (Tier.CLOUD, "cloud_only")):
            for table, key in ((p50, "p50"), (p99, "p99")):
                table[tier] = _measured(
                    _dig(latency, "results", routing, "latency_ms", key), "ms", LATENCY,
                    f"{routing} routing, capture to final result",
                ) or _absent(table[tier], LATENCY)
        message = _dig(_read_json(root / BYTES), "message_bytes")
        sizes = dict(base.crossing_bytes)
        for kind, key in (
            (Data.FRAME, "full_escalation"),
            (Data.CROPS, "crop_escalation"),
            (Data.REGIONS, "crop_escalation"),
        ):
            sizes[kind] = _measured(_dig(message, key), "B", BYTES, "encoded") or sizes[kind]
        reply = _measured(_dig(message, "reply"), "B", BYTES, "encoded") or base.reply_bytes
        models: dict[str, Figure] = {}
        manifest = root / "models" / "manifest.json"
        if manifest.is_file():
            for role, size in manifest_sizes(manifest).items():
                if size is not None:
                    models[role] = Figure(size, "B", "measured: models/manifest.json")
        return cls(p50, p99, fps, sizes, reply, models, base.costs, base.device_costs)


@dataclass(frozen=True, slots=True)
class TierCapabilities:
    """The largest model each tier takes, in bytes (None: no limit). Stated defaults."""

    device_max_model_bytes: int | None = 1_000_000
    edge_max_model_bytes: int | None = 100_000_000
    cloud_max_model_bytes: int | None = None

    def limit(self, tier: Tier) -> int | None:
        """The model size limit of ``tier``."""
        return {
            Tier.DEVICE: self.device_max_model_bytes,
            Tier.EDGE: self.edge_max_model_bytes,
            Tier.CLOUD: self.cloud_max_model_bytes,
        }[tier]


@dataclass(frozen=True, slots=True)
class Fleet:
    """How many of each unit there are: what an update of one stage has to reach. Assumed."""

    sites: int = 10
    cameras_per_site: int = 4

    def __post_init__(self) -> None:
        for name in ("sites", "cameras_per_site"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fleet: {name} must be an integer >= 1, got {value!r}")

    def units(self, tier: Tier) -> int:
        """Units to update when a stage runs on ``tier``: every camera, every site, or one cloud."""
        return {
            Tier.DEVICE: self.sites * self.cameras_per_site,
            Tier.EDGE: self.sites,
            Tier.CLOUD: 1,
        }[tier]


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each soft factor counts; the score is their weighted mean, in [0, 1].

    ``cost_scale_per_million``: the cost, in US$ per 1M inferences, at which the cost
    factor is 0.5 (it is 1 / (1 + cost / scale)).
    """

    latency: float = 4.0
    sensitivity: float = 2.0
    throughput: float = 2.0
    cost: float = 1.0
    operations: float = 1.0
    cost_scale_per_million: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (is_number(value) and value >= 0):
                raise ConfigError(f"weights: {name} must be a finite number >= 0, got {value!r}")
        if self.cost_scale_per_million <= 0:
            raise ConfigError("weights: cost_scale_per_million must be > 0")
        if self.latency + self.sensitivity + self.throughput + self.cost + self.operations <= 0:
            raise ConfigError("weights: at least one weight must be > 0")


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
        figures, capabilities or TierCapabilities(), fleet or Fleet(), weights or Weights(),
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
        spec.name, spec.privacy, tuple(stages), _figures_used(spec, figures),
        given.weights, given.capabilities, given.fleet,
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
            f"{_number(limit)} B (TierCapabilities)"
        )
    else:
        within = "no limit" if limit is None else f"the limit is {_number(limit)} B"
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
        "latency": w.latency, "sensitivity": w.sensitivity, "throughput": w.throughput,
        "cost": w.cost, "operations": w.operations,
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
        f"p50 and p99 {p50.cite()}" if (p50.value, p50.source) == (p99.value, p99.source)
        else f"p50 {p50.cite()}, p99 {p99.cite()}"
    )
    reasons.append(f"latency {figures} against the SLO of {_number(slo)} ms: {verdict}")
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
        f"{_number(rate)} frames/s per site: {count} cameras x {per_unit.cite()}"
        if count > 1 else f"{per_unit.cite()} per site"
    )
    reasons.append(f"throughput {how}, for the {_number(need)} frames/s needed")
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
            f" of {_number(sent)} B out and {_number(back)} B back "
            f"({f.crossing_bytes[stage.needs].source})" if leaves else ""
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
        f"${_number(model.edge_device)} {unit} over {_number(model.edge_life_months)} months "
        f"at {_number(model.edge_power_w)} W, over its {_number(model.frames_per_month)} "
        f"frames a month"
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


# ---------------------------------------------------------------- rendering


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


# ---------------------------------------------------------------- helpers


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it is absent or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _dig(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document



def _edge_throughput(root: Path) -> Figure | None:
    """The shipped edge model's frames/s in the edge worker: the lowest over the batch caps."""
    document = _read_json(root / EDGE_THROUGHPUT)
    runs = _dig(document, "models", "edge", "worker")
    if not isinstance(runs, dict):
        return None
    rates = {cap: _dig(run, "frames_per_s") for cap, run in runs.items()}
    rates = {cap: r for cap, r in rates.items() if is_number(r) and r > 0}
    if not rates:
        return None
    caps = ", ".join(sorted(rates, key=lambda cap: int(cap) if cap.isdigit() else 0))
    model = _dig(document, "models", "edge", "name")
    note = f"{model} in the edge worker through NATS; lowest of batch caps {caps}"
    return Figure(min(rates.values()), "frames/s", f"measured: {EDGE_THROUGHPUT}", note)


def _measured(value: Any, unit: str, name: str, note: str) -> Figure | None:
    """A figure read from file ``name``, or None if ``value`` is not a positive number."""
    if not (is_number(value) and value > 0):
        return None
    return Figure(value, unit, f"measured: {name}", note)


def _absent(assumed: Figure, name: str) -> Figure:
    note = f"{assumed.note}; no figure in {name}" if assumed.note else f"no figure in {name}"
    return Figure(assumed.value, assumed.unit, assumed.source, note)


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
