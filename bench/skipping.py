"""Frame skipping on the device: how many frames it saves, and what it costs in accuracy.

Run ``python -m bench.skipping`` (``--quick`` for a smoke run; ``--json PATH`` and
``--plot PATH`` change where the figures go, by default ``bench/results/skipping.json``
and ``docs/plots/skipping.png``). Offline, no NATS, well under a minute.

The camera simulator's default scene draws a new random digit into every frame, so
nothing could ever be skipped. This benchmark uses its ``static`` scene instead
(``pipeline/camera/simulator.py``): boxes that stay put, each showing the same held-out digit for
a run of frames (run lengths geometric, mean ``mean_run``), with fresh Gaussian sensor
noise on every frame.

For each scenario (1 and 2 regions a frame), each dead zone (``pixel_delta`` 0 and 8)
and each skip threshold, a :class:`~pipeline.camera.device.DeviceTier` with the shipped device
model (confidence threshold 0.9, the default ``max_reuse``) processes every camera's
frames (10 cameras x 800 by default) in capture order, one frame per camera per call.
Reported:

* **skipped**: share of frames that reused an earlier answer (no inference);
* **forwarded**: share of frames sent on to the edge;
* **device acc.**: accuracy (per region, against the truth) of the device answering
  every frame alone, a skipped frame taking the device's answer of the frame it reused;
* **device+edge acc.**: forwarded frames answered by the edge model, a skipped frame
  taking the final answer of the frame it reused;
* **missed**: skipped frames whose truth differs from that of the frame they reused
  (a change the detector did not see).

Threshold 0 disables skipping: its row is the "without skipping" baseline. Each digit
shown stays for about ``mean_run`` frames, so the accuracies rest on about
frames / ``mean_run`` distinct digits per region and move in steps of that size. Frames
are 160x120 (only the regions matter). A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from bench.common import machine_line, save_figure
from pipeline.camera.device import (
    DeviceAction,
    DeviceConfig,
    DeviceDecision,
    DeviceTier,
    SkipConfig,
)
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.inference.digits import DigitsSplit, load_split, pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.messages import Frame

__all__ = ["Row", "main", "run_once", "static_scene_frames"]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_JSON: Final = ROOT / "bench" / "results" / "skipping.json"
DEFAULT_PLOT: Final = ROOT / "docs" / "plots" / "skipping.png"
THRESHOLDS: Final = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2)
PIXEL_DELTAS: Final = (0, 8)
REGIONS: Final = (1, 2)
MAX_REUSE: Final = SkipConfig().max_reuse
DEVICE_THRESHOLD: Final = 0.9
# Only the regions are compared and classified, so a small frame gives the same figures
# as a 640x480 one and keeps 4,000 frames in memory at once.
WIDTH: Final = 160
HEIGHT: Final = 120


Labelled = tuple[Frame, tuple[int, ...]]


def static_scene_frames(
    camera: str,
    frames: int,
    *,
    regions: int,
    mean_run: float,
    noise_sigma: float,
    seed: int,
    digits: DigitsSplit,
) -> list[Labelled]:
    """``frames`` frames of one camera of the simulator's static scene, with truth."""
    options = CameraOptions(
        cameras=1,
        width=WIDTH,
        height=HEIGHT,
        regions_per_frame=regions,
        priority_mix=(0.0, 1.0, 0.0),
        privacy_mix=(0.0, 1.0, 0.0),
        scene="static",
        mean_run=mean_run,
        noise_sigma=noise_sigma,
        seed=seed,
    )
    simulator = CameraSimulator(options, digits)
    made = [simulator.make_frame("cam1", seq, seq / options.rate_hz) for seq in range(frames)]
    return [(replace(frame, camera=camera), truth) for frame, truth in made]


@dataclass(frozen=True)
class Row:
    """The figures of one (regions, pixel_delta, threshold) run."""

    regions: int
    pixel_delta: int
    threshold: float
    frames: int
    skipped: float
    forwarded: float
    device_accuracy: float
    hybrid_accuracy: float
    missed_changes: int
    process_us_per_frame: float


def run_once(
    cameras: Sequence[Sequence[Labelled]],
    edge_labels: dict[str, tuple[int, ...]],
    device: OnnxModel,
    skip: SkipConfig,
    regions: int,
) -> Row:
    """Run one DeviceTier over every camera's frames (one frame per camera per call)."""
    tier = DeviceTier(device, DeviceConfig(threshold=DEVICE_THRESHOLD), skip)
    truth = {f.frame_id: t for cam in cameras for f, t in cam}
    decisions: list[DeviceDecision] = []
    started = time.perf_counter()
    for tick in zip(*cameras, strict=True):
        decisions += tier.process([frame for frame, _ in tick])
    elapsed = time.perf_counter() - started
    final: dict[str, tuple[int, ...]] = {}
    device_right = hybrid_right = regions_seen = missed = 0
    for d in decisions:  # in capture order per camera, so a reused frame is already final
        if d.action is DeviceAction.SKIP:
            assert d.reused_from is not None
            final[d.frame_id] = final[d.reused_from]
            missed += truth[d.frame_id] != truth[d.reused_from]
        elif d.action is DeviceAction.FORWARD:
            final[d.frame_id] = edge_labels[d.frame_id]
        else:
            final[d.frame_id] = d.labels
        want = truth[d.frame_id]
        regions_seen += len(want)
        device_right += sum(a == b for a, b in zip(d.labels, want, strict=True))
        hybrid_right += sum(a == b for a, b in zip(final[d.frame_id], want, strict=True))
    n = len(decisions)
    return Row(
        regions=regions,
        pixel_delta=skip.pixel_delta,
        threshold=skip.threshold,
        frames=n,
        skipped=sum(d.action is DeviceAction.SKIP for d in decisions) / n,
        forwarded=sum(d.action is DeviceAction.FORWARD for d in decisions) / n,
        device_accuracy=device_right / regions_seen,
        hybrid_accuracy=hybrid_right / regions_seen,
        missed_changes=missed,
        process_us_per_frame=1e6 * elapsed / n,
    )


def _plot(rows: Sequence[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    colours = {1: "tab:blue", 2: "tab:red"}  # by regions; line style by the other setting
    for regions in REGIONS:
        name = f"{regions} region{'s' if regions > 1 else ''}"
        for delta in PIXEL_DELTAS:
            line = [r for r in rows if r.regions == regions and r.pixel_delta == delta]
            xs = [r.threshold for r in line]
            left.plot(
                xs,
                [100 * r.skipped for r in line],
                "-" if delta else ":",
                marker="o" if delta else "x",
                color=colours[regions],
                label=f"{name}, pixel_delta {delta}",
            )
            if delta:
                for field, style, who in (
                    ("device_accuracy", ":", "device alone"),
                    ("hybrid_accuracy", "-", "device+edge"),
                ):
                    ys = [100 * getattr(r, field) for r in line]
                    right.plot(
                        xs, ys, style, marker="o", color=colours[regions], label=f"{who}, {name}"
                    )
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=0.001)
        ax.set_xlabel("skip threshold (mean abs. difference, 0..1; 0 = off)")
        ax.grid(True, alpha=0.3)
    left.set_ylabel("frames skipped (%)")
    left.set_title("share of frames that reuse an answer")
    right.set_ylabel("accuracy vs truth (%)")
    right.set_title("accuracy, pixel_delta 8")
    left.legend(fontsize=8)
    right.legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.skipping", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--frames", type=int, default=800, help="frames per camera")
    parser.add_argument("--mean-run", type=float, default=20.0)
    parser.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, grey levels")
    parser.add_argument("--quick", action="store_true", help="2 cameras x 100 frames")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)
    if args.quick:
        args.cameras, args.frames = 2, 100
    started = time.perf_counter()
    split = load_split()
    device, edge = OnnxModel.load("device"), OnnxModel.load("edge")
    rows: list[Row] = []
    for regions in REGIONS:
        cameras = [
            list(
                static_scene_frames(
                    f"cam{c + 1}",
                    args.frames,
                    regions=regions,
                    mean_run=args.mean_run,
                    noise_sigma=args.noise,
                    seed=c,
                    digits=split,
                )
            )
            for c in range(args.cameras)
        ]
        frames = [f for cam in cameras for f, _ in cam]
        proba = edge.predict_proba(pixels_to_features([c for f in frames for c in f.crops()]))
        labels = proba.argmax(axis=1).reshape(len(frames), regions)
        edge_labels = {
            f.frame_id: tuple(int(v) for v in row) for f, row in zip(frames, labels, strict=True)
        }
        for delta in PIXEL_DELTAS:
            for threshold in THRESHOLDS:
                skip = SkipConfig(threshold=threshold, pixel_delta=delta, max_reuse=MAX_REUSE)
                rows.append(run_once(cameras, edge_labels, device, skip, regions))
    setup = (
        f"{args.cameras} cameras x {args.frames} frames, digit runs geometric with mean "
        f"{args.mean_run:g} frames, sensor noise sigma {args.noise:g}; device {device.name} "
        f"(threshold {DEVICE_THRESHOLD}), edge {edge.name}; max_reuse {MAX_REUSE}"
    )
    print(f"machine   {machine_line()}")
    print(f"setup     {setup}")
    print()
    print("regions  delta  threshold  skipped  forwarded  device acc.  device+edge acc.  missed")
    for r in rows:
        print(
            f"{r.regions:>7}  {r.pixel_delta:>5}  {r.threshold:>9g}  {100 * r.skipped:>6.1f}%  "
            f"{100 * r.forwarded:>8.1f}%  {100 * r.device_accuracy:>10.2f}%  "
            f"{100 * r.hybrid_accuracy:>15.2f}%  {r.missed_changes:>6}"
        )
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.1f} s in all")
    document: dict[str, Any] = {
        "benchmark": "skipping",
        "machine": machine_line(),
        "command": "python -m bench.skipping" + (" --quick" if args.quick else ""),
        "setup": setup,
        "options": {
            "cameras": args.cameras,
            "frames_per_camera": args.frames,
            "mean_run": args.mean_run,
            "noise_sigma": args.noise,
            "frame_size": [WIDTH, HEIGHT],
            "device_threshold": DEVICE_THRESHOLD,
            "max_reuse": MAX_REUSE,
        },
        "rows": [asdict(r) for r in rows],
        "seconds": round(elapsed, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    _plot(rows, args.plot, setup)
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
