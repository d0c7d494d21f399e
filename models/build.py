"""Train the edge and cloud digit classifiers, export them to ONNX, write the manifest.

Run as ``python -m models.build [--out DIR]`` (needs the ``models`` extra:
scikit-learn, skl2onnx, onnx). Trains on the training part of
:func:`pipeline.digits.load_split` only; held-out accuracy is measured by running the
exported ONNX files with onnxruntime, i.e. exactly what the workers will run.

The edge model's temperature is fitted on out-of-fold probabilities of the training
part (stratified, seeded k-fold cross-validation: each training digit is predicted by
a model that did not see it), never on the held-out part the camera shows. That keeps
the shipped models trained on the whole training part. The manifest records the
temperature and the expected calibration error before and after, on those
out-of-fold predictions and on the held-out part.

Everything is seeded, so a rebuild with the same library versions gives byte-identical
``.onnx`` files and the same ``manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pipeline.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from pipeline.digits import (
    HELDOUT_FRACTION,
    MAX_VALUE,
    N_FEATURES,
    SPLIT_SEED,
    DigitsSplit,
    load_split,
)
from pipeline.model import apply_temperature

__all__ = [
    "CALIBRATION_FOLDS",
    "CALIBRATION_SEED",
    "CLOUD",
    "ECE_BINS",
    "EDGE",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "BuildError",
    "ModelRecipe",
    "build",
    "calibrate",
    "cross_validated_proba",
    "main",
    "train_cloud",
    "train_edge",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
INPUT_NAME = "input"
# skl2onnx's name for the probability tensor when zipmap is off; checked after export.
PROBA_OUTPUT = "probabilities"
# Pinned rather than "latest" so the files load on every onnxruntime >= 1.17 that
# pyproject allows, and so a skl2onnx upgrade does not silently change the bytes.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_TOLERANCE = 1e-4
N_CLASSES = 10
RANDOM_STATE = 0
# Out-of-fold predictions for calibration (and for `hybridfleet tune`): 5 folds as in
# scikit-learn's CalibratedClassifierCV, stratified and shuffled with a fixed seed.
CALIBRATION_FOLDS = 5
CALIBRATION_SEED = 0
ECE_BINS = 15
# Temperature and calibration figures are rounded for the manifest; the rounded
# temperature is the one that ships, so the "after" figures are computed with it.
_DIGITS = 4


class BuildError(RuntimeError):
    """The build produced something that must not ship (mismatch, wrong ordering)."""


@dataclass(frozen=True)
class ModelRecipe:
    """What to call a model and where to write it."""

    role: str
    name: str
    version: str
    file: str


EDGE = ModelRecipe(role="edge", name="digits-mlp32", version="1.0.0", file="edge-mlp32.onnx")
CLOUD = ModelRecipe(role="cloud", name="digits-svc", version="1.0.0", file="cloud-svc.onnx")


def train_edge(split: DigitsSplit) -> Any:
    """A 32-unit MLP behind a fixed x/16 scaler, so the ONNX input stays raw 0..16 features.

    The scaler is fitted on the value bounds, not the data, and the MLP on the scaled
    training set; fitting the pipeline as a whole would refit the scaler on the data.
    """
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler

    bounds = np.array([[0.0] * N_FEATURES, [float(MAX_VALUE)] * N_FEATURES], dtype=np.float32)
    scaler = MinMaxScaler().fit(bounds)
    # 1000 iterations: adam converges at ~450 on this split; the default 200 stops short.
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=RANDOM_STATE)
    mlp.fit(scaler.transform(split.x_train), split.y_train)
    return Pipeline([("scale", scaler), ("mlp", mlp)])


def train_cloud(split: DigitsSplit) -> Any:
    """An RBF SVC with Platt-scaled probabilities on the raw 0..16 features.

    C=1, gamma=0.001 had the best 5-fold CV accuracy on the training set (98.65%) over
    C in {1, 3, 10, 30} x gamma in {3e-4, 5e-4, 1e-3, 2e-3, "scale"}; the held-out set
    played no part in the choice.
    """
    from sklearn.svm import SVC

    svc = SVC(C=1.0, gamma=0.001, probability=True, random_state=RANDOM_STATE)
    return svc.fit(split.x_train, split.y_train)


def cross_validated_proba(
    train: Callable[[DigitsSplit], Any],
    split: DigitsSplit,
    *,
    folds: int = CALIBRATION_FOLDS,
    seed: int = CALIBRATION_SEED,
) -> np.ndarray:
    """Out-of-fold probabilities [n_train, classes] for the training part of ``split``.

    Each fold's rows are predicted by a model ``train`` fitted on the other folds only
    (scikit-learn ``predict_proba``; the exported ONNX files match it within
    ONNX_TOLERANCE). The held-out part is not used. Deterministic for a given seed.
    """
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((len(split.y_train), N_CLASSES), dtype=np.float64)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, predict_rows in cv.split(split.x_train, split.y_train):
        part = replace(split, x_train=split.x_train[fit_rows], y_train=split.y_train[fit_rows])
        model = train(part)
        out[predict_rows] = model.predict_proba(split.x_train[predict_rows])
    return out


def calibrate(
    out_of_fold: np.ndarray, heldout_proba: np.ndarray, split: DigitsSplit
) -> dict[str, Any]:
    """Fit the temperature on out-of-fold probabilities; the manifest's calibration record.

    ``ece_*`` and ``nll_*`` are measured on the out-of-fold predictions the temperature
    was fitted on; ``heldout_ece_*`` on the held-out part (measured, not fitted on).
    """
    y_train, y_heldout = split.y_train, split.y_heldout
    temperature = round(fit_temperature(out_of_fold, y_train), _DIGITS)

    def scaled(p: np.ndarray) -> np.ndarray:
        return apply_temperature(p.astype(np.float32), temperature)

    def ece(p: np.ndarray, y: np.ndarray) -> float:
        return round(expected_calibration_error(p, y, bins=ECE_BINS), _DIGITS + 2)

    def nll(p: np.ndarray, y: np.ndarray) -> float:
        return round(negative_log_likelihood(p, y), _DIGITS + 2)

    return {
        "method": "temperature",
        "temperature": temperature,
        "split": {
            "source": "train",
            "kind": "out-of-fold predictions, stratified k-fold cross-validation",
            "folds": CALIBRATION_FOLDS,
            "seed": CALIBRATION_SEED,
            "size": len(y_train),
        },
        "bins": ECE_BINS,
        "ece_before": ece(out_of_fold, y_train),
        "ece_after": ece(scaled(out_of_fold), y_train),
        "nll_before": nll(out_of_fold, y_train),
        "nll_after": nll(scaled(out_of_fold), y_train),
        "heldout_ece_before": ece(heldout_proba, y_heldout),
        "heldout_ece_after": ece(scaled(heldout_proba), y_heldout),
    }


def export_onnx(model: Any, recipe: ModelRecipe, path: Path) -> None:
    """Write ``model`` as ONNX: input ``input`` float32 [None, 64], probabilities as a tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    onx = convert_sklearn(
        model,
        name=recipe.name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
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


def onnx_proba(path: Path, x: np.ndarray) -> np.ndarray:
    """Probabilities from the exported file, run the way the workers run it (CPU)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    if PROBA_OUTPUT not in outputs:
        raise BuildError(f"{path.name}: no output named {PROBA_OUTPUT!r}, outputs are {outputs}")
    (proba,) = session.run([PROBA_OUTPUT], {INPUT_NAME: x.astype(np.float32)})
    return np.asarray(proba)


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


def manifest_entry(
    recipe: ModelRecipe, path: Path, accuracy: float, split: DigitsSplit
) -> dict[str, Any]:
    """One model's record in manifest.json."""
    trained_with: dict[str, Any] = dict(library_versions())
    trained_with.update(split_seed=SPLIT_SEED, heldout_fraction=HELDOUT_FRACTION)
    return {
        "name": recipe.name,
        "version": recipe.version,
        "file": recipe.file,
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
        "input": {"name": INPUT_NAME, "shape": [None, N_FEATURES], "dtype": "float32"},
        "output": {"name": PROBA_OUTPUT, "classes": N_CLASSES},
        "labels": list(range(N_CLASSES)),
        # 1.0 (uncalibrated) unless build() fits one; see calibrate().
        "temperature": 1.0,
        "heldout_accuracy": round(accuracy, 4),
        "heldout_size": len(split.y_heldout),
        "trained_with": trained_with,
        "script": "models/build.py",
    }


def build_one(recipe: ModelRecipe, model: Any, split: DigitsSplit, out: Path) -> dict[str, Any]:
    """Export one trained model, verify it against sklearn, and describe it."""
    path = out / recipe.file
    export_onnx(model, recipe, path)
    for x in (split.x_train, split.x_heldout):
        check_matches(recipe, np.asarray(model.predict_proba(x)), onnx_proba(path, x))
    proba = onnx_proba(path, split.x_heldout)
    accuracy = float(np.mean(proba.argmax(axis=1) == split.y_heldout))
    return manifest_entry(recipe, path, accuracy, split)


def check_tiers(edge: dict[str, Any], cloud: dict[str, Any]) -> None:
    """The point of the hybrid: the edge model is smaller, the cloud model more accurate."""
    if edge["size_bytes"] >= cloud["size_bytes"]:
        raise BuildError(f"edge file ({edge['size_bytes']} B) is not smaller than cloud's")
    if edge["heldout_accuracy"] >= cloud["heldout_accuracy"]:
        raise BuildError(
            f"cloud held-out accuracy {cloud['heldout_accuracy']} does not beat "
            f"edge {edge['heldout_accuracy']}"
        )


def _ignore_svc_probability_deprecation() -> None:
    """Silence scikit-learn 1.9's notice that ``SVC(probability=True)`` goes away in 1.11.

    Known and deliberate: the cloud model is specified as a Platt-scaled SVC, and
    skl2onnx converts it directly. Moving to ``CalibratedClassifierCV`` is a separate,
    model-changing decision; until then the ``models`` extra must stay below 1.11.
    """
    warnings.filterwarnings("ignore", r"The `probability` parameter", FutureWarning)
    warnings.filterwarnings("ignore", r"Attribute `prob[AB]_` was deprecated", FutureWarning)


def build(out: Path) -> dict[str, Any]:
    """Train, export and verify both models into ``out``; write and return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    split = load_split()
    with warnings.catch_warnings():
        _ignore_svc_probability_deprecation()
        edge = build_one(EDGE, train_edge(split), split, out)
        cloud = build_one(CLOUD, train_cloud(split), split, out)
        out_of_fold = cross_validated_proba(train_edge, split)
    calibration = calibrate(out_of_fold, onnx_proba(out / EDGE.file, split.x_heldout), split)
    edge.update(temperature=calibration["temperature"], calibration=calibration)
    check_tiers(edge, cloud)
    manifest = {"schema": MANIFEST_SCHEMA, "models": {"edge": edge, "cloud": cloud}}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints one line per model."""
    parser = argparse.ArgumentParser(prog="python -m models.build", description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder for the .onnx files and manifest.json (default: the models package)",
    )
    args = parser.parse_args(argv)
    try:
        manifest = build(args.out)
    except BuildError as exc:
        print(f"models.build: {exc}", file=sys.stderr)
        return 1
    for role, entry in manifest["models"].items():
        print(
            f"{role}: {entry['name']} {entry['version']} -> {args.out / entry['file']} "
            f"({entry['size_bytes']} B, held-out accuracy {entry['heldout_accuracy']:.4f})"
        )
    cal = manifest["models"]["edge"]["calibration"]
    print(
        f"edge calibration: temperature {cal['temperature']} fitted on "
        f"{cal['split']['folds']}-fold out-of-fold predictions of the {cal['split']['size']} "
        f"training digits; ECE ({cal['bins']} bins) {100 * cal['ece_before']:.2f}% -> "
        f"{100 * cal['ece_after']:.2f}% there, {100 * cal['heldout_ece_before']:.2f}% -> "
        f"{100 * cal['heldout_ece_after']:.2f}% on the held-out split"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
