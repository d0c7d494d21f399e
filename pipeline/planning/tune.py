"""Choosing the edge's confidence threshold from a target: ``hybridfleet tune``.

``tune`` compares the confidence signals on the data (``TuningData``,
pipeline/planning/retrain.py), picks the threshold of one for a ``Target``
(pipeline/planning/curves.py) and prices it with the measured message sizes
(pipeline/planning/sizes.py); ``format_result`` is the report the command prints.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pipeline.inference.calibration import DEFAULT_SIGNAL, SIGNALS
from pipeline.planning.costs import CostModel, Mode
from pipeline.planning.curves import (
    OperatingPoint,
    Target,
    TuningError,
    area_under_curve,
    best_signal,
    choose,
    with_mix,
)
from pipeline.planning.retrain import TuningData
from pipeline.planning.sizes import MessageSizes
from schemas.errors import ConfigError
from schemas.messages import PrivacyClass

__all__ = ["TuneResult", "format_result", "tune"]

BEST: Final = "best"


@dataclass(frozen=True)
class TuneResult:
    """Everything ``hybridfleet tune`` prints."""

    target: Target
    signal: str
    point: OperatingPoint
    source: str
    edge_accuracy: float
    cloud_accuracy: float
    areas: Mapping[str, float]
    area_up_to: float
    best_signal: str
    per_signal: Mapping[str, OperatingPoint | None]
    privacy: PrivacyClass
    sizes: MessageSizes
    costs: CostModel
    escalatable: float


def _simulator_escalatable() -> float:
    """Share of the simulator's frames that may escalate: not priority 1, not local_only."""
    from pipeline.camera.simulator import CameraOptions

    options = CameraOptions()
    return (1.0 - options.priority_mix[0]) * (1.0 - options.privacy_mix[0])


def tune(
    data: TuningData,
    target: Target,
    *,
    signal: str = DEFAULT_SIGNAL,
    privacy: PrivacyClass | str = PrivacyClass.CROP,
    sizes: MessageSizes,
    costs: CostModel | None = None,
    escalatable: float | None = None,
) -> TuneResult:
    """Compare the signals on ``data`` and pick the threshold of ``signal`` for ``target``.

    ``signal`` is a name from ``SIGNALS`` or ``"best"`` (see :func:`best_signal`).
    ``privacy`` (crop or full) decides the bytes of an escalation for a cost target.
    """
    if signal != BEST and signal not in SIGNALS:
        raise ConfigError(f"unknown signal {signal!r}; known: {', '.join([*SIGNALS, BEST])}")
    kind = PrivacyClass(privacy)
    sizes.escalation(kind)  # refuses local_only: such a frame never escalates
    prices = costs or CostModel()

    def cost(share: float) -> float:
        return sizes.hybrid_cost(prices, kind, share)

    curves = {name: data.curve(name) for name in SIGNALS}
    up_to = min(c[-1].escalation_share for c in curves.values())
    areas = {name: area_under_curve(c, up_to) for name, c in curves.items()}
    best = best_signal(areas, frames=len(data.truth))
    per_signal: dict[str, OperatingPoint | None] = {}
    for name, c in curves.items():
        try:
            per_signal[name] = choose(c, target, cost)
        except TuningError:
            per_signal[name] = None
    chosen = best if signal == BEST else signal
    point = choose(curves[chosen], target, cost)  # raises with the reachable best
    return TuneResult(
        target=target,
        signal=chosen,
        point=point,
        source=data.source,
        edge_accuracy=float(data.edge_correct.mean()),
        cloud_accuracy=float(data.cloud_correct.mean()),
        areas=areas,
        area_up_to=up_to,
        best_signal=best,
        per_signal=per_signal,
        privacy=kind,
        sizes=sizes,
        costs=prices,
        escalatable=_simulator_escalatable() if escalatable is None else escalatable,
    )


def _pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def format_result(r: TuneResult) -> str:
    """The report ``hybridfleet tune`` prints."""
    p, s, c = r.point, r.sizes, r.costs
    lines = [
        f"data            {r.source}",
        f"                edge-only {_pct(r.edge_accuracy)}, cloud-only {_pct(r.cloud_accuracy)}"
        f" on these {p.frames} frames",
        f"target          {r.target.describe()}",
        "",
        f"signal            area*     threshold  escalated  accuracy   (* mean accuracy over "
        f"escalation 0..{_pct(r.area_up_to, 1)})",
    ]
    for name in SIGNALS:
        q = r.per_signal[name]
        at = (
            f"{q.threshold!r:<10} {_pct(q.escalation_share, 1):>9}  {_pct(q.accuracy):>8}"
            if q is not None
            else "target not reachable"
        )
        lines.append(f"{name:<17} {_pct(r.areas[name], 3):>8}  {at}")
    lines.append(
        f"best signal     {r.best_signal} (largest area under accuracy vs escalation; "
        f"differences under one frame, {_pct(1 / p.frames, 3)}, count as ties)"
    )
    share_mix, accuracy_mix = with_mix(p, r.edge_accuracy, r.escalatable)

    def hybrid(kind: PrivacyClass) -> float:
        return s.hybrid_cost(c, kind, p.escalation_share)

    def cloud_only(kind: PrivacyClass) -> float:
        return s.cloud_only_cost(c, kind)

    crop, full = PrivacyClass.CROP, PrivacyClass.FULL
    lines += [
        "",
        f"chosen          {r.signal} >= {p.threshold!r} stays on the edge",
        f"  accuracy      {_pct(p.accuracy)} expected (edge-only {_pct(r.edge_accuracy)}, "
        f"cloud-only {_pct(r.cloud_accuracy)})",
        f"  escalated     {_pct(p.escalation_share, 1)} of frames ({p.escalated} of {p.frames}),"
        " if every frame may escalate",
        f"                priority-1 and local_only frames stay local: with the simulator's "
        f"mix ({_pct(r.escalatable, 0)} may escalate)",
        f"                {_pct(share_mix, 1)} escalated, accuracy {_pct(accuracy_mix)}",
        f"  to the cloud  crop {p.escalation_share * s.crop_escalation:,.0f} B/frame, full "
        f"{p.escalation_share * s.full_escalation:,.0f} B/frame (an escalation is "
        f"{s.crop_escalation:,} B with crops, {s.full_escalation:,} B with the frame; "
        f"a pure-cloud fleet sends one per frame)",
        f"  cloud work    {p.escalation_share:.3f} inferences per frame (pure cloud: 1)",
        f"  cost per 1M   hybrid ${hybrid(crop):.2f} crop, ${hybrid(full):.2f} full; "
        f"edge-only ${c.cost_per_million(Mode.EDGE_ONLY).total:.2f}; "
        f"cloud-only ${cloud_only(crop):.2f} crop, ${cloud_only(full):.2f} full",
        f"                (GPU ${c.gpu_hour}/h at {c.cloud_images_per_s:,.0f} images/s, "
        f"${c.egress_per_gb}/GB, docs/cost-model.md; a cost target uses {r.privacy.value})",
    ]
    return "\n".join(lines)
