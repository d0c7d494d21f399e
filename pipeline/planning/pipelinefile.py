"""Reading a pipeline file: a TOML file in, a validated :class:`PipelineSpec` out.

:func:`load_pipeline` reads the file, builds the declaration from it
(:func:`~pipeline.planning.pipelines.parse_pipeline`) and validates it
(pipeline/planning/validation.py). Errors name the file, key, stage or boundary at fault.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pipeline.planning.pipelines import PipelineSpec, parse_pipeline
from pipeline.planning.validation import validate
from schemas.errors import ConfigError

__all__ = ["load_pipeline"]


def load_pipeline(path: Path | str, manifest: Path | None = None) -> PipelineSpec:
    """Read a pipeline TOML file and :func:`validate` it against ``manifest``.

    Raises :class:`ConfigError` naming the key, stage or boundary at fault.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"pipeline file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pipeline file {path} is not valid TOML: {exc}") from None
    spec = parse_pipeline(data, where=str(path))
    validate(spec, manifest)
    return spec
