"""The model roles a pipeline's stages may name: those of ``models/manifest.json``.

:func:`manifest_sizes` lists every role with its file's size (``provenance.size_bytes``,
where recorded): the roles are what
:func:`pipeline.planning.validation.validate` accepts, the sizes what placement checks
against each tier's capacity.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.errors import ModelError

__all__ = ["manifest_sizes"]


def manifest_sizes(manifest: Path | None = None) -> dict[str, int | None]:
    """Every model role in the manifest and its ``provenance.size_bytes`` (None where not
    recorded)."""
    if manifest is None:
        from pipeline.inference.manifest import DEFAULT_MANIFEST

        manifest = DEFAULT_MANIFEST
    try:
        document = json.loads(Path(manifest).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{manifest}: model manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest}: cannot read the model manifest: {exc}") from exc
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{manifest}: key 'models' is missing or not an object")
    sizes: dict[str, int | None] = {}
    for role, entry in models.items():
        made = entry.get("provenance") if isinstance(entry, dict) else None
        size = made.get("size_bytes") if isinstance(made, dict) else None
        ok = isinstance(size, int) and not isinstance(size, bool) and size >= 0
        sizes[role] = size if ok else None
    return sizes
