"""The report of ``bench.roofline``: the summary table, the JSON figures, the plot.

* ``table``: one markdown row per workload (limits, worker, share, accounting,
  latency);
* ``figures``: the JSON document (``bench/results/roofline.json`` by default),
  written with ``bench.common.write_figures``;
* ``plot``: the limits and the worker per workload, log scale (``docs/plots/roofline.png``
  by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import RunTime, save_figure
from bench.roofline_workloads import ROOT, Options

__all__ = ["figures", "plot", "rate_text", "table"]


def _n(value: float, digits: int = 0) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def rate_text(value: float) -> str:
    """A rate with the digits it needs: 2.07, 24.3, 1,075."""
    if value is None or not math.isfinite(value):
        return "-"
    return _n(value, 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0)


def _latency(point: dict[str, Any]) -> str:
    """p50 / p99 of a paced run, and what it lost if anything."""
    lat = point["latency_ms"]
    text = f"{_n(lat['p50'], 1)} / {_n(lat['p99'], 1)}"
    missing = point["sent"] - point["answered"]
    return f"{text} ({missing} of {point['sent']} unanswered)" if missing else text


def _ort(limit: dict[str, Any]) -> str:
    """The ORT limit and where it was best: (batch, threads) or (batch, n callers x 1
    thread); a chain's each model's best, the frames/s it makes together."""
    if "models" in limit:
        return (
            f"{_n(limit['images_per_s'], 1)} ("
            + "; ".join(f"{role} {_ort(m)}" for role, m in limit["models"].items())
            + ")"
        )
    how = (
        f"{limit['best_callers']}x1 thr"
        if limit.get("best_callers", 1) > 1
        else f"{limit['best_threads']} thr"
    )
    return f"{rate_text(limit['images_per_s'])} (b{limit['best_batch']}, {how})"


def table(reports: Sequence[dict[str, Any]]) -> str:
    """The summary: one row per workload (markdown)."""
    head = (
        "| workload | B/frame | NATS msgs/s | decode img/s | ORT img/s (batch, threads) | "
        "edge path 1 thr | worker frames/s | share of lowest | sent = answered + shed + "
        "dropped + lost | p50 / p99 ms at 50% | p50 / p99 ms at 90% |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        lim = r["limits"]
        sat = r["worker"]["saturated"]
        o = lim["ort"]
        procs = r.get("worker_processes", 1)
        title = r["workload"]["title"] + (f" [{procs} worker processes]" if procs > 1 else "")
        decode = lim["decode"]["images_per_s"] if "decode" in lim else math.nan
        lines.append(
            f"| ({r['workload']['key']}) {title} | {_n(r['frame_bytes'])} | "
            f"{_n(lim['nats']['msgs_per_s'])} | {_n(decode)} | "
            f"{_ort(o)} | "
            f"{rate_text(r['edge_path']['frames_per_s'])} | "
            f"{rate_text(r['worker_frames_per_s'])} | "
            f"{r['share_of_lowest_limit']:.0%} of {r['lowest_limit']['name']} | "
            f"{sat['sent']} = {sat['answered']} + {sat['shed']} + {sat['dropped_intake']} + "
            f"{sat['lost'] + sat['dead_letters']} | "
            f"{_latency(r['worker']['paced']['50%'])} | {_latency(r['worker']['paced']['90%'])} |"
        )
    return "\n".join(lines)


def plot(reports: Sequence[dict[str, Any]], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = (
        ("NATS bare subscriber", "#4c72b0"),
        ("JPEG decode, all cores", "#dd8452"),
        ("ONNX Runtime, best", "#55a868"),
        ("edge path, 1 thread", "#bbbbbb"),
        ("edge worker", "#c44e52"),
    )
    fig, ax = plt.subplots(figsize=(11, 5.2))
    width = 0.16
    for i, r in enumerate(reports):
        lim = r["limits"]
        values = (
            lim["nats"]["msgs_per_s"],
            lim["decode"]["images_per_s"] if "decode" in lim else math.nan,
            lim["ort"]["images_per_s"],
            r["edge_path"]["frames_per_s"],
            r["worker_frames_per_s"],
        )
        for j, ((_, colour), value) in enumerate(zip(bars, values, strict=True)):
            if not math.isfinite(value) or value <= 0:
                continue
            x = i + (j - 2) * width
            ax.bar(x, value, width, color=colour)
        ax.annotate(
            f"{r['share_of_lowest_limit']:.0%}",
            (i + 2 * width, r["worker_frames_per_s"]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            fontweight="bold",
        )
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(color=colour, label=label) for label, colour in bars],
        fontsize=8,
        loc="upper right",
    )
    ax.set_yscale("log")
    ax.set_xticks(range(len(reports)))
    ax.set_xticklabels(
        [
            f"({r['workload']['key']}) {r['workload']['title']}".replace(", ", "\n", 1)
            for r in reports
        ],
        fontsize=8,
    )
    ax.set_ylabel("frames (messages, images) per second, log scale")
    ax.set_title(
        "The edge worker against its limits (label: worker / lowest limit)\n" + subtitle,
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    save_figure(fig, path)


def figures(
    command: str,
    machine: dict[str, Any],
    options: Options,
    times: RunTime,
    reports: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document of a run."""
    return {
        "benchmark": "roofline",
        "command": command,
        "machine": machine,
        "options": {k: _shown(v) for k, v in asdict(options).items()},
        "total_seconds": times.seconds,
        "load_average_before": list(times.load_before),
        "load_average_after": list(times.load_after),
        "workloads": reports,
    }


def _shown(value: Any) -> Any:
    """A path as text, relative to the repository when inside it; anything else as is."""
    if not isinstance(value, Path):
        return value
    try:
        return str(value.resolve().relative_to(ROOT))
    except ValueError:
        return str(value)
