"""``bundle.json``, the manifest of a model bundle: its layout, and reading and writing it.

A bundle is a folder (docs/model-bundles.md): ``bundle.json`` describes the model and
lists every file with its SHA-256, ``bundle.sig`` is the signature over the exact bytes
of ``bundle.json`` (pipeline/release/signing.py), and the ONNX file(s) sit next to them.
The manifest is the model's spec, as a ``models/manifest.json`` entry has it and
checked by the same code, plus what the bundle adds: its tier, its files, the default
threshold and how the model was made. Reading checks the shape only; whether to trust
a manifest is the signature's job (:func:`pipeline.release.bundle.load_bundle`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, NoReturn

from pipeline.inference.manifest import EntryReader
from pipeline.inference.model import ModelSpec
from schemas.checks import is_number
from schemas.errors import BundleError, ModelError
from schemas.heartbeat import Tier

__all__ = [
    "BUNDLE_SCHEMA",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "TIERS",
    "BundleManifest",
]

BUNDLE_SCHEMA: Final = 1
MANIFEST_FILE: Final = "bundle.json"
SIGNATURE_FILE: Final = "bundle.sig"
TIERS: Final = tuple(tier.value for tier in Tier)

# Versions and file names become object names (<tier>/<version>/<file>) and local
# folder names: no '/', no leading '.', so a manifest cannot point outside its folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class BundleManifest(ModelSpec):
    """The contents of ``bundle.json``: the model's spec and what the bundle holds.

    The spec's ``file`` (also ``model_file``) is the ONNX file among ``files``, which
    maps every file of the bundle except ``bundle.json`` and ``bundle.sig`` to its hex
    SHA-256. ``heldout`` holds the build's held-out measurements and always has
    ``accuracy``. ``trained_by`` is the training script's path and ``commit`` the git
    commit it was run from (``"unknown"`` allowed). ``created_at`` is ISO 8601 UTC.
    """

    tier: str
    files: Mapping[str, str]
    default_threshold: float
    heldout: Mapping[str, float]
    trained_by: str
    commit: str
    created_at: str

    @property
    def model_file(self) -> str:
        """The bundle's ONNX file."""
        return self.file

    def model_spec(self) -> ModelSpec:
        """The model file's spec, as :class:`~pipeline.inference.model.OnnxModel` checks it."""
        return ModelSpec(**spec_fields(self))

    def to_json(self) -> bytes:
        """The bytes of ``bundle.json`` (sorted keys, indented, UTF-8, final newline)."""
        document = {
            "schema": BUNDLE_SCHEMA,
            "name": self.name,
            "version": self.version,
            "tier": self.tier,
            "model_file": self.file,
            "files": dict(self.files),
            "input": {
                "name": self.input_name,
                "shape": list(self.input_shape),
                "dtype": self.input_dtype,
            },
            "output": {"name": self.output_name, "classes": len(self.labels)},
            "labels": list(self.labels),
            "temperature": self.temperature,
            "default_threshold": self.default_threshold,
            "heldout": dict(self.heldout),
            "trained_by": self.trained_by,
            "commit": self.commit,
            "created_at": self.created_at,
        }
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
        read = _Reader(document, where)
        if document.get("schema") != BUNDLE_SCHEMA:
            read.fail("schema", f"is {document.get('schema')!r}, this code reads {BUNDLE_SCHEMA}")
        files = read.files("files")
        model_file = read.text("model_file")
        if model_file not in files:
            read.fail("model_file", f"is {model_file!r}, which is not listed in 'files'")
        heldout = read.metrics("heldout")
        # The model part has the same layout as a models/manifest.json entry: checked by
        # the same code, so a bundle and the manifest cannot disagree on what is valid.
        entry = {
            **document,
            "file": model_file,
            "sha256": files[model_file],
            "heldout_accuracy": heldout["accuracy"],
        }
        try:
            spec = ModelSpec.from_manifest(entry, where=where)
        except ModelError as exc:
            raise BundleError(str(exc)) from None
        read.name_token("version")
        return cls(
            **spec_fields(spec),
            tier=read.choice("tier", TIERS),
            files=files,
            default_threshold=read.unit("default_threshold"),
            heldout=heldout,
            trained_by=read.text("trained_by"),
            commit=read.text("commit"),
            created_at=read.timestamp("created_at"),
        )


def spec_fields(spec: ModelSpec) -> dict[str, Any]:
    """The fields of ``spec`` that make a :class:`ModelSpec`, by name."""
    return {f.name: getattr(spec, f.name) for f in fields(ModelSpec)}


class _Reader(EntryReader):
    """Typed access to bundle.json's own keys; a fault is a ``BundleError``."""

    def fail(self, key: str, problem: str) -> NoReturn:
        raise BundleError(f"{self._where}: key {key!r} {problem}")

    def name_token(self, key: str) -> str:
        value = self.text(key)
        if not _NAME.fullmatch(value):
            self.fail(key, f"is {value!r}; use letters, digits, '.', '_', '-' (no leading '.')")
        return value

    def unit(self, key: str) -> float:
        value = self.get(key)
        if not is_number(value) or not 0.0 <= value <= 1.0:
            self.fail(key, f"must be a number in [0, 1], got {value!r}")
        return float(value)

    def timestamp(self, key: str) -> str:
        value = self.text(key)
        try:
            datetime.fromisoformat(value)
        except ValueError:
            self.fail(key, f"is not an ISO 8601 time: {value!r}")
        return value

    def files(self, key: str) -> Mapping[str, str]:
        value = self.get(key)
        if not isinstance(value, dict) or not value:
            self.fail(key, "must be a non-empty object {file name: sha256}")
        for name, digest in value.items():
            if not _NAME.fullmatch(name) or name in (MANIFEST_FILE, SIGNATURE_FILE):
                self.fail(key, f"lists {name!r}, not a plain file name of the bundle folder")
            if not isinstance(digest, str) or len(digest) != 64 or not _HEX.fullmatch(digest):
                self.fail(key, f"has {digest!r} for {name!r}, not a lowercase hex SHA-256")
        return MappingProxyType(dict(value))

    def metrics(self, key: str) -> Mapping[str, float]:
        value = self.get(key)
        if not isinstance(value, dict) or not all(is_number(v) for v in value.values()):
            self.fail(key, f"must be an object of finite numbers, got {value!r}")
        accuracy: Any = value.get("accuracy")
        if not (is_number(accuracy) and 0.0 <= accuracy <= 1.0):
            self.fail(key, f"must have 'accuracy' in [0, 1], got {accuracy!r}")
        return MappingProxyType(dict(value))
