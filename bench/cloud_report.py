"""``bench.cloud_throughput``'s report: the GPU's name, the table, and the JSON document.

The document is written after every batch size, ``complete`` false until the run ends,
so a run cut short (a device's time limit) keeps what it measured.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from typing import Any

from bench.common import RunTime

__all__ = ["document", "gpu_name", "table"]

Rows = Mapping[int, Mapping[str, Any]]


def gpu_name() -> str | None:
    """The GPU's name, driver and memory (``nvidia-smi``), None without one."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def table(rows: Rows, points: list[dict[str, Any]]) -> list[str]:
    """One Markdown row per worker point, with the raw ORT and path figures of its size."""
    lines = [
        "| batch | in flight | raw ORT lines/s, before / after (threads) | path lines/s "
        "| worker lines/s | worker / raw | per CPU s: worker / raw | lines per fetch "
        "| model call ms | model busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        row = rows[p["batch"]]
        after = row.get("raw_after_lines_per_s", math.nan)
        raw = f"{row['raw_lines_per_s']:,.1f} / {after:,.1f} ({row['threads']})"
        head = f"| {p['batch']} | {p['in_flight']} | {raw} | {row['path_lines_per_s']:,.1f} |"
        if "error" in p:
            lines.append(f"{head} failed | | | | | |")
            continue
        lines.append(
            f"{head} {p['lines_per_s']:,.1f} | {p['ratio_to_raw']:.2f} | "
            f"{p['cpu_ratio_to_raw']:.2f} | {p['lines_per_fetched_batch']:.0f} | "
            f"{p['model_call_ms']:,.1f} | {p['model_busy']:.2f} |"
        )
    return lines


def document(
    head: Mapping[str, Any],
    rows: Rows,
    points: list[dict[str, Any]],
    runtime: RunTime | None,
) -> dict[str, Any]:
    """The run's figures after ``head`` (command, machine, model, options); without
    ``runtime``, those of a run still going."""
    out = {
        "title": "cloud worker against raw ONNX Runtime, text-rec-cloud",
        **head,
        "complete": runtime is not None,
        "raw_and_path": list(rows.values()),
        "worker": points,
        "table": table(rows, points),
    }
    if runtime is not None:
        out |= {
            "run_seconds": round(runtime.seconds, 1),
            "load_average_before": runtime.load_before,
            "load_average_after": runtime.load_after,
        }
    return out
