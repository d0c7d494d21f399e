"""Compatibility names for ``pipeline/cli.py``: ``hybridfleet tune`` now lives in
``pipeline/planning/`` (curves, retrain, sizes, tomledit, tune).

Only ``pipeline/cli.py`` imports this module; remove it once cli.py imports from
``pipeline.planning`` directly.
"""

from __future__ import annotations

from pipeline.planning.curves import (
    OperatingPoint,
    Target,
    TargetKind,
    TuningError,
    area_under_curve,
    best_signal,
    choose,
    sweep,
    with_mix,
)
from pipeline.planning.retrain import TuningData, cross_validated_data
from pipeline.planning.sizes import MessageSizes, measure_message_sizes
from pipeline.planning.tomledit import dump_toml, update_config
from pipeline.planning.tune import TuneResult, format_result, tune

__all__ = [
    "MessageSizes",
    "OperatingPoint",
    "Target",
    "TargetKind",
    "TuneResult",
    "TuningData",
    "TuningError",
    "area_under_curve",
    "best_signal",
    "choose",
    "cross_validated_data",
    "dump_toml",
    "format_result",
    "measure_message_sizes",
    "sweep",
    "tune",
    "update_config",
    "with_mix",
]
