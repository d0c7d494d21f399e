"""What ``manifest.json`` records of each model file: ``manifest_entry`` and its parts.

Each entry names the model, its file with SHA-256 and size, its input and output, and
what it was trained with (library versions and the digits split), so a worker can
verify the file it loads and a rebuild can be compared with what shipped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.export import EMBEDDING_OUTPUT, INPUT_NAME, PROBA_OUTPUT
from models.recipes import N_CLASSES, ModelRecipe
from pipeline.inference.digits import HELDOUT_FRACTION, N_FEATURES, SPLIT_SEED, DigitsSplit

__all__ = [
    "DIGITS",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "embedding_entry",
    "library_versions",
    "manifest_entry",
    "sha256_of",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
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
        "size_bytes": path.stat().st_size,
        "trained_with": _trained_with(),
        "script": "models/build.py",
    }


def manifest_entry(
    recipe: ModelRecipe, path: Path, accuracy: float, split: DigitsSplit
) -> dict[str, Any]:
    """One classifier's record in manifest.json."""
    return {
        **_file_entry(recipe, path),
        "input": {
            "name": INPUT_NAME,
            "shape": [None, int(split.x_train.shape[1])],
            "dtype": "float32",
        },
        "output": {"name": PROBA_OUTPUT, "classes": N_CLASSES},
        "labels": list(range(N_CLASSES)),
        # 1.0 (uncalibrated) unless build() fits one; see calibrate().
        "temperature": 1.0,
        "heldout_accuracy": round(accuracy, 4),
        "heldout_size": len(split.y_heldout),
    }


def embedding_entry(recipe: ModelRecipe, path: Path, pca: Any) -> dict[str, Any]:
    """The embedding model's record in manifest.json."""
    return {
        **_file_entry(recipe, path),
        "input": {"name": INPUT_NAME, "shape": [None, N_FEATURES], "dtype": "float32"},
        "output": {
            "name": EMBEDDING_OUTPUT,
            "shape": [None, int(pca.n_components_)],
            "dtype": "float32",
        },
        # Share of the training pixels' variance the embedding keeps (PCA's own measure).
        "explained_variance": round(float(np.sum(pca.explained_variance_ratio_)), DIGITS),
    }


def _trained_with() -> dict[str, Any]:
    trained_with: dict[str, Any] = dict(library_versions())
    trained_with.update(split_seed=SPLIT_SEED, heldout_fraction=HELDOUT_FRACTION)
    return trained_with


def write_manifest(out: Path, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``manifest.json`` for ``models`` (by role) into ``out``; return it."""
    manifest = {"schema": MANIFEST_SCHEMA, "models": models}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest
