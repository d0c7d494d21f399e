"""``models/manifest.json``: where it is, reading it, and typed access to its entries.

Every model file is loaded through its entry in the manifest (``models.<role>``);
``python -m models.build`` writes both. ``manifest_entry`` finds a role's entry, and
``EntryReader`` reads its dotted keys with errors that name the key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TypedDict

import models
from schemas.errors import ModelError

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_SCHEMA",
    "EntryReader",
    "FileFields",
    "display_path",
    "manifest_entry",
]

# Resolved through the package, not the working directory, so it finds the files both
# in a source checkout installed with ``pip install -e .`` and in a regular install.
DEFAULT_MANIFEST: Final[Path] = Path(models.__file__).resolve().parent / "manifest.json"
MANIFEST_SCHEMA: Final = 1


class FileFields(TypedDict):
    """What every entry says of its file: the model's name and version, the file (relative
    to the manifest's folder) and its SHA-256."""

    name: str
    version: str
    file: str
    sha256: str


class EntryReader:
    """Typed access to dotted keys of a manifest entry, with errors that name the key."""

    def __init__(self, entry: Mapping[str, Any], where: str) -> None:
        self._entry = entry
        self._where = where

    def fail(self, key: str, problem: str) -> NoReturn:
        """Raise ModelError about ``key``."""
        raise ModelError(f"{self._where}: key {key!r} {problem}")

    def get(self, key: str) -> Any:
        """The value at a dotted key; ModelError if any part of the path is missing."""
        node: Any = self._entry
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                self.fail(key, "is missing")
            node = node[part]
        return node

    def text(self, key: str) -> str:
        """A non-empty string."""
        value = self.get(key)
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return str(value)

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        """A string from ``allowed``."""
        value = self.text(key)
        if value not in allowed:
            self.fail(key, f"is {value!r}, supported: {list(allowed)}")
        return value

    def sha256(self, key: str) -> str:
        """A lowercase hex SHA-256 digest."""
        value = self.text(key).lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            self.fail(key, f"is not a hex SHA-256 digest: {value!r}")
        return value

    def relative_file(self, key: str) -> str:
        """A file name relative to the manifest's folder (never absolute)."""
        value = self.text(key)
        if Path(value).is_absolute():
            self.fail(key, f"must be relative to the manifest's folder, got {value!r}")
        return value

    def file_fields(self) -> FileFields:
        """``name``, ``version``, ``file`` and ``sha256``, each checked."""
        return FileFields(
            name=self.text("name"),
            version=self.text("version"),
            file=self.relative_file("file"),
            sha256=self.sha256("sha256"),
        )

    def integer(self, key: str) -> int:
        """An int (JSON booleans are not integers here)."""
        value = self.get(key)
        if not _is_int(value):
            self.fail(key, f"must be an integer, got {value!r}")
        return int(value)

    def int_list(self, key: str) -> list[int]:
        """A non-empty list of ints."""
        value = self.get(key)
        ok = isinstance(value, list) and value and all(_is_int(v) for v in value)
        if not ok:
            self.fail(key, f"must be a non-empty list of integers, got {value!r}")
        return [int(v) for v in value]

    def number(
        self, key: str, *, low: float, high: float = math.inf, low_open: bool = False
    ) -> float:
        """A finite number within [low, high] (or (low, high] with ``low_open``)."""
        value = self.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number, got {value!r}")
        number = float(value)
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or too_low or number > high:
            bracket = "(" if low_open else "["
            self.fail(key, f"is {number}, must be in {bracket}{low}, {high}]")
        return number

    def width(self, key: str, what: str) -> int:
        """The n of a shape [null, n]: any batch size, a fixed positive number of ``what``."""
        value = self.get(key)
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and value[0] is None
            and _is_int(value[1])
            and value[1] > 0
        )
        if not ok:
            self.fail(key, f"must be [null, <{what}>], got {value!r}")
        return int(value[1])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def display_path(path: Path) -> str:
    """A path as short as is unambiguous: relative to the working directory if inside it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _read_manifest(manifest: Path) -> Mapping[str, Any]:
    """The parsed manifest, checked for its schema version and a ``models`` mapping."""
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
            f"{where}: key 'schema' is {document.get('schema')!r}, this code reads "
            f"{MANIFEST_SCHEMA}"
        )
    roles = document.get("models")
    if not isinstance(roles, Mapping):
        raise ModelError(f"{where}: key 'models' is missing or not an object")
    return roles


def manifest_entry(role: str, manifest: Path) -> tuple[Mapping[str, Any], str]:
    """The ``models.<role>`` entry of ``manifest``, and where it is (for its errors).

    Raises :class:`ModelError` for an unreadable manifest, or an unknown role (listing
    the roles present).
    """
    roles = _read_manifest(manifest)
    if role not in roles:
        raise ModelError(
            f"{display_path(manifest)}: no model for role {role!r}; roles present: {sorted(roles)}"
        )
    entry = roles[role]
    where = f"{display_path(manifest)}: models.{role}"
    if not isinstance(entry, Mapping):
        raise ModelError(f"{where}: must be a JSON object")
    return entry, where
