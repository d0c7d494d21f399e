"""``hybridfleet plan PIPELINE_FILE``: validate a pipeline file and score its placement.

Figures come from this checkout's ``bench/results`` and ``models/manifest.json``
(see :meth:`pipeline.planning.figures.Figures.load`); the cloud round-trip prior from
the settings.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import orjson

__all__ = ["REPO_ROOT", "add_plan_command"]

# The checkout this package runs from: where bench/results and models/ are.
REPO_ROOT: Final = Path(__file__).resolve().parents[2]


def add_plan_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``plan`` command to the ``hybridfleet`` sub-commands."""
    p = subparsers.add_parser(
        "plan", help="validate a pipeline file and score where each of its stages should run"
    )
    p.add_argument("pipeline_file", metavar="PIPELINE_FILE", help="pipeline TOML file")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument("--config", help="TOML settings file, for edge.cloud_round_trip_prior_ms")
    p.set_defaults(run=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    """Validate ``args.pipeline_file``, plan it, print the plan; errors propagate as ConfigError."""
    from pipeline.config import load_settings
    from pipeline.planning.figures import Figures
    from pipeline.planning.pipelinefile import load_pipeline
    from pipeline.planning.placement import plan
    from pipeline.planning.scores import render_plan

    settings = load_settings(args.config)
    spec = load_pipeline(args.pipeline_file)
    figures = Figures.load(REPO_ROOT, settings.edge.cloud_round_trip_prior_ms)
    result = plan(spec, figures)
    if args.json:
        print(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render_plan(result))
    return 0
