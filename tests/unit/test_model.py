"""Loading, verifying and running the shipped ONNX models, and rebuilding them.

What holds on any machine is tested everywhere; what only holds where the models were
built (byte-identical files) is an opt-in check, see ``test_rebuild_is_byte_identical``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.inference.digits import DigitsSplit, digit_to_pixels, pixels_to_features
from pipeline.inference.model import (
    DEFAULT_MANIFEST,
    OnnxModel,
    apply_temperature,
    load_spec,
)
from schemas.errors import ModelError


@pytest.fixture(scope="module")
def edge() -> OnnxModel:
    return OnnxModel.load("edge")


@pytest.fixture(scope="module")
def cloud() -> OnnxModel:
    return OnnxModel.load("cloud")


# The shipped files run by onnxruntime on another CPU may round a near-tie the other
# way: the recorded accuracy is met within one held-out digit.
def _one_digit(split: DigitsSplit) -> float:
    return 1 / len(split.y_heldout) + 5e-5  # and the manifest's rounding to 4 places


def _accuracy(model: OnnxModel, split: DigitsSplit) -> float:
    proba = model.predict_proba(split.x_heldout)
    return float(np.mean(proba.argmax(axis=1) == split.y_heldout))


def _manifest() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))
    return document


def _copy_models(tmp_path: Path) -> Path:
    """A copy of the manifest and both files, to damage without touching the real ones."""
    for entry in _manifest()["models"].values():
        shutil.copy(DEFAULT_MANIFEST.parent / entry["file"], tmp_path / entry["file"])
    return Path(shutil.copy(DEFAULT_MANIFEST, tmp_path / "manifest.json"))


def _edit_manifest(manifest: Path, role: str, key: str, value: Any) -> None:
    """Set the dotted ``key`` of ``role``'s entry to ``value``."""
    document = json.loads(manifest.read_text(encoding="utf-8"))
    *parents, last = key.split(".")
    table = document["models"][role]
    for part in parents:
        table = table[part]
    table[last] = value
    manifest.write_text(json.dumps(document), encoding="utf-8")


def test_both_models_load_and_describe_themselves(edge: OnnxModel, cloud: OnnxModel) -> None:
    assert (edge.name, edge.version, edge.n_classes) == ("digits-mlp32", "1.0.0", 10)
    assert (cloud.name, cloud.version, cloud.n_classes) == ("digits-svc", "1.0.0", 10)
    assert edge.spec.input_name == "input"
    assert edge.spec.output_name == "probabilities"
    assert edge.spec.labels == tuple("0123456789")
    assert edge.label_names == edge.spec.labels
    assert edge.spec.input_shape == (None, 64)


def test_edge_accuracy_matches_manifest(edge: OnnxModel, split: DigitsSplit) -> None:
    recorded = edge.spec.heldout_accuracy
    assert recorded is not None and abs(_accuracy(edge, split) - recorded) <= _one_digit(split)
    assert len(split.y_heldout) == _manifest()["models"]["edge"]["provenance"]["heldout_size"]


def test_cloud_is_more_accurate_than_edge(
    edge: OnnxModel, cloud: OnnxModel, split: DigitsSplit
) -> None:
    edge_accuracy = _accuracy(edge, split)
    cloud_accuracy = _accuracy(cloud, split)
    assert edge_accuracy > 0.95
    assert cloud_accuracy > edge_accuracy
    recorded = cloud.spec.heldout_accuracy
    assert recorded is not None and abs(cloud_accuracy - recorded) <= _one_digit(split)


def test_edge_file_is_smaller(edge: OnnxModel, cloud: OnnxModel) -> None:
    assert edge.path.stat().st_size * 5 < cloud.path.stat().st_size


def test_camera_pixels_classify_like_features(edge: OnnxModel, split: DigitsSplit) -> None:
    crops = [digit_to_pixels(d, scale=4) for d in split.x_heldout[:20]]
    from_pixels = edge.predict_proba(pixels_to_features(crops))
    np.testing.assert_array_equal(from_pixels, edge.predict_proba(split.x_heldout[:20]))


def test_probabilities_sum_to_one(edge: OnnxModel, cloud: OnnxModel, split: DigitsSplit) -> None:
    for model in (edge, cloud):
        proba = model.predict_proba(split.x_heldout[:64])
        assert proba.dtype == np.float32
        assert proba.shape == (64, 10)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
        assert proba.min() >= 0.0


def test_empty_batch(edge: OnnxModel) -> None:
    proba = edge.predict_proba(np.empty((0, 64), dtype=np.float32))
    assert proba.shape == (0, 10)
    assert proba.dtype == np.float32


@pytest.mark.parametrize(
    "features",
    [
        np.zeros((2, 64), dtype=np.float64),
        np.zeros((2, 63), dtype=np.float32),
        np.zeros(64, dtype=np.float32),
        np.zeros((2, 8, 8), dtype=np.float32),
    ],
    ids=["float64", "63-columns", "1-d", "3-d"],
)
def test_wrong_features_are_refused(edge: OnnxModel, features: np.ndarray) -> None:
    with pytest.raises(ModelError, match=r"float32 \[N, 64\], got"):
        edge.predict_proba(features)


def test_non_finite_features_are_refused(edge: OnnxModel) -> None:
    features = np.zeros((1, 64), dtype=np.float32)
    features[0, 5] = np.nan
    with pytest.raises(ModelError, match="NaN"):
        edge.predict_proba(features)


def test_concurrent_calls_agree(edge: OnnxModel, split: DigitsSplit) -> None:
    batches = [split.x_heldout[i : i + 10] for i in range(0, 200, 10)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = np.concatenate(list(pool.map(edge.predict_proba, batches)))
    whole = edge.predict_proba(split.x_heldout[:200])
    # Batches of 10 and one of 200 may take different kernels on some CPUs: the same
    # answers, equal to float32 rounding. A race would give other answers.
    np.testing.assert_array_equal(results.argmax(axis=1), whole.argmax(axis=1))
    np.testing.assert_allclose(results, whole, rtol=1e-5, atol=1e-6)


def test_flipped_byte_fails_sha256_check(tmp_path: Path) -> None:
    manifest = _copy_models(tmp_path)
    target = tmp_path / "edge-mlp32.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256") as caught:
        OnnxModel.load("edge", manifest)
    assert "edge-mlp32.onnx" in str(caught.value)
    assert "python -m models.build" in str(caught.value)
    OnnxModel.load("cloud", manifest)  # the untouched file still loads


def test_missing_file(tmp_path: Path) -> None:
    manifest = _copy_models(tmp_path)
    (tmp_path / "cloud-svc.onnx").unlink()
    with pytest.raises(ModelError, match=r"cloud-svc\.onnx: model file is missing"):
        OnnxModel.load("cloud", manifest)


def test_unloadable_file_with_matching_hash(tmp_path: Path) -> None:
    import hashlib

    manifest = _copy_models(tmp_path)
    garbage = b"not an onnx model"
    (tmp_path / "edge-mlp32.onnx").write_bytes(garbage)
    _edit_manifest(manifest, "edge", "sha256", hashlib.sha256(garbage).hexdigest())
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        OnnxModel.load("edge", manifest)


@pytest.mark.parametrize(
    ("role", "key", "value", "refusal"),
    [
        ("edge", "input.name", "pixels", "input is named 'input' in the file"),
        ("cloud-embed", "input_from.width", 32, r"manifest says float32 \[None, 32\]"),
        ("edge", "decoder.output", "proba", r"no output 'proba' in the file"),
        ("edge", "labels", ["a", "b"], r"expected float32 \[None, 2\] \(2 labels\)"),
    ],
    ids=["name", "width", "output", "labels"],
)
def test_file_mismatch(tmp_path: Path, role: str, key: str, value: Any, refusal: str) -> None:
    manifest = _copy_models(tmp_path)
    _edit_manifest(manifest, role, key, value)
    with pytest.raises(ModelError, match=refusal):
        OnnxModel.load(role, manifest)


def test_input_from_the_declaration_not_the_file(tmp_path: Path) -> None:
    manifest = _copy_models(tmp_path)
    _edit_manifest(manifest, "edge", "input.name", "")
    assert OnnxModel.load("edge", manifest).spec.input_name == "input"  # the file's only one
    _edit_manifest(manifest, "edge", "input.preprocess", "image")
    with pytest.raises(ModelError, match="takes 'digits8x8' or declares input_from"):
        OnnxModel.load("edge", manifest)


def test_unknown_role_lists_roles() -> None:
    with pytest.raises(ModelError, match=r"roles present: \[.*'cloud'.*'edge'.*\]"):
        load_spec("gpu")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="manifest not found"):
        load_spec("edge", tmp_path / "manifest.json")


@pytest.mark.parametrize(
    ("key", "value", "refusal"),
    [
        ("decoder.temperature", 0, r"edge\.decoder\.temperature must be a finite number > 0"),
        ("sha256", "abc", r"models\.edge\.sha256 must be a lowercase hex SHA-256"),
        ("labels", [0, 1], r"models\.edge\.labels\.names\[0\] must be a string, got 0 \(int\)"),
        ("input.layuot", "nchw", r"input\.layuot: unknown key; did you mean 'layout'\?"),
        ("decoder", {"type": "yolov8"}, "decoder.type 'yolov8' does not fit task 'classify'"),
        ("decoder.temperature", "1", r"decoder\.temperature must be a number, got '1' \(str\)"),
        ("task", "embed", "an embedding declares task 'embed'|does not fit task 'embed'"),
    ],
)
def test_load_names_the_bad_key(tmp_path: Path, key: str, value: Any, refusal: str) -> None:
    manifest = _copy_models(tmp_path)
    _edit_manifest(manifest, "edge", key, value)
    with pytest.raises(ModelError, match=refusal) as caught:
        OnnxModel.load("edge", manifest)
    assert str(caught.value).startswith(f"{tmp_path / 'manifest.json'}: models.edge")


def test_spec_without_the_file() -> None:
    spec = load_spec("device")
    assert (spec.n_features, spec.n_classes, spec.temperature) == (64, 10, 0.6916)


def test_temperature_is_applied(tmp_path: Path, split: DigitsSplit, edge: OnnxModel) -> None:
    manifest = _copy_models(tmp_path)
    _edit_manifest(manifest, "edge", "decoder.temperature", 1.0)
    raw = OnnxModel.load("edge", manifest).predict_proba(split.x_heldout[:32])
    _edit_manifest(manifest, "edge", "decoder.temperature", 2.0)
    softened = OnnxModel.load("edge", manifest)
    soft = softened.predict_proba(split.x_heldout[:32])
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(soft.argmax(axis=1), raw.argmax(axis=1))
    assert (soft.max(axis=1) <= raw.max(axis=1) + 1e-6).all()
    np.testing.assert_allclose(soft, apply_temperature(raw, 2.0), atol=1e-6)


def test_apply_temperature_handles_zeros() -> None:
    proba = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    result = apply_temperature(proba, 0.5)
    assert np.isfinite(result).all()
    np.testing.assert_allclose(result, proba, atol=1e-6)
    assert apply_temperature(proba, 1.0) is proba


# ------------------------------------------------------------------ rebuilding
#
# ``python -m models.build`` is seeded, but training runs on BLAS, whose floating-point
# results differ between CPUs (AMD and Intel, AVX2 and AVX-512): on another machine a
# rebuild gives other weights, so other bytes and SHA-256, and an accuracy a few
# held-out digits apart. What a rebuild promises anywhere, and what is tested:
#
# * the same models: roles, names, versions, files, tasks, inputs, decoders, labels, split;
# * each recorded held-out accuracy within ACCURACY_TOLERANCE (1.5 points);
# * the same answers as the shipped model on at least MIN_AGREEMENT (97%) of the
#   held-out digits (edge-bad, trained on shuffled labels, is only promised to stay
#   near chance: noise fitted to noise has no answers to agree on);
# * a calibration that still helps: a temperature within 25% of the recorded one that
#   lowers the out-of-fold negative log-likelihood.
#
# Byte identity (the manifest and every file exactly as shipped) holds only with the
# recorded library versions on a CPU whose BLAS rounds the same: set
# HF_CHECK_BYTE_IDENTICAL=1 to check it.

ACCURACY_TOLERANCE = 0.015
MIN_AGREEMENT = 0.97
TEMPERATURE_RATIO = 1.25
EXPLAINED_VARIANCE_TOLERANCE = 0.01
BYTE_IDENTICAL_ENV = "HF_CHECK_BYTE_IDENTICAL"
# Dotted keys of a manifest entry whose values depend on the floating-point results of
# training (and on the installed libraries).
_TRAINED_KEYS = (
    "sha256",
    "heldout_accuracy",
    "decoder.temperature",
    "input_from.sha256",
    "provenance.size_bytes",
    "provenance.calibration",
    "provenance.explained_variance",
    "provenance.trained_with",
)


def _untrained(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` without the values that depend on training, as ``"<trained>"``."""
    copy: dict[str, Any] = json.loads(json.dumps(entry))
    for key in _TRAINED_KEYS:
        *parents, last = key.split(".")
        table = copy
        for part in parents:
            table = table.get(part, {})
        if last in table:
            table[last] = "<trained>"
    return copy


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every model trained again from scratch, into a fresh folder (about 15 s)."""
    pytest.importorskip("skl2onnx")
    from models.build import build

    out = tmp_path_factory.mktemp("rebuilt")
    return out, build(out)


def _predictions(folder: Path, models: dict[str, Any], role: str, x: np.ndarray) -> np.ndarray:
    """The labels a model in ``folder`` gives held-out digits, through its embedding if any."""
    from models.export import onnx_embedding, onnx_proba

    source = models[role].get("input_from")
    if source is not None:
        x = onnx_embedding(folder / models[source["role"]]["file"], x)
    return np.asarray(onnx_proba(folder / models[role]["file"], x).argmax(axis=1))


def _classifiers(models: dict[str, Any]) -> list[str]:
    return sorted(role for role, entry in models.items() if "heldout_accuracy" in entry)


@pytest.fixture(scope="module")
def rebuilt_labels(
    rebuilt: tuple[Path, dict[str, Any]], split: DigitsSplit
) -> dict[str, np.ndarray]:
    """The labels each rebuilt classifier gives the held-out digits, by role."""
    folder, manifest = rebuilt
    return {
        role: _predictions(folder, manifest["models"], role, split.x_heldout)
        for role in _classifiers(_manifest()["models"])
    }


def test_rebuild_describes_the_same_models(rebuilt: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = rebuilt
    shipped = _manifest()
    assert manifest["schema"] == shipped["schema"]
    assert set(manifest["models"]) == set(shipped["models"])
    for role, entry in shipped["models"].items():
        again = manifest["models"][role]
        assert _untrained(again) == _untrained(entry), role
        for key in ("split_seed", "heldout_fraction"):
            trained_with = again["provenance"]["trained_with"]
            assert trained_with[key] == entry["provenance"]["trained_with"][key], role
    source = manifest["models"]["cloud-embed"]["input_from"]
    assert source["sha256"] == manifest["models"]["embed"]["sha256"]  # its own embedding


def test_rebuild_reaches_every_recorded_accuracy(
    rebuilt: tuple[Path, dict[str, Any]], rebuilt_labels: dict[str, np.ndarray], split: DigitsSplit
) -> None:
    from models.build import BAD_MAX_ACCURACY

    _, manifest = rebuilt
    shipped = _manifest()["models"]
    for role, labels in rebuilt_labels.items():
        accuracy = float(np.mean(labels == split.y_heldout))
        assert manifest["models"][role]["heldout_accuracy"] == round(accuracy, 4), role
        if role == "edge-bad":
            assert accuracy < BAD_MAX_ACCURACY
        else:
            recorded = shipped[role]["heldout_accuracy"]
            assert abs(accuracy - recorded) <= ACCURACY_TOLERANCE, (role, accuracy, recorded)
    variance = manifest["models"]["embed"]["provenance"]["explained_variance"]
    recorded_variance = shipped["embed"]["provenance"]["explained_variance"]
    assert abs(variance - recorded_variance) <= EXPLAINED_VARIANCE_TOLERANCE


def test_rebuild_agrees_with_the_shipped_models(
    rebuilt_labels: dict[str, np.ndarray], split: DigitsSplit
) -> None:
    shipped = _manifest()["models"]
    for role, theirs in rebuilt_labels.items():
        if role == "edge-bad":
            continue
        ours = _predictions(DEFAULT_MANIFEST.parent, shipped, role, split.x_heldout)
        agreement = float(np.mean(ours == theirs))
        assert agreement >= MIN_AGREEMENT, (role, agreement)


def test_rebuild_is_calibrated_like_the_shipped_models(
    rebuilt: tuple[Path, dict[str, Any]],
) -> None:
    _, manifest = rebuilt
    for role, entry in _manifest()["models"].items():
        if "calibration" not in entry["provenance"]:
            continue
        again = manifest["models"][role]
        calibration = again["provenance"]["calibration"]
        temperature = again["decoder"]["temperature"]
        assert temperature == calibration["temperature"], role
        ratio = temperature / entry["decoder"]["temperature"]
        assert abs(math.log(ratio)) <= math.log(TEMPERATURE_RATIO), (role, ratio)
        assert calibration["nll_after"] <= calibration["nll_before"], role


@pytest.mark.skipif(
    os.environ.get(BYTE_IDENTICAL_ENV) != "1",
    reason=f"byte identity holds only on a CPU like the one that built the models; "
    f"set {BYTE_IDENTICAL_ENV}=1 to check it",
)
def test_rebuild_is_byte_identical(rebuilt: tuple[Path, dict[str, Any]]) -> None:
    from models.manifest import library_versions

    folder, manifest = rebuilt
    shipped = _manifest()
    recorded = shipped["models"]["edge"]["provenance"]["trained_with"]
    if any(recorded.get(lib) != version for lib, version in library_versions().items()):
        pytest.skip("installed library versions differ from the ones the models were built with")
    assert manifest == shipped
    for entry in shipped["models"].values():
        data = (folder / entry["file"]).read_bytes()
        assert data == (DEFAULT_MANIFEST.parent / entry["file"]).read_bytes(), entry["file"]
