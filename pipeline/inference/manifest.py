"""``models/manifest.json``: where it is, and reading a role's declaration from it.

The manifest (schema 2) maps roles to model declarations: ``{"schema": 2, "models":
{"<role>": <ModelDeclaration>, ...}}`` (docs/model-manifest.md). Every model file is
loaded through its role's entry; ``python -m models.build`` writes the digits models'
files and entries. :func:`load_declaration` reads one role's entry with
:func:`pipeline.declared.build`, so a bad key is named with its full path, e.g.
``models/manifest.json: models.edge.input.layuot: unknown key; did you mean 'layout'?``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import models
from pipeline.declared import build
from pipeline.inference.declaration import ModelDeclaration
from schemas.errors import ModelError

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_SCHEMA",
    "display_path",
    "load_declaration",
    "read_roles",
]

# Resolved through the package, not the working directory, so it finds the files both
# in a source checkout installed with ``pip install -e .`` and in a regular install.
DEFAULT_MANIFEST: Final[Path] = Path(models.__file__).resolve().parent / "manifest.json"
MANIFEST_SCHEMA: Final = 2


def display_path(path: Path) -> str:
    """A path as short as is unambiguous: relative to the working directory if inside it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def read_roles(manifest: Path) -> Mapping[str, Any]:
    """The manifest's ``models`` table (role -> raw entry), checked for its schema."""
    where = display_path(manifest)
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{where}: manifest not found; build it with `python -m models.build`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: cannot read manifest: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ModelError(f"{where}: manifest must be a JSON object")
    if document.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(
            f"{where}: schema is {document.get('schema')!r}, this code reads {MANIFEST_SCHEMA} "
            "(docs/model-manifest.md)"
        )
    roles = document.get("models")
    if not isinstance(roles, Mapping):
        raise ModelError(f"{where}: models is missing or not an object")
    return roles


def load_declaration(role: str, manifest: Path | None = None) -> tuple[ModelDeclaration, str]:
    """The declaration of ``role`` in ``manifest`` (default :data:`DEFAULT_MANIFEST`), and
    where it is (``"<manifest>: models.<role>"``, to start messages about it).

    Raises :class:`ModelError` for an unreadable manifest, an unknown role (listing the
    roles present) or a bad entry (naming the key and what would be right).
    """
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    roles = read_roles(path)
    if role not in roles:
        raise ModelError(
            f"{display_path(path)}: no model for role {role!r}; roles present: {sorted(roles)}"
        )
    key = f"models.{role}"
    declaration = build(ModelDeclaration, roles[role], display_path(path), path=key)
    return declaration, f"{display_path(path)}: {key}"
