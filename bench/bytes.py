"""Bytes sent to the cloud and cloud inferences per frame: hybrid against pure cloud.

Run ``python -m bench.bytes`` (``--frames N`` per condition, default 2000;
``--min-accuracy A`` the tuning target; ``--out DIR`` for the PNG, default
``docs/plots``; ``--json PATH`` also writes the figures as JSON). Offline, no NATS.
The camera simulator (``CameraSimulator.make_frame``, seed 0, one digit per frame
drawn at random from the held-out digits) makes the frames; the shipped ONNX models
classify their crops through ``OnnxModel``. The same frames are made again with the
simulator's drift injection (Gaussian noise, Gaussian blur, a brightness offset; the
same digits, since drift has its own random stream), so the edge sees harder crops
and escalates more.

Per privacy class, per frame of that class: a pure-cloud fleet sends every frame's
escalation message (crops for ``crop``, the whole frame for ``full``) and runs one
cloud inference per frame; the hybrid sends the escalated share of them. Message
sizes are measured by encoding a simulator frame and its escalations with
``schemas.codec.encode``. Every frame is assumed escalatable (priority-1 and
``local_only`` frames never are, so a real mix sends less). ``local_only`` frames send
nothing in the hybrid and cannot be served by a pure-cloud fleet at all.

Prints the figures, with cost per 1M frames from ``pipeline.planning.costs.CostModel``
defaults, and writes ``bytes_per_frame.png``. A benchmark: it asserts nothing.
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

from bench.accuracy import DEFAULT_OUT, DEFAULT_TARGET, Measured, measure_at, tuned
from bench.common import machine_line, save_figure
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.config import EdgeSettings
from pipeline.inference.digits import load_split, pixels_to_features
from pipeline.inference.model import OnnxModel
from pipeline.planning.costs import CostModel, Mode
from pipeline.planning.retrain import TuningData
from pipeline.planning.sizes import MessageSizes, measure_message_sizes
from schemas.messages import PrivacyClass

__all__ = ["CONDITIONS", "main"]

PLOT_NAME: Final = "bytes_per_frame.png"
# (label, drift kind, drift strength) as CameraOptions takes them.
CONDITIONS: Final = (
    ("clean", "none", 0.0),
    ("noise 0.2", "noise", 0.2),  # Gaussian noise, sigma = 0.2 * 255
    ("blur 0.5", "blur", 0.5),  # Gaussian blur, sigma = 0.5 digit cells (2 pixels)
    ("brightness +0.2", "brightness", 0.2),  # + 0.2 * 255 on every digit pixel
)
SIGNAL: Final = "max_probability"


@dataclass(frozen=True)
class Condition:
    """One condition's answers and what the thresholds do with them."""

    label: str
    data: TuningData
    tuned: Measured
    default: Measured


def simulator_data(
    edge: OnnxModel, cloud: OnnxModel, frames: int, drift: str, strength: float
) -> TuningData:
    """Both models' answers on ``frames`` simulator frames (one digit each)."""
    options = CameraOptions(cameras=1, seed=0, drift=drift, drift_strength=strength)
    simulator = CameraSimulator(options, digits=load_split())
    crops: list[np.ndarray] = []
    truth: list[int] = []
    for seq in range(frames):
        frame, labels = simulator.make_frame("cam1", seq, 0.0)
        crops.extend(frame.crops())
        truth.extend(labels)
    features = pixels_to_features(crops)
    return TuningData(
        truth=np.array(truth),
        edge_proba=edge.predict_proba(features),
        cloud_labels=cloud.predict_proba(features).argmax(axis=1),
        source=f"{frames} simulator frames, drift {drift} {strength:g}",
    )


def _plot(conditions: list[Condition], sizes: MessageSizes, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    classes = (PrivacyClass.CROP, PrivacyClass.FULL)
    labels = ["pure cloud"] + [f"hybrid, {c.label}" for c in conditions]
    colors = ["tab:gray", "tab:blue", "tab:orange", "tab:red", "tab:olive"]
    width = 0.8 / len(labels)
    for k, kind in enumerate(classes):
        per_escalation = sizes.escalation(kind)
        values = [float(per_escalation)] + [
            c.tuned.escalation_share * per_escalation for c in conditions
        ]
        for j, value in enumerate(values):
            x = k + (j - (len(values) - 1) / 2) * width
            left.bar(x, value, width, color=colors[j], label=labels[j] if k == 0 else None)
            left.text(x, value * 1.15, f"{value:,.0f}", ha="center", fontsize=7, rotation=90)
    left.set_yscale("log")
    left.set_ylim(1, 5e6)
    left.set_xticks(range(len(classes)), [f"privacy {c.value}" for c in classes])
    left.set_ylabel("bytes sent to the cloud per frame (log scale)")
    left.set_title("bytes to the cloud per frame of each privacy class")
    left.legend(fontsize=8, loc="upper left")
    inferences = [1.0] + [c.tuned.escalation_share for c in conditions]
    right.bar(range(len(labels)), inferences, color=colors)
    for j, value in enumerate(inferences):
        right.text(j, value + 0.01, f"{value:.3f}", ha="center", fontsize=8)
    right.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    right.set_ylabel("cloud inferences per frame")
    right.set_title("cloud inferences per frame (any privacy class that may leave)")
    fig.suptitle(
        f"Hybrid at max_probability >= {threshold} (tuned) against pure cloud; "
        f"one digit per frame, every frame assumed escalatable",
        fontsize=10,
    )
    save_figure(fig, path)


def run(frames: int, min_accuracy: float, out: Path) -> list[Condition]:
    """Compute, print and plot."""
    edge, cloud = OnnxModel.load("edge"), OnnxModel.load("cloud")
    sizes = measure_message_sizes()
    threshold = tuned(min_accuracy, SIGNAL).point.threshold
    default_threshold = EdgeSettings().default_threshold
    conditions = []
    for label, drift, strength in CONDITIONS:
        data = simulator_data(edge, cloud, frames, drift, strength)
        conditions.append(
            Condition(
                label,
                data,
                measure_at(data, SIGNAL, threshold),
                measure_at(data, SIGNAL, default_threshold),
            )
        )
    costs = CostModel()
    print(f"machine        {machine_line()}")
    print(
        f"messages       frame {sizes.frame:,} B; escalation with crops {sizes.crop_escalation:,}"
        f" B, with the frame {sizes.full_escalation:,} B; cloud answer {sizes.reply:,} B"
    )
    print(
        f"thresholds     tuned max_probability >= {threshold} (tune --min-accuracy "
        f"{min_accuracy}), shipped default >= {default_threshold}"
    )
    print(f"frames         {frames} per condition, seed 0, one digit each")
    header = (
        "condition        threshold  escalated  edge-only  hybrid   cloud-only  "
        "B/frame crop  B/frame full  cloud inf/frame"
    )
    print(header)
    for c in conditions:
        for name, point in (("tuned", c.tuned), ("default", c.default)):
            share = point.escalation_share
            print(
                f"{c.label:<16} {point.threshold!s:<10} {100 * share:>8.1f}%  "
                f"{100 * c.data.edge_correct.mean():>8.2f}%  {100 * point.accuracy:>6.2f}%  "
                f"{100 * c.data.cloud_correct.mean():>9.2f}%  "
                f"{share * sizes.crop_escalation:>12,.0f}  {share * sizes.full_escalation:>12,.0f}"
                f"  {share:>15.3f}   ({name})"
            )
    print(
        f"{'pure cloud':<16} {'-':<10} {100.0:>8.1f}%  {'':>9}  {'':>7}  {'':>10}  "
        f"{sizes.crop_escalation:>12,}  {sizes.full_escalation:>12,}  {1.0:>15.3f}"
    )
    print("cost per 1M frames (CostModel defaults, docs/cost-model.md), tuned threshold:")
    edge_only = costs.cost_per_million(Mode.EDGE_ONLY).total
    for kind in (PrivacyClass.CROP, PrivacyClass.FULL):
        cloud_only = sizes.cloud_only_cost(costs, kind)
        hybrid = ", ".join(
            f"{c.label} ${sizes.hybrid_cost(costs, kind, c.tuned.escalation_share):.2f}"
            for c in conditions
        )
        print(
            f"  {kind.value:<5} edge-only ${edge_only:.2f}; cloud-only ${cloud_only:.2f}; "
            f"hybrid {hybrid}"
        )
    path = out / PLOT_NAME
    _plot(conditions, sizes, threshold, path)
    print(f"plot           {path}")
    return conditions


def _figures(conditions: list[Condition], sizes: MessageSizes, frames: int) -> dict[str, Any]:
    """The figures as one JSON-ready dict."""
    costs = CostModel()
    rows = []
    for c in conditions:
        for name, point in (("tuned", c.tuned), ("default", c.default)):
            share = point.escalation_share
            rows.append(
                {
                    "condition": c.label,
                    "threshold_kind": name,
                    "threshold": point.threshold,
                    "escalation_share": share,
                    "accuracy": {
                        "edge_only": float(c.data.edge_correct.mean()),
                        "hybrid": point.accuracy,
                        "cloud_only": float(c.data.cloud_correct.mean()),
                    },
                    "bytes_per_frame": {
                        kind.value: share * sizes.escalation(kind)
                        for kind in (PrivacyClass.CROP, PrivacyClass.FULL)
                    },
                    "cloud_inferences_per_frame": share,
                    "cost_per_million_usd": {
                        kind.value: sizes.hybrid_cost(costs, kind, share)
                        for kind in (PrivacyClass.CROP, PrivacyClass.FULL)
                    },
                }
            )
    return {
        "machine": machine_line(),
        "frames_per_condition": frames,
        "message_bytes": dataclasses.asdict(sizes),
        "pure_cloud": {
            "bytes_per_frame": {"crop": sizes.crop_escalation, "full": sizes.full_escalation},
            "cloud_inferences_per_frame": 1.0,
        },
        "hybrid": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.bytes", description=__doc__)
    parser.add_argument("--frames", type=int, default=2000, help="frames per condition")
    parser.add_argument("--min-accuracy", type=float, default=DEFAULT_TARGET)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the PNG")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    conditions = run(args.frames, args.min_accuracy, args.out)
    if args.json:
        figures = _figures(conditions, measure_message_sizes(), args.frames)
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
