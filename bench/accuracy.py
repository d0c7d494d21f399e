"""Hybrid accuracy against escalation share, for each confidence signal.

Run ``python -m bench.accuracy`` (``--min-accuracy A`` sets the tuning target,
``--out DIR`` the folder of the PNG, default ``docs/plots``; ``--json PATH`` also
writes the figures as JSON). Offline, no NATS: the 540 held-out digits, each once,
drawn as the camera draws them (8x8 values to 32x32 uint8 pixels) and turned back
into features as the workers do, are classified by the shipped ONNX models through
``OnnxModel`` (the edge model with its manifest temperature). For every threshold of
every signal the hybrid answer is the edge's where the frame is kept and the
cloud's where it is escalated; every frame is assumed escalatable.

Marked on the curves: edge-only and cloud-only, the threshold ``hybridfleet tune``
chooses for the target (chosen on cross-validated predictions on the training digits,
then measured here on the held-out digits it never saw) and the shipped default
threshold (``edge.default_threshold``). Prints the figures and writes
``accuracy_vs_escalation.png``. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.common import machine_line, save_figure
from pipeline.config import EdgeSettings
from pipeline.inference.calibration import SIGNALS, confidence
from pipeline.inference.digits import digit_to_pixels, load_split, pixels_to_features
from pipeline.inference.model import OnnxModel
from pipeline.planning.curves import (
    OperatingPoint,
    Target,
    TargetKind,
    area_under_curve,
    best_signal,
)
from pipeline.planning.retrain import TuningData, cross_validated_data
from pipeline.planning.sizes import measure_message_sizes
from pipeline.planning.tune import TuneResult, tune

__all__ = ["DEFAULT_TARGET", "Measured", "heldout_data", "main", "measure_at", "tuned"]

DEFAULT_TARGET: Final = 0.98
DEFAULT_OUT: Final = Path(__file__).resolve().parent.parent / "docs" / "plots"
PLOT_NAME: Final = "accuracy_vs_escalation.png"
SHARES_TO_PRINT: Final = (0.02, 0.05, 0.10, 0.20)


def heldout_data(edge: OnnxModel, cloud: OnnxModel) -> TuningData:
    """Both models' answers on the 540 held-out digits, each drawn as the camera draws it."""
    split = load_split()
    crops = [digit_to_pixels(x, scale=4) for x in split.x_heldout]
    features = pixels_to_features(crops)
    return TuningData(
        truth=split.y_heldout,
        edge_proba=edge.predict_proba(features),
        cloud_labels=cloud.predict_proba(features).argmax(axis=1),
        source=f"the {len(split.y_heldout)} held-out digits, each once, as camera pixels",
    )


@dataclass(frozen=True)
class Measured:
    """A threshold's escalation share and hybrid accuracy on some data."""

    threshold: float
    escalation_share: float
    accuracy: float


def measure_at(data: TuningData, signal: str, threshold: float) -> Measured:
    """Escalate confidence < threshold, exactly as EscalationPolicy decides."""
    escalate = confidence(data.edge_proba, signal) < threshold
    correct = np.where(escalate, data.cloud_correct, data.edge_correct)
    return Measured(threshold, float(escalate.mean()), float(correct.mean()))


def tuned(min_accuracy: float, signal: str = "max_probability") -> TuneResult:
    """What ``hybridfleet tune --min-accuracy A --signal S`` chooses (cross-validated data)."""
    return tune(
        cross_validated_data(),
        Target(TargetKind.MIN_ACCURACY, min_accuracy),
        signal=signal,
        sizes=measure_message_sizes(),
    )


def _accuracy_at_share(points: Sequence[OperatingPoint], share: float) -> OperatingPoint:
    """The last point whose escalation share does not exceed ``share``."""
    return [p for p in points if p.escalation_share <= share + 1e-12][-1]


def _plot(
    curves: dict[str, tuple[OperatingPoint, ...]],
    data: TuningData,
    tuned_at: Measured,
    default_at: Measured,
    tuned_result: TuneResult,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edge_acc = 100 * float(data.edge_correct.mean())
    cloud_acc = 100 * float(data.cloud_correct.mean())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"max_probability": "-", "margin": "--", "entropy": ":"}
    for ax, limit in zip(axes, (100.0, 25.0), strict=True):
        for name, points in curves.items():
            xs = [100 * p.escalation_share for p in points]
            ys = [100 * p.accuracy for p in points]
            ax.plot(xs, ys, styles.get(name, "-"), label=f"hybrid, {name}", linewidth=1.4)
        ax.plot([0], [edge_acc], "o", color="tab:red", label=f"edge only ({edge_acc:.2f}%)")
        ax.plot([100], [cloud_acc], "s", color="tab:green", label=f"cloud only ({cloud_acc:.2f}%)")
        ax.axhline(cloud_acc, color="tab:green", linewidth=0.6, alpha=0.5)
        ax.plot(
            [100 * tuned_at.escalation_share],
            [100 * tuned_at.accuracy],
            "*",
            markersize=14,
            color="black",
            label=(
                f"tuned: max_probability >= {tuned_at.threshold} "
                f"(target {100 * tuned_result.target.value:.1f}% on CV data)"
            ),
        )
        ax.plot(
            [100 * default_at.escalation_share],
            [100 * default_at.accuracy],
            "D",
            color="tab:purple",
            label=f"shipped default: max_probability >= {default_at.threshold}",
        )
        ax.set_xlim(-0.5 if limit < 100 else -2, limit)
        low = min(edge_acc, min(100 * p.accuracy for c in curves.values() for p in c))
        ax.set_ylim(low - 0.3, 100.05)
        ax.set_xlabel("escalated to the cloud (% of frames)")
        ax.set_ylabel("hybrid accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.set_title("full curve" if limit == 100 else "zoom: 0-25% escalated")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"Accuracy vs escalation share: {len(data.truth)} held-out digits, "
        "edge digits-mlp32 (calibrated) + cloud digits-svc, ONNX Runtime",
        fontsize=10,
    )
    save_figure(fig, path)


def run(min_accuracy: float, out: Path) -> dict[str, Any]:
    """Compute, print and plot; return the figures."""
    edge, cloud = OnnxModel.load("edge"), OnnxModel.load("cloud")
    data = heldout_data(edge, cloud)
    curves = {name: data.curve(name) for name in SIGNALS}
    up_to = min(c[-1].escalation_share for c in curves.values())
    areas = {name: area_under_curve(c, up_to) for name, c in curves.items()}
    result = tuned(min_accuracy)
    tuned_at = measure_at(data, result.signal, result.point.threshold)
    default_threshold = EdgeSettings().default_threshold
    default_at = measure_at(data, "max_probability", default_threshold)
    print(f"machine        {machine_line()}")
    print(
        f"data           {data.source}; edge {edge.name} (temperature {edge.spec.temperature}),"
        f" cloud {cloud.name}"
    )
    print(f"edge-only      {100 * data.edge_correct.mean():.2f}%")
    print(f"cloud-only     {100 * data.cloud_correct.mean():.2f}%")
    print(f"area under accuracy vs escalation (mean accuracy over 0..{100 * up_to:.1f}%):")
    for name in SIGNALS:
        row = ", ".join(
            f"{100 * s:.0f}% -> {100 * _accuracy_at_share(curves[name], s).accuracy:.2f}%"
            for s in SHARES_TO_PRINT
        )
        print(f"  {name:<16} {100 * areas[name]:.3f}%   at escalation {row}")
    print(
        f"best signal    {best_signal(areas, frames=len(data.truth))} on these digits "
        "(differences under one frame count as ties)"
    )
    print(f"best on CV     {result.best_signal} (what tune --signal best would pick)")
    print(
        f"tuned          target accuracy >= {100 * min_accuracy:.1f}% on cross-validated "
        f"training data -> max_probability >= {result.point.threshold} "
        f"(there: {100 * result.point.escalation_share:.1f}% escalated, "
        f"{100 * result.point.accuracy:.2f}%)"
    )
    print(
        f"  held out     {100 * tuned_at.escalation_share:.1f}% escalated, hybrid accuracy "
        f"{100 * tuned_at.accuracy:.2f}%"
    )
    print(
        f"default        max_probability >= {default_threshold}: "
        f"{100 * default_at.escalation_share:.1f}% escalated, hybrid accuracy "
        f"{100 * default_at.accuracy:.2f}%"
    )
    path = out / PLOT_NAME
    _plot(curves, data, tuned_at, default_at, result, path)
    print(f"plot           {path}")
    return {
        "machine": machine_line(),
        "data": data.source,
        "edge_temperature": edge.spec.temperature,
        "edge_only": float(data.edge_correct.mean()),
        "cloud_only": float(data.cloud_correct.mean()),
        "area_up_to": up_to,
        "areas": areas,
        "curves": {
            name: [[p.threshold, p.escalation_share, p.accuracy] for p in points]
            for name, points in curves.items()
        },
        "tuned": {
            "target_min_accuracy": min_accuracy,
            "signal": result.signal,
            "threshold": result.point.threshold,
            "cross_validated": {
                "escalation_share": result.point.escalation_share,
                "accuracy": result.point.accuracy,
            },
            "heldout": dataclasses.asdict(tuned_at),
        },
        "default": dataclasses.asdict(default_at),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--min-accuracy", type=float, default=DEFAULT_TARGET)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run(args.min_accuracy, args.out)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
