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
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.calibrate import calibrate, cross_validated_proba
from models.export import (
    BuildError,
    check_embedding_matches,
    check_matches,
    export_embedding,
    export_onnx,
    onnx_embedding,
    onnx_proba,
)
from models.manifest import embedding_entry, manifest_entry, write_manifest
from models.recipes import (
    CLOUD,
    CLOUD_EMBED,
    DEVICE,
    EDGE,
    EDGE_BAD,
    EDGE_V2,
    EMBED,
    N_CLASSES,
    SHUFFLE_SEED,
    ModelRecipe,
    train_cloud,
    train_device,
    train_edge,
    train_edge_shuffled,
    train_edge_v2,
    train_embed,
)
from pipeline.inference.digits import DigitsSplit, load_split

__all__ = ["BAD_MAX_ACCURACY", "build", "main"]

# edge-bad must stay a bad model: anything above twice chance would not be one.
BAD_MAX_ACCURACY = 2.0 / N_CLASSES


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


def _size(entry: dict[str, Any]) -> int:
    size: int = entry["provenance"]["size_bytes"]
    return size


def check_tiers(edge: dict[str, Any], cloud: dict[str, Any]) -> None:
    """The point of the hybrid: the edge model is smaller, the cloud model more accurate."""
    if _size(edge) >= _size(cloud):
        raise BuildError(f"edge file ({_size(edge)} B) is not smaller than cloud's")
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
    device, edge = _size(models[DEVICE.role]), _size(models[EDGE.role])
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
        expected = pca.transform(x.astype(np.float64))
        check_embedding_matches(recipe, expected, onnx_embedding(path, x))
    entry = embedding_entry(recipe, path, pca)
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
    entry["decoder"]["temperature"] = calibration["temperature"]
    entry["provenance"]["calibration"] = calibration


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
        edge_bad["provenance"]["trained_on"] = (
            f"training digits with their labels randomly permuted (numpy default_rng, "
            f"seed {SHUFFLE_SEED}); deliberately bad, uncalibrated (temperature 1.0)"
        )
        device = build_one(DEVICE, train_device(split), split, out)
        _calibrated(device, train_device, split, out)
        embed, embedded = build_embedding(EMBED, train_embed(split), split, out)
        cloud_embed = build_one(CLOUD_EMBED, train_cloud(embedded), embedded, out)
    cloud_embed["input_from"] = {key: embed[key] for key in ("name", "version", "sha256")}
    cloud_embed["input_from"].update(role=EMBED.role, width=int(embedded.x_train.shape[1]))
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
    return write_manifest(out, models)


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
        made = entry["provenance"]
        if "heldout_accuracy" in entry:
            measured = f"held-out accuracy {entry['heldout_accuracy']:.4f}"
        else:
            measured = f"{made['components']} floats, {made['explained_variance']:.2%} "
            measured += "of the training variance"
        print(
            f"{role}: {entry['name']} {entry['version']} -> {args.out / entry['file']} "
            f"({made['size_bytes']} B, {measured})"
        )
    for role, entry in manifest["models"].items():
        if "calibration" not in entry["provenance"]:
            continue
        cal = entry["provenance"]["calibration"]
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
