"""Reading shelf price labels: hybrid accuracy against the share of lines escalated.

Run ``python -m bench.ocr_accuracy`` (``--seconds``, ``--fps``, ``--seed``,
``--sizes 1280x720,1920x1080``; ``--json PATH`` and ``--plot PATH`` change where the
figures go, by default ``bench/results/ocr_accuracy.json`` and
``docs/plots/ocr_accuracy.png``). Offline, no NATS; a few minutes on 2 cores.

For each size a shelf video is generated (``pipeline/camera/shelf``, degraded: blur,
glare, low light, arms, JPEG) and decoded back from its H.264. On every frame PP-OCR's
text detector runs once and both recognisers read every line it found
(``pipeline/camera/shelf/tiers.py``); the lines are matched to the ground truth and
scored by ``pipeline/camera/shelf/scoring.py`` (occluded lines not counted, text
compared without spaces). From that one pass:

* **tiers**: edge-only, hybrid at the edge recogniser's declared band, cloud-only;
* **(a) band sweep**: the band's upper end from its lower end to 1 and past it
  (every line at or above the lower end): escalated share, price exact-match, CER;
* **(b) signals**: the lines to escalate chosen by the lowest character probability
  (``min_char``, declared), the mean (``mean_char``), or ``min_char+price`` (a reading
  that looks like a price but does not match ``PRICE_PATTERN`` first); the lines under
  the band's lower end by the signal are never escalated. Price exact-match and CER at
  10 % and 20 % of lines escalated;
* **(c)** for each signal, the smallest escalated share (in steps of 0.5 % of lines)
  at which hybrid price exact-match is within 1 point of cloud-only.

Escalated shares are of all detected lines, barcodes and packaging text included. A
benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.common import begin_run, echo, save_figure, write_figures
from pipeline.camera.shelf.cli import parse_size
from pipeline.camera.shelf.scoring import DEFAULT_SCOPE, LineScope, Tally, load_truth
from pipeline.camera.shelf.tiers import (
    SIGNALS,
    FramePass,
    Readers,
    Selector,
    budget,
    decode_frames,
    escalated_share,
    in_band,
    read_frame,
    signal,
    tier_tally,
)
from pipeline.camera.shelf.writer import write_shelf_video

__all__ = ["main", "measure"]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_JSON: Final = ROOT / "bench" / "results" / "ocr_accuracy.json"
DEFAULT_PLOT: Final = ROOT / "docs" / "plots" / "ocr_accuracy.png"
LEGIBLE: Final = LineScope(min_height=8.0)  # ink 8 px high or more
PRICES: Final = LineScope(kinds=frozenset({"price"}))
HIGHS: Final = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0, math.inf)
AT_SHARES: Final = (0.10, 0.20)
STEP: Final = 0.005
WITHIN: Final = 0.01


def _figures(tally: Tally) -> dict[str, Any]:
    return {
        "price_exact": tally.price_exact,
        "prices": tally.prices,
        "prices_exact": tally.prices_exact,
        "cer_all": tally.cer_all,
        "cer_matched": tally.cer_matched,
        "lines": tally.lines,
        "matched": tally.matched,
        "extra": tally.extra,
    }


def _point(passes: Sequence[FramePass], escalate: Selector) -> dict[str, Any]:
    """The escalated share and the figures of reading ``passes`` with ``escalate``."""
    point = {"escalated": escalated_share(passes, escalate)}
    point |= _figures(tier_tally(passes, escalate, DEFAULT_SCOPE))
    point["cer_legible"] = tier_tally(passes, escalate, LEGIBLE).cer_all
    point["prices_matched"] = tier_tally(passes, escalate, PRICES).matched
    return point


def _curve(passes: Sequence[FramePass], name: str, low: float) -> list[dict[str, Any]]:
    """Hybrid figures for ``signal(name)`` at 0, 0.5, 1, ... % of lines, until every
    line at or above ``low`` is escalated."""
    rank = signal(name, low)
    lines = [line for one in passes for line in one.lines]
    eligible = sum(rank(line) >= low for line in lines)
    points, share = [], 0.0
    while True:
        points.append({"share": share} | _point(passes, budget(passes, rank, share, low)))
        if round(share * len(lines)) >= eligible:
            return points
        share = round(share + STEP, 6)


def measure(
    readers: Readers, folder: Path, size: tuple[int, int], seconds: float, fps: int, seed: int
) -> dict[str, Any]:
    """Generate, read and score one video; every figure the report shows for it."""
    width, height = size
    started = time.perf_counter()
    video = write_shelf_video(
        folder / f"shelf_{width}x{height}.mp4",
        seconds=seconds,
        width=width,
        height=height,
        fps=fps,
        seed=seed,
    )
    generated = time.perf_counter() - started
    truth = load_truth(video.truth)
    passes = []
    for n, image in decode_frames(video.video):
        passes.append(read_frame(readers, n, image, truth[n]))
        echo(f"  {width}x{height} frame {n}: {len(passes[-1].lines)} lines")
    low, high = readers.band
    tiers = {
        "edge-only": _point(passes, in_band(math.inf, math.inf)),
        "hybrid": _point(passes, in_band(low, high)),
        "cloud-only": _point(passes, in_band(-math.inf, math.inf)),
    }
    sweep = [{"high": h} | _point(passes, in_band(low, h)) for h in HIGHS]
    curves = {name: _curve(passes, name, low) for name in SIGNALS}
    at = {
        name: [
            {"share": s} | _point(passes, budget(passes, signal(name, low), s, low))
            for s in AT_SHARES
        ]
        for name in SIGNALS
    }
    target = tiers["cloud-only"]["price_exact"] - WITHIN
    within = {
        name: next((p for p in curve if p["price_exact"] >= target), None)
        for name, curve in curves.items()
    }
    seconds_by_model = {key: sum(one.seconds[key] for one in passes) for key in passes[0].seconds}
    return {
        "size": f"{width}x{height}",
        "frames": len(passes),
        "detected_lines": sum(len(one.lines) for one in passes),
        "truth_lines": sum(len(one.truth) for one in passes),
        "generate_s": generated,
        "model_s": seconds_by_model,
        "band": [low, high],
        "tiers": tiers,
        "sweep": sweep,
        "signals_at": at,
        "within_1pt_of_cloud": within,
        "curves": curves,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def report(run: dict[str, Any]) -> None:
    """Print one size's tables (Markdown)."""
    echo(f"\n### {run['size']}: {run['frames']} frames, {run['detected_lines']} lines detected")
    echo(
        "\n| tier | escalated | price exact | prices detected | CER all | CER matched "
        "| CER legible |"
    )
    echo("|---|---|---|---|---|---|---|")
    for tier, p in run["tiers"].items():
        echo(
            f"| {tier} | {_pct(p['escalated'])} | {_pct(p['price_exact'])} "
            f"({p['prices_exact']}/{p['prices']}) | {p['prices_matched']} | "
            f"{_pct(p['cer_all'])} | {_pct(p['cer_matched'])} | {_pct(p['cer_legible'])} |"
        )
    echo("\n| band high | escalated | price exact | CER all | CER legible |")
    echo("|---|---|---|---|---|")
    for p in run["sweep"]:
        high = "all >= low" if math.isinf(p["high"]) else f"{p['high']:.2f}"
        echo(
            f"| {high} | {_pct(p['escalated'])} | {_pct(p['price_exact'])} | "
            f"{_pct(p['cer_all'])} | {_pct(p['cer_legible'])} |"
        )
    echo(
        "\n| signal | price exact at 10% | CER at 10% | price exact at 20% | CER at 20% "
        "| share for hybrid within 1 pt of cloud |"
    )
    echo("|---|---|---|---|---|---|")
    for name in SIGNALS:
        ten, twenty = run["signals_at"][name]
        hit = run["within_1pt_of_cloud"][name]
        reach = "not reached" if hit is None else _pct(hit["escalated"])
        echo(
            f"| {name} | {_pct(ten['price_exact'])} | {_pct(ten['cer_all'])} | "
            f"{_pct(twenty['price_exact'])} | {_pct(twenty['cer_all'])} | {reach} |"
        )


def plot(runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Price exact-match and CER against escalated share, per signal and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = ("-", "--", ":")
    for run, style in zip(runs, styles, strict=False):
        for name, colour in zip(SIGNALS, ("C0", "C1", "C2"), strict=True):
            curve = run["curves"][name]
            xs = [100 * p["escalated"] for p in curve]
            left.plot(
                xs,
                [100 * p["price_exact"] for p in curve],
                style,
                color=colour,
                label=f"{name}, {run['size']}",
            )
            right.plot(xs, [100 * p["cer_legible"] for p in curve], style, color=colour)
        for axis, key in ((left, "price_exact"), (right, "cer_legible")):
            cloud = 100 * run["tiers"]["cloud-only"][key]
            axis.axhline(cloud, linestyle=style, color="grey", linewidth=0.8)
            band = run["tiers"]["hybrid"]
            axis.plot(100 * band["escalated"], 100 * band[key], "k" + "o^s"[runs.index(run)])
    left.set(
        xlabel="lines escalated (%)",
        ylabel="price exact-match (%)",
        title="price exact-match (grey: cloud-only; marker: declared band)",
    )
    right.set(
        xlabel="lines escalated (%)",
        ylabel="CER (%)",
        title="CER of lines with ink 8 px high or more",
    )
    left.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocr_accuracy", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated")
    parser.add_argument("--manifest", type=Path, default=None, help="default: models/ppocr")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    machine, command = begin_run(
        "shelf labels: accuracy against escalation share", "bench.ocr_accuracy", argv
    )
    readers = Readers.load(args.manifest)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocr_accuracy") as tmp:
        runs = [
            measure(readers, Path(tmp), size, args.seconds, args.fps, args.seed) for size in sizes
        ]
    for run in runs:
        report(run)
    took = time.perf_counter() - started
    echo(f"\ntotal {took:.0f} s")
    settings = {"seconds": args.seconds, "fps": args.fps, "seed": args.seed}
    write_figures(
        args.json,
        {
            "command": command,
            "machine": machine,
            "settings": settings,
            "total_s": took,
            "runs": runs,
        },
    )
    plot(runs, args.plot)
    echo(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
