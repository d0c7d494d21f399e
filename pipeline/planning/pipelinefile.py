"""Reading a pipeline file: a TOML file in, a validated :class:`PipelineSpec` out.

:func:`load_pipeline` reads the file, builds the declaration from it
(:func:`~pipeline.planning.pipelines.parse_pipeline`) and validates it
(pipeline/planning/validation.py). Errors name the file, key, stage or boundary at fault.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import read_toml
from pipeline.planning.pipelines import PipelineSpec, parse_pipeline
from pipeline.planning.validation import validate

__all__ = ["load_pipeline", "manifest_of"]


def manifest_of(spec: PipelineSpec, path: Path | str) -> Path | None:
    """The model manifest ``spec`` (read from ``path``) names, or None for the shipped one."""
    return Path(path).parent / spec.manifest if spec.manifest else None


def load_pipeline(path: Path | str, manifest: Path | None = None) -> PipelineSpec:
    """Read a pipeline TOML file and :func:`validate` it against ``manifest`` (default:
    the one the file names, else the shipped one).

    Raises :class:`ConfigError` naming the key, stage or boundary at fault.
    """
    spec = parse_pipeline(read_toml(path, "pipeline file"), where=str(path))
    validate(spec, manifest or manifest_of(spec, path))
    return spec
