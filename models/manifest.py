"""What ``manifest.json`` (schema 2) declares of each model file: ``manifest_entry`` and
its parts.

Each entry is a model declaration (pipeline/inference/declaration.py,
docs/model-manifest.md): the model, its file with SHA-256, its task, input, decoder
and labels, and under ``provenance`` how it was made (file size, library versions and
the digits split, the script), so a worker can verify the file it loads and a rebuild
can be compared with what shipped. :func:`write_manifest` reads every entry back as a
declaration before writing it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.export import EMBEDDING_OUTPUT, INPUT_NAME, PROBA_OUTPUT, BuildError
from models.recipes import N_CLASSES, ModelRecipe
from pipeline.declared import build
from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.digits import HELDOUT_FRACTION, SPLIT_SEED, DigitsSplit
from pipeline.inference.manifest import MANIFEST_SCHEMA
from schemas.errors import ModelError

__all__ = [
    "DIGITS",
    "MANIFEST_NAME",
    "embedding_entry",
    "library_versions",
    "manifest_entry",
    "sha256_of",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
# What every digits model is fed: the digits8x8 preprocessor's 64 features.
_INPUT = {"name": INPUT_NAME, "preprocess": "digits8x8"}
# Temperature and calibration figures are rounded to this many places for the manifest.
DIGITS = 4


def library_versions() -> dict[str, str]:
    """The versions that determine the bytes of the files; recorded in the manifest."""
    import onnx
    import skl2onnx
    import sklearn

    return {
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "skl2onnx": skl2onnx.__version__,
        "sklearn": sklearn.__version__,
    }


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file_entry(recipe: ModelRecipe, path: Path) -> dict[str, Any]:
    """What every entry says: the model, its file, how it was made."""
    return {
        "name": recipe.name,
        "version": recipe.version,
        "file": recipe.file,
        "sha256": sha256_of(path),
        "input": dict(_INPUT),
        "provenance": {
            "size_bytes": path.stat().st_size,
            "trained_with": _trained_with(),
            "script": "models/build.py",
        },
    }


def manifest_entry(
    recipe: ModelRecipe, path: Path, accuracy: float, split: DigitsSplit
) -> dict[str, Any]:
    """One classifier's declaration in manifest.json (its input is the digits' features;
    ``build`` adds ``input_from`` for a classifier of embeddings)."""
    entry = _file_entry(recipe, path)
    entry["provenance"]["heldout_size"] = len(split.y_heldout)
    return {
        **entry,
        "task": "classify",
        # temperature 1.0 (uncalibrated) unless build() fits one; see calibrate().
        "decoder": {"type": "probabilities", "output": PROBA_OUTPUT, "temperature": 1.0},
        "labels": [str(label) for label in range(N_CLASSES)],
        "heldout_accuracy": round(accuracy, 4),
    }


def embedding_entry(recipe: ModelRecipe, path: Path, pca: Any) -> dict[str, Any]:
    """The embedding model's declaration in manifest.json: raw PCA values, not normalised."""
    entry = _file_entry(recipe, path)
    # Share of the training pixels' variance the embedding keeps (PCA's own measure).
    variance = round(float(np.sum(pca.explained_variance_ratio_)), DIGITS)
    entry["provenance"].update(components=int(pca.n_components_), explained_variance=variance)
    return {
        **entry,
        "task": "embed",
        "decoder": {"type": "embedding", "output": EMBEDDING_OUTPUT, "normalize": False},
    }


def _trained_with() -> dict[str, Any]:
    trained_with: dict[str, Any] = dict(library_versions())
    trained_with.update(split_seed=SPLIT_SEED, heldout_fraction=HELDOUT_FRACTION)
    return trained_with


def write_manifest(out: Path, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``manifest.json`` for ``models`` (by role) into ``out``; return it.

    BuildError if an entry is not a valid declaration.
    """
    for role, entry in models.items():
        try:
            build(ModelDeclaration, entry, MANIFEST_NAME, path=f"models.{role}")
        except ModelError as exc:
            raise BuildError(str(exc)) from None
    manifest = {"schema": MANIFEST_SCHEMA, "models": models}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest
