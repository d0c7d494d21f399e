"""Train the digit models, export them to ONNX, write the manifest.

Run as ``python -m models.build [--out DIR]`` (needs the ``models`` extra:
scikit-learn, skl2onnx, onnx). Trains on the training part of
:func:`pipeline.inference.digits.load_split` only; held-out accuracy is measured by running the
exported ONNX files with onnxruntime, i.e. exactly what the workers will run.

The temperature of the edge model (and of edge-v2 and device) is fitted on
out-of-fold probabilities of the training part (stratified, seeded k-fold
cross-validation: each training digit is predicted by a model that did not see it),
never on the held-out part the camera shows. That keeps
the shipped models trained on the whole training part. The manifest records the
temperature and the expected calibration error before and after, on those
out-of-fold predictions and on the held-out part.

Besides the ``edge`` and ``cloud`` pair the workers serve, the manifest holds models
for other tiers and for tests, each under its own role:

* ``edge-v2``: the edge architecture with another seed and its own temperature, a
  good second version for canary promotion tests;
* ``edge-bad``: the edge architecture trained on randomly permuted labels, a
  deliberately bad version (near-chance accuracy) for canary rollback tests;
* ``device``: a logistic regression small enough for a camera, same input as edge;
* ``embed``: PCA to a short embedding the site can send instead of the digit;
* ``cloud-embed``: the cloud's SVC trained on those embeddings.

Everything is seeded, so a rebuild with the same library versions on the same kind of
CPU gives byte-identical ``.onnx`` files and the same ``manifest.json``. Training runs on
BLAS, whose floating-point results differ between CPUs (AMD and Intel, AVX2 and
AVX-512): elsewhere a rebuild has other bytes and SHA-256, and held-out accuracies a few
digits apart. ``tests/unit/test_model.py`` checks what holds on any machine (each
recorded accuracy within 1.5 points, the same answers as the shipped model on at least
97% of the held-out digits), and byte identity only with ``HF_CHECK_BYTE_IDENTICAL=1``.
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

from pipeline.inference.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from pipeline.inference.digits import (
    HELDOUT_FRACTION,
    MAX_VALUE,
    N_FEATURES,
    SPLIT_SEED,
    DigitsSplit,
    load_split,
)
from pipeline.inference.model import apply_temperature

__all__ = [
    "CALIBRATION_FOLDS",
    "CALIBRATION_SEED",
    "CLOUD",
    "CLOUD_EMBED",
    "DEVICE",
    "ECE_BINS",
    "EDGE",
    "EDGE_BAD",
    "EDGE_V2",
    "EMBED",
    "MANIFEST_NAME",
    "MANIFEST_SCHEMA",
    "BuildError",
    "ModelRecipe",
    "build",
    "calibrate",
    "cross_validated_proba",
    "main",
    "train_cloud",
    "train_device",
    "train_edge",
    "train_edge_shuffled",
    "train_edge_v2",
    "train_embed",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
INPUT_NAME = "input"
# skl2onnx's name for the probability tensor when zipmap is off; checked after export.
PROBA_OUTPUT = "probabilities"
EMBEDDING_OUTPUT = "embedding"
EMBEDDING_DIM = 16
# Pinned rather than "latest" so the files load on every onnxruntime >= 1.17 that
# pyproject allows, and so a skl2onnx upgrade does not silently change the bytes.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ONNX_TOLERANCE = 1e-4
# Embeddings are not bounded like probabilities (PCA scores reach ~36 here), so they
# are compared relative to their largest magnitude; float32 rounding is ~1e-7 of it.
EMBEDDING_RELATIVE_TOLERANCE = 1e-5
N_CLASSES = 10
RANDOM_STATE = 0
EDGE_V2_SEED = 1
SHUFFLE_SEED = 0
# edge-bad must stay a bad model: anything above twice chance would not be one.
BAD_MAX_ACCURACY = 2.0 / N_CLASSES
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
EDGE_V2 = ModelRecipe(
    role="edge-v2", name="digits-mlp32", version="1.1.0", file="edge-mlp32-v2.onnx"
)
EDGE_BAD = ModelRecipe(
    role="edge-bad",
    name="digits-mlp32-shuffled-labels",
    version="1.1.0-bad",
    file="edge-shuffled-mlp32.onnx",
)
DEVICE = ModelRecipe(
    role="device", name="digits-logreg", version="1.0.0", file="device-logreg.onnx"
)
EMBED = ModelRecipe(role="embed", name="digits-pca16", version="1.0.0", file="embed-pca16.onnx")
CLOUD_EMBED = ModelRecipe(
    role="cloud-embed", name="digits-pca16-svc", version="1.0.0", file="cloud-embed-svc.onnx"
)


def _fixed_scaler() -> Any:
    """x/16: a MinMaxScaler fitted on the value bounds, not the data."""
    from sklearn.preprocessing import MinMaxScaler

    bounds = np.array([[0.0] * N_FEATURES, [float(MAX_VALUE)] * N_FEATURES], dtype=np.float32)
    return MinMaxScaler().fit(bounds)


def train_edge(split: DigitsSplit, seed: int = RANDOM_STATE) -> Any:
    """A 32-unit MLP behind a fixed x/16 scaler, so the ONNX input stays raw 0..16 features.

    The scaler is fitted on the value bounds, not the data, and the MLP on the scaled
    training set; fitting the pipeline as a whole would refit the scaler on the data.
    """
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline

    scaler = _fixed_scaler()
    # 1000 iterations: adam converges at ~450 on this split; the default 200 stops short.
    mlp = MLPClassifier(hidden_layer_sizes=(32,), max_iter=1000, random_state=seed)
    mlp.fit(scaler.transform(split.x_train), split.y_train)
    return Pipeline([("scale", scaler), ("mlp", mlp)])


def train_edge_v2(split: DigitsSplit) -> Any:
    """The edge recipe with the next seed: a second good version of the same model.

    The seed was fixed before looking at held-out figures, not picked among several.
    """
    return train_edge(split, seed=EDGE_V2_SEED)


def train_edge_shuffled(split: DigitsSplit) -> Any:
    """The edge recipe trained on a seeded random permutation of the training labels.

    The labels then carry no information about the digits, so held-out accuracy is
    about chance; adam does not converge in 1000 iterations (a ConvergenceWarning).
    """
    permuted = np.random.default_rng(SHUFFLE_SEED).permutation(split.y_train)
    return train_edge(replace(split, y_train=permuted))


def train_device(split: DigitsSplit) -> Any:
    """Multinomial logistic regression behind the same fixed x/16 scaler as the edge MLP.

    640 weights and 10 biases: a third of the edge file. C=3 had the best 5-fold CV
    accuracy on the training set (96.82%) over C in {0.3, 1, 3, 10, 30}; the held-out
    set played no part in the choice.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    scaler = _fixed_scaler()
    logreg = LogisticRegression(C=3.0, max_iter=5000)
    logreg.fit(scaler.transform(split.x_train), split.y_train)
    return Pipeline([("scale", scaler), ("logreg", logreg)])


def train_embed(split: DigitsSplit) -> Any:
    """PCA of the raw 0..16 features to EMBEDDING_DIM components (no labels used).

    Fitted in float64 with the exact (LAPACK) solver so the components do not depend
    on a random seed. 16 components keep about 85% of the training pixels' variance;
    the manifest records the exact share. An embedding is a linear projection: it
    keeps less than the pixels, but it is not a privacy mechanism.
    """
    from sklearn.decomposition import PCA

    return PCA(n_components=EMBEDDING_DIM, svd_solver="full").fit(split.x_train.astype(np.float64))


def train_cloud(split: DigitsSplit) -> Any:
    """An RBF SVC with Platt-scaled probabilities on the raw 0..16 features.

    C=1, gamma=0.001 had the best 5-fold CV accuracy on the training set (98.65%) over
    C in {1, 3, 10, 30} x gamma in {3e-4, 5e-4, 1e-3, 2e-3, "scale"}; the held-out set
    played no part in the choice.

    The ``cloud-embed`` model is this recipe fitted on PCA embeddings instead: there,
    C=1 with gamma in {1e-3, 2e-3, "scale"} and C=3, gamma=1e-3 tied for the best
    5-fold CV accuracy (98.65%) over the same grid, so the cloud's own values are kept.
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


def export_onnx(model: Any, recipe: ModelRecipe, path: Path, n_features: int = N_FEATURES) -> None:
    """Write ``model`` as ONNX: ``input`` float32 [None, n_features], probabilities a tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1] if hasattr(model, "steps") else model
    onx = convert_sklearn(
        model,
        name=recipe.name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    _sort_opset_imports(onx)
    path.write_bytes(onx.SerializeToString())


def export_embedding(model: Any, recipe: ModelRecipe, path: Path) -> None:
    """Write a fitted PCA as ONNX: ``input`` float32 [None, 64] -> ``embedding`` [None, D]."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        name=recipe.name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        final_types=[(EMBEDDING_OUTPUT, FloatTensorType([None, model.n_components_]))],
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


def onnx_embedding(path: Path, x: np.ndarray) -> np.ndarray:
    """Embeddings from the exported file, run the way the site runs it (CPU)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embedding,) = session.run([EMBEDDING_OUTPUT], {INPUT_NAME: x.astype(np.float32)})
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
    return {
        "name": recipe.name,
        "version": recipe.version,
        "file": recipe.file,
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
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
        "trained_with": _trained_with(),
        "script": "models/build.py",
    }


def _trained_with() -> dict[str, Any]:
    trained_with: dict[str, Any] = dict(library_versions())
    trained_with.update(split_seed=SPLIT_SEED, heldout_fraction=HELDOUT_FRACTION)
    return trained_with


def build_one(recipe: ModelRecipe, model: Any, split: DigitsSplit, out: Path) -> dict[str, Any]:
    """Export one trained model, verify it against sklearn, and describe it.

    ``split`` holds the model's inputs: digits for most models, embeddings for
    ``cloud-embed``; the input width is taken from it.
    """
    path = out / recipe.file
    export_onnx(model, recipe, path, n_features=int(split.x_train.shape[1]))
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


def check_new_models(models: dict[str, dict[str, Any]]) -> None:
    """What the extra roles are for: a bad model that is bad, a device model that is small."""
    bad = models[EDGE_BAD.role]["heldout_accuracy"]
    if bad >= BAD_MAX_ACCURACY:
        raise BuildError(
            f"edge-bad held-out accuracy {bad} is not near chance (must be < {BAD_MAX_ACCURACY})"
        )
    device, edge = models[DEVICE.role]["size_bytes"], models[EDGE.role]["size_bytes"]
    if device >= edge:
        raise BuildError(f"device file ({device} B) is not smaller than edge's ({edge} B)")


def build_embedding(
    recipe: ModelRecipe, pca: Any, split: DigitsSplit, out: Path
) -> tuple[dict[str, Any], DigitsSplit]:
    """Export the PCA, verify it, describe it; and the split as cloud-embed sees it.

    The returned split has the same rows and labels with embeddings as ``x``: the
    training part from scikit-learn (what the classifier is fitted on), the held-out
    part from the exported file (what the site would send), so the cloud-embed
    held-out accuracy is that of the whole ONNX chain.
    """
    path = out / recipe.file
    export_embedding(pca, recipe, path)
    for x in (split.x_train, split.x_heldout):
        expected, got = pca.transform(x.astype(np.float64)), onnx_embedding(path, x)
        worst = float(np.max(np.abs(got - expected)))
        if got.shape != expected.shape or worst > EMBEDDING_RELATIVE_TOLERANCE * float(
            np.max(np.abs(expected))
        ):
            raise BuildError(f"{recipe.file}: ONNX embeddings differ from sklearn by {worst:.2e}")
    entry = {
        "name": recipe.name,
        "version": recipe.version,
        "file": recipe.file,
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
        "input": {"name": INPUT_NAME, "shape": [None, N_FEATURES], "dtype": "float32"},
        "output": {
            "name": EMBEDDING_OUTPUT,
            "shape": [None, int(pca.n_components_)],
            "dtype": "float32",
        },
        # Share of the training pixels' variance the embedding keeps (PCA's own measure).
        "explained_variance": round(float(np.sum(pca.explained_variance_ratio_)), _DIGITS),
        "trained_with": _trained_with(),
        "script": "models/build.py",
    }
    embedded = replace(
        split,
        x_train=np.asarray(pca.transform(split.x_train.astype(np.float64)), dtype=np.float32),
        x_heldout=onnx_embedding(path, split.x_heldout),
    )
    return entry, embedded


def _calibrated(
    entry: dict[str, Any],
    train: Callable[[DigitsSplit], Any],
    split: DigitsSplit,
    out: Path,
) -> None:
    """Fit ``entry``'s temperature as for the edge model (see :func:`calibrate`), in place."""
    out_of_fold = cross_validated_proba(train, split)
    heldout = onnx_proba(out / entry["file"], split.x_heldout)
    calibration = calibrate(out_of_fold, heldout, split)
    entry.update(temperature=calibration["temperature"], calibration=calibration)


def _ignore_svc_probability_deprecation() -> None:
    """Silence scikit-learn 1.9's notice that ``SVC(probability=True)`` goes away in 1.11.

    Known and deliberate: the cloud model is specified as a Platt-scaled SVC, and
    skl2onnx converts it directly. Moving to ``CalibratedClassifierCV`` is a separate,
    model-changing decision; until then the ``models`` extra must stay below 1.11.
    """
    warnings.filterwarnings("ignore", r"The `probability` parameter", FutureWarning)
    warnings.filterwarnings("ignore", r"Attribute `prob[AB]_` was deprecated", FutureWarning)


def build(out: Path) -> dict[str, Any]:
    """Train, export and verify every model into ``out``; write and return the manifest."""
    from sklearn.exceptions import ConvergenceWarning

    out.mkdir(parents=True, exist_ok=True)
    split = load_split()
    with warnings.catch_warnings():
        _ignore_svc_probability_deprecation()
        edge = build_one(EDGE, train_edge(split), split, out)
        cloud = build_one(CLOUD, train_cloud(split), split, out)
        _calibrated(edge, train_edge, split, out)
        check_tiers(edge, cloud)
        edge_v2 = build_one(EDGE_V2, train_edge_v2(split), split, out)
        _calibrated(edge_v2, train_edge_v2, split, out)
        # Expected: random labels cannot be fitted; see train_edge_shuffled.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        edge_bad = build_one(EDGE_BAD, train_edge_shuffled(split), split, out)
        edge_bad["trained_on"] = (
            f"training digits with their labels randomly permuted (numpy default_rng, "
            f"seed {SHUFFLE_SEED}); deliberately bad, uncalibrated (temperature 1.0)"
        )
        device = build_one(DEVICE, train_device(split), split, out)
        _calibrated(device, train_device, split, out)
        embed, embedded = build_embedding(EMBED, train_embed(split), split, out)
        cloud_embed = build_one(CLOUD_EMBED, train_cloud(embedded), embedded, out)
    cloud_embed["input_from"] = {key: embed[key] for key in ("name", "version", "sha256")}
    cloud_embed["input_from"]["role"] = EMBED.role
    models = {
        EDGE.role: edge,
        CLOUD.role: cloud,
        EDGE_V2.role: edge_v2,
        EDGE_BAD.role: edge_bad,
        DEVICE.role: device,
        EMBED.role: embed,
        CLOUD_EMBED.role: cloud_embed,
    }
    check_new_models(models)
    manifest = {"schema": MANIFEST_SCHEMA, "models": models}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (out / MANIFEST_NAME).write_text(text, encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints one line per model and per calibration."""
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
        if "heldout_accuracy" in entry:
            measured = f"held-out accuracy {entry['heldout_accuracy']:.4f}"
        else:
            measured = f"{entry['output']['shape'][1]} floats, {entry['explained_variance']:.2%} "
            measured += "of the training variance"
        print(
            f"{role}: {entry['name']} {entry['version']} -> {args.out / entry['file']} "
            f"({entry['size_bytes']} B, {measured})"
        )
    for role, entry in manifest["models"].items():
        if "calibration" not in entry:
            continue
        cal = entry["calibration"]
        print(
            f"{role} calibration: temperature {cal['temperature']} fitted on "
            f"{cal['split']['folds']}-fold out-of-fold predictions of the "
            f"{cal['split']['size']} training digits; ECE ({cal['bins']} bins) "
            f"{100 * cal['ece_before']:.2f}% -> {100 * cal['ece_after']:.2f}% there, "
            f"{100 * cal['heldout_ece_before']:.2f}% -> {100 * cal['heldout_ece_after']:.2f}% "
            f"on the held-out split"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
