"""The figures a placement is scored with, each with where it comes from.

Every number the planner uses is a :class:`Figure` that says its source: measured (a
file under bench/results, the model manifest) or assumed. :meth:`Figures.assumed`
states the assumptions; :meth:`Figures.load` replaces them with the measurements a
checkout has, and is the only part of planning that reads files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipeline.planning.costs import (
    HOURS_PER_MONTH,
    MEASURED_CLOUD_THROUGHPUT,
    MEASURED_ON,
    CostModel,
)
from pipeline.planning.pipelines import Data, Tier
from pipeline.planning.roles import manifest_sizes
from schemas.checks import is_number

__all__ = ["DEVICE_COSTS", "Figure", "Figures", "format_number"]

EDGE_THROUGHPUT: Final = "bench/results/edge_throughput.json"
LATENCY: Final = "bench/results/latency.json"
BYTES: Final = "bench/results/bytes.json"
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
        return f"{format_number(self.value)} {self.unit}"

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
                    _dig(latency, "results", routing, "latency_ms", key),
                    "ms",
                    LATENCY,
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


def format_number(value: float) -> str:
    """A figure as people read it: ``1,300``, ``5.88``, ``8,333.3``."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
