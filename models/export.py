"""Trained models to ONNX files, and the files run back the way the workers run them.

``export_onnx`` and ``export_embedding`` write a scikit-learn model with skl2onnx at a
pinned opset; ``onnx_proba`` and ``onnx_embedding`` run the written file with
onnxruntime on the CPU; ``check_matches`` and ``check_embedding_matches`` refuse a file
whose answers differ from scikit-learn's. Needs the ``models`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.recipes import ModelRecipe
from pipeline.inference.digits import N_FEATURES

__all__ = [
    "EMBEDDING_OUTPUT",
    "INPUT_NAME",
    "PROBA_OUTPUT",
    "BuildError",
    "check_embedding_matches",
    "check_matches",
    "export_embedding",
    "export_onnx",
    "onnx_embedding",
    "onnx_proba",
]

INPUT_NAME = "input"
# skl2onnx's name for the probability tensor when zipmap is off; checked after export.
PROBA_OUTPUT = "probabilities"
EMBEDDING_OUTPUT = "embedding"
# Pinned rather than "latest" so the files load on every onnxruntime >= 1.17 that
# pyproject allows, and so a skl2onnx upgrade does not silently change the bytes.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_TOLERANCE = 1e-4
# Embeddings are not bounded like probabilities (PCA scores reach ~36 here), so they
# are compared relative to their largest magnitude; float32 rounding is ~1e-7 of it.
EMBEDDING_RELATIVE_TOLERANCE = 1e-5


class BuildError(RuntimeError):
    """The build produced something that must not ship (mismatch, wrong ordering)."""


def export_onnx(model: Any, recipe: ModelRecipe, path: Path, n_features: int = N_FEATURES) -> None:
    """Write ``model`` as ONNX: ``input`` float32 [None, n_features], probabilities a tensor."""
    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    _convert(model, recipe, path, n_features, options={id(classifier): {"zipmap": False}})


def export_embedding(model: Any, recipe: ModelRecipe, path: Path) -> None:
    """Write a fitted PCA as ONNX: ``input`` float32 [None, 64] -> ``embedding`` [None, D]."""
    from skl2onnx.common.data_types import FloatTensorType

    output = FloatTensorType([None, model.n_components_])
    _convert(model, recipe, path, N_FEATURES, final_types=[(EMBEDDING_OUTPUT, output)])


def _convert(model: Any, recipe: ModelRecipe, path: Path, n_features: int, **how: Any) -> None:
    """Convert with skl2onnx (``how``: its options) and write the file."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        name=recipe.name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=TARGET_OPSET,
        **how,
    )
    _sort_opset_imports(onx)
    path.write_bytes(onx.SerializeToString())


def _sort_opset_imports(onx: Any) -> None:
    """Order the model's opset imports by domain, in place.

    skl2onnx collects them in a set, so their order (and the file's SHA-256) would
    otherwise change with Python's per-process string hash seed.
    """
    from onnx.helper import make_opsetid

    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(make_opsetid(domain, version) for domain, version in imports)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_proba(path: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities from the exported file, run the way the workers run it (CPU)."""
    session = _session(path)
    outputs = [o.name for o in session.get_outputs()]
    if PROBA_OUTPUT not in outputs:
        raise BuildError(f"{path.name}: no output named {PROBA_OUTPUT!r}, outputs are {outputs}")
    (proba,) = session.run([PROBA_OUTPUT], {INPUT_NAME: x.astype(np.float32)})
    return np.asarray(proba)


def onnx_embedding(path: Path, x: np.ndarray) -> np.ndarray:
    """Embeddings from the exported file, run the way the site runs it (CPU)."""
    (embedding,) = _session(path).run([EMBEDDING_OUTPUT], {INPUT_NAME: x.astype(np.float32)})
    return np.asarray(embedding)


def check_matches(recipe: ModelRecipe, expected: np.ndarray, got: np.ndarray) -> None:
    """Fail loudly if onnxruntime disagrees with scikit-learn beyond ONNX_TOLERANCE."""
    if got.shape != expected.shape:
        raise BuildError(f"{recipe.file}: ONNX gives shape {got.shape}, sklearn {expected.shape}")
    worst = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if worst > ONNX_TOLERANCE:
        raise BuildError(
            f"{recipe.file}: ONNX probabilities differ from sklearn predict_proba by up to "
            f"{worst:.2e} (tolerance {ONNX_TOLERANCE:.0e}); the export is wrong, not shipping it"
        )


def check_embedding_matches(recipe: ModelRecipe, expected: np.ndarray, got: np.ndarray) -> None:
    """Fail if the exported embedding differs from scikit-learn's beyond its tolerance."""
    worst = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or worst > EMBEDDING_RELATIVE_TOLERANCE * float(
        np.max(np.abs(expected))
    ):
        raise BuildError(f"{recipe.file}: ONNX embeddings differ from sklearn by {worst:.2e}")
