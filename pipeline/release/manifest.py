"""``bundle.json``, the manifest of a model bundle: its layout, and reading and writing it.

A bundle is a folder (docs/model-bundles.md): ``bundle.json`` describes the model and
lists every file with its SHA-256, ``bundle.sig`` is the signature over the exact bytes
of ``bundle.json`` (pipeline/release/signing.py), and the ONNX file (with a labels file,
if the model declares one) sits next to them. ``bundle.json`` (schema 2) carries the
model's declaration exactly as a ``models/manifest.json`` entry has it (``model``,
read by the same code), plus what the bundle adds: its tier, its files, the default
threshold and how the model was made. Reading checks the shape only; whether to trust
a manifest is the signature's job (:func:`pipeline.release.bundle.load_bundle`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pipeline.declared import build, checked, dump, ranged
from pipeline.inference.declaration import ModelDeclaration
from schemas.errors import BundleError
from schemas.heartbeat import Tier

__all__ = [
    "BUNDLE_SCHEMA",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "TIERS",
    "BundleManifest",
]

BUNDLE_SCHEMA: Final = 2
MANIFEST_FILE: Final = "bundle.json"
SIGNATURE_FILE: Final = "bundle.sig"
TIERS: Final = tuple(tier.value for tier in Tier)

# Versions and file names become object names (<tier>/<version>/<file>) and local
# folder names: no '/', no leading '.', so a manifest cannot point outside its folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _files(files: Mapping[str, str]) -> str | None:
    if not files:
        return "must list the bundle's files {file name: sha256}"
    for name, digest in files.items():
        if not _NAME.fullmatch(name) or name in (MANIFEST_FILE, SIGNATURE_FILE):
            return f"lists {name!r}, not a plain file name of the bundle folder"
        if not _SHA256.fullmatch(digest):
            return f"has {digest!r} for {name!r}, not a lowercase hex SHA-256"
    return None


def _heldout(heldout: Mapping[str, float]) -> str | None:
    accuracy = heldout.get("accuracy")
    ok = accuracy is not None and 0.0 <= accuracy <= 1.0
    return None if ok else f"must have 'accuracy' in [0, 1], got {accuracy!r}"


def _tier(value: str) -> str | None:
    return None if value in TIERS else f"must be one of {', '.join(TIERS)}, got {value!r}"


def _text(value: str) -> str | None:
    return None if value else "must be a non-empty string"


def _timestamp(value: str) -> str | None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return f"is not an ISO 8601 time: {value!r}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleManifest:
    """The contents of ``bundle.json``: the model's declaration and what the bundle holds.

    ``model.file`` (also ``model_file``) is the ONNX file among ``files``, which maps
    every file of the bundle except ``bundle.json`` and ``bundle.sig`` to its hex
    SHA-256; ``model.version`` is the bundle's version. ``heldout`` holds the build's
    held-out measurements and always has ``accuracy``. ``trained_by`` is the training
    script's path and ``commit`` the git commit it was run from (``"unknown"``
    allowed). ``created_at`` is ISO 8601 UTC.
    """

    tier: str = checked(_tier)
    files: Mapping[str, str] = checked(_files)
    default_threshold: float = ranged(lo=0.0, hi=1.0)
    heldout: Mapping[str, float] = checked(_heldout)
    trained_by: str = checked(_text)
    commit: str = checked(_text)
    created_at: str = checked(_timestamp)
    model: ModelDeclaration

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.version):
            raise BundleError(
                f"model.version is {self.version!r}; use letters, digits, '.', '_', '-' "
                "(no leading '.')"
            )
        if self.files.get(self.model.file) != self.model.sha256:
            raise BundleError(
                f"model.file {self.model.file!r} with model.sha256 "
                f"{self.model.sha256[:12]}... is not listed in 'files'"
            )

    @property
    def name(self) -> str:
        """The model's name, e.g. ``digits-mlp32``."""
        return self.model.name

    @property
    def version(self) -> str:
        """The bundle's version: what the desired state names and heartbeats report."""
        return self.model.version

    @property
    def model_file(self) -> str:
        """The bundle's ONNX file."""
        return self.model.file

    def to_json(self) -> bytes:
        """The bytes of ``bundle.json`` (sorted keys, indented, UTF-8, final newline)."""
        document: dict[str, Any] = {"schema": BUNDLE_SCHEMA, **dump(self)}
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, where: str = MANIFEST_FILE) -> BundleManifest:
        """Parse and check ``bundle.json``; :class:`BundleError` names the bad key.

        This checks the manifest's shape only; whether to trust it is the signature's
        job (:func:`pipeline.release.bundle.load_bundle`).
        """
        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{where}: not valid UTF-8 JSON: {exc}") from None
        if not isinstance(document, dict):
            raise BundleError(f"{where}: must be a JSON object")
        schema = document.pop("schema", None)
        if schema != BUNDLE_SCHEMA:
            raise BundleError(f"{where}: schema is {schema!r}, this code reads {BUNDLE_SCHEMA}")
        return build(cls, document, where, error=BundleError)
