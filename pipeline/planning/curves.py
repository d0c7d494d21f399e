"""Operating points of the edge's confidence threshold, and choosing one for a target.

Pure. A frame stays on the edge when its confidence >= threshold
(``EscalationPolicy``) and is escalated otherwise. Given per-frame confidences and
whether the edge's and the cloud's answers are right, each threshold is an operating
point: the escalation share (frames with confidence < threshold) and the hybrid
accuracy (the edge's answer where kept, the cloud's where escalated). :func:`sweep`
lists every distinct point, :func:`choose` picks one for a :class:`Target`, and
:func:`area_under_curve` compares confidence signals. All frames are assumed
escalatable; priority-1 and ``local_only`` frames stay local in practice, which
:func:`with_mix` accounts for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from pipeline.inference.calibration import SIGNALS
from schemas.errors import ConfigError, HybridfleetError

__all__ = [
    "OperatingPoint",
    "Target",
    "TargetKind",
    "TuningError",
    "area_under_curve",
    "best_signal",
    "choose",
    "sweep",
    "with_mix",
]


class TuningError(HybridfleetError):
    """The target cannot be met on the data, or the config cannot be written."""


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and what it gives on the data it was computed on."""

    threshold: float
    escalation_share: float
    accuracy: float
    escalated: int
    frames: int


def _nice_threshold(lo: float, hi: float) -> float:
    """A short decimal in (lo, hi], from the middle half of the interval if one fits.

    Any threshold in (lo, hi] separates the same frames; the middle keeps a margin to
    the confidences on either side, and few digits keep the config readable.
    """
    width = hi - lo
    a, b = lo + width / 4, hi - width / 4
    for digits in range(1, 16):
        scale = 10.0**digits
        candidate = math.ceil(a * scale) / scale
        if candidate <= b and lo < candidate <= hi:
            return candidate
    return lo + width / 2


def sweep(
    confidences: np.ndarray, edge_correct: np.ndarray, cloud_correct: np.ndarray
) -> tuple[OperatingPoint, ...]:
    """Every distinct operating point, from no escalation upwards.

    Point k escalates the frames whose confidence is among the k lowest distinct
    values. Its threshold is 0.0 for none, 1.0 for all (when no confidence is 1.0;
    a frame with confidence 1.0 can never escalate), and otherwise a short decimal
    between the k-th and (k+1)-th distinct confidences.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    edge = np.asarray(edge_correct, dtype=bool)
    cloud = np.asarray(cloud_correct, dtype=bool)
    n = conf.shape[0]
    if conf.ndim != 1 or edge.shape != (n,) or cloud.shape != (n,) or n == 0:
        raise ValueError("confidences, edge_correct and cloud_correct must be equal 1-D, n > 0")
    if not (np.isfinite(conf).all() and conf.min() >= 0.0 and conf.max() <= 1.0):
        raise ValueError("confidences must be in [0, 1]")
    order = np.argsort(conf, kind="stable")
    values, counts = np.unique(conf[order], return_counts=True)
    cum_cloud = np.concatenate([[0], np.cumsum(cloud[order])])
    cum_edge = np.concatenate([[0], np.cumsum(edge[order])])
    total_edge = int(cum_edge[-1])
    escalated_at = np.concatenate([[0], np.cumsum(counts)])
    last = len(values) if values[-1] < 1.0 else len(values) - 1
    points = []
    for k in range(last + 1):
        m = int(escalated_at[k])
        if k == 0:
            threshold = 0.0
        elif k == len(values):
            threshold = 1.0
        else:
            threshold = _nice_threshold(float(values[k - 1]), float(values[k]))
        correct = int(cum_cloud[m]) + total_edge - int(cum_edge[m])
        points.append(OperatingPoint(threshold, m / n, correct / n, m, n))
    return tuple(points)


def area_under_curve(points: Sequence[OperatingPoint], up_to: float) -> float:
    """Mean hybrid accuracy over escalation shares 0..``up_to`` (linear between points).

    The area under the accuracy-vs-escalation curve divided by ``up_to``, so curves
    compare over the same range: pass the smallest largest share among them.
    """
    if not points:
        raise ValueError("no points")
    xs = np.array([p.escalation_share for p in points])
    ys = np.array([p.accuracy for p in points])
    if up_to <= 0.0:
        return float(ys[0])
    if up_to > xs[-1] + 1e-12:
        raise ValueError(f"the curve ends at share {xs[-1]:.4f}, before {up_to:.4f}")
    inside = xs < up_to
    grid = np.concatenate([xs[inside], [up_to]])
    values = np.interp(grid, xs, ys)
    area = float(np.sum((grid[1:] - grid[:-1]) * (values[1:] + values[:-1]) / 2))
    return area / up_to


def best_signal(areas: Mapping[str, float], frames: int) -> str:
    """The signal with the largest area; differences under one frame (1/frames) are ties.

    A tie goes to the signal listed first in ``SIGNALS``, so ``max_probability`` (what
    the edge worker computes today) stays unless another is better by more than one
    frame's worth of accuracy.
    """
    if not areas or frames < 1:
        raise ValueError("need areas and frames >= 1")
    top = max(areas.values())
    order = [name for name in SIGNALS if name in areas] + [n for n in areas if n not in SIGNALS]
    return next(name for name in order if areas[name] >= top - 1.0 / frames)


class TargetKind(StrEnum):
    """What the user asks for."""

    MIN_ACCURACY = "min_accuracy"
    MAX_ESCALATION = "max_escalation"
    MAX_COST = "max_cost_per_million"


@dataclass(frozen=True)
class Target:
    """One target: at least this accuracy, at most this share, or at most this cost."""

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0:
            raise ConfigError(f"--{self.flag} must be a finite number >= 0, got {self.value}")
        if self.kind is not TargetKind.MAX_COST and self.value > 1:
            raise ConfigError(f"--{self.flag} is a share in 0..1, got {self.value}")

    @property
    def flag(self) -> str:
        """The command-line option that sets this target."""
        return self.kind.value.replace("_", "-")

    def describe(self) -> str:
        """E.g. ``accuracy >= 98.50%``."""
        if self.kind is TargetKind.MIN_ACCURACY:
            return f"accuracy >= {100 * self.value:.2f}%"
        if self.kind is TargetKind.MAX_ESCALATION:
            return f"escalation share <= {100 * self.value:.2f}%"
        return f"cost <= ${self.value:.4g} per 1M frames"


def choose(
    points: Sequence[OperatingPoint],
    target: Target,
    cost: Callable[[float], float] | None = None,
) -> OperatingPoint:
    """The operating point that meets ``target``.

    * minimum accuracy: the smallest escalation share whose accuracy reaches it;
    * maximum escalation share, or maximum cost (``cost(share)`` in $ per 1M frames):
      the highest accuracy within the bound, and of equals the smallest share.

    TuningError when no point meets the target, saying what is reachable.
    """
    if not points:
        raise ValueError("no points")
    if target.kind is TargetKind.MIN_ACCURACY:
        meeting = [p for p in points if p.accuracy >= target.value - 1e-12]
        if not meeting:
            best = max(points, key=lambda p: (p.accuracy, -p.escalation_share))
            raise TuningError(
                f"no threshold reaches {target.describe()} on this data; the best is "
                f"{100 * best.accuracy:.2f}% at escalation share "
                f"{100 * best.escalation_share:.1f}%"
            )
        return min(meeting, key=lambda p: p.escalation_share)
    if target.kind is TargetKind.MAX_ESCALATION:
        within = [p for p in points if p.escalation_share <= target.value + 1e-12]
    else:
        if cost is None:
            raise ValueError("a cost target needs cost(share)")
        within = [p for p in points if cost(p.escalation_share) <= target.value]
        if not within:
            raise TuningError(
                f"even escalating nothing costs ${cost(0.0):.4g} per 1M frames (the edge "
                f"device and connectivity), above {target.describe()}"
            )
    # Share 0 is always a point, so `within` is empty only for a cost target (above).
    return max(within, key=lambda p: (p.accuracy, -p.escalation_share))


def with_mix(
    point: OperatingPoint, edge_accuracy: float, escalatable: float
) -> tuple[float, float]:
    """(escalation share, accuracy) when only ``escalatable`` of frames may escalate.

    The others (priority 1, ``local_only``) keep the edge's answer whatever their
    confidence; assumes the mix is independent of confidence.
    """
    share = escalatable * point.escalation_share
    accuracy = escalatable * point.accuracy + (1.0 - escalatable) * edge_accuracy
    return share, accuracy
