"""The extra models of the manifest: edge-v2, edge-bad, device, embed and cloud-embed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.inference.digits import N_FEATURES, DigitsSplit
from pipeline.inference.embedding import EmbeddingModel
from pipeline.inference.model import DEFAULT_MANIFEST, OnnxModel
from schemas.errors import ConfigError, ModelError

CLASSIFIER_ROLES = ("edge-v2", "edge-bad", "device", "cloud-embed")
# Held-out accuracy recomputed here must match the manifest's within half a point.
ACCURACY_TOLERANCE = 0.005
CHANCE = 0.1


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    models: dict[str, Any] = json.loads(DEFAULT_MANIFEST.read_text(encoding="utf-8"))["models"]
    return models


@pytest.fixture(scope="module")
def embedder() -> EmbeddingModel:
    return EmbeddingModel.load()


def _accuracy(model: OnnxModel, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict_proba(x).argmax(axis=1) == y))


@pytest.mark.parametrize("role", [*CLASSIFIER_ROLES, "embed"])
def test_file_hash_and_size_match_manifest(role: str, manifest: dict[str, Any]) -> None:
    data = (DEFAULT_MANIFEST.parent / manifest[role]["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest[role]["sha256"]
    assert len(data) == manifest[role]["provenance"]["size_bytes"]


@pytest.mark.parametrize("role", ["edge-v2", "edge-bad", "device"])
def test_digit_model_accuracy_matches_manifest(
    role: str, manifest: dict[str, Any], split: DigitsSplit
) -> None:
    model = OnnxModel.load(role)
    accuracy = _accuracy(model, split.x_heldout, split.y_heldout)
    assert accuracy == pytest.approx(manifest[role]["heldout_accuracy"], abs=ACCURACY_TOLERANCE)
    assert len(split.y_heldout) == manifest[role]["provenance"]["heldout_size"]


@pytest.mark.parametrize("role", ["edge-v2", "edge-bad", "device"])
def test_swappable_with_the_edge_model(role: str, split: DigitsSplit) -> None:
    """Same input and output contract as edge, so a worker can swap to it."""
    edge, other = OnnxModel.load("edge"), OnnxModel.load(role)
    for attribute in ("input_name", "input_shape", "input_dtype", "output_name", "labels"):
        assert getattr(other.spec, attribute) == getattr(edge.spec, attribute), attribute
    proba = other.predict_proba(split.x_heldout[:8])
    assert proba.shape == (8, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_bad_model_is_near_chance_and_named_as_bad(
    manifest: dict[str, Any], split: DigitsSplit
) -> None:
    bad = OnnxModel.load("edge-bad")
    assert abs(_accuracy(bad, split.x_heldout, split.y_heldout) - CHANCE) < 0.05
    assert "shuffled" in bad.name
    assert bad.version.endswith("-bad")
    assert "permuted" in manifest["edge-bad"]["provenance"]["trained_on"]


def test_edge_v2_is_a_calibrated_new_version_of_edge(
    manifest: dict[str, Any], split: DigitsSplit
) -> None:
    edge, v2 = OnnxModel.load("edge"), OnnxModel.load("edge-v2")
    assert (v2.name, v2.version) == (edge.name, "1.1.0")
    assert v2.spec.temperature == manifest["edge-v2"]["provenance"]["calibration"]["temperature"]
    assert v2.spec.temperature != 1.0
    assert _accuracy(v2, split.x_heldout, split.y_heldout) > 0.95
    assert manifest["edge-v2"]["sha256"] != manifest["edge"]["sha256"]


def test_device_model_is_smaller_than_edge_and_calibrated(manifest: dict[str, Any]) -> None:
    device, edge = manifest["device"]["provenance"], manifest["edge"]["provenance"]
    assert device["size_bytes"] < edge["size_bytes"]
    device_file = DEFAULT_MANIFEST.parent / manifest["device"]["file"]
    edge_file = DEFAULT_MANIFEST.parent / manifest["edge"]["file"]
    assert device_file.stat().st_size < edge_file.stat().st_size
    temperature = manifest["device"]["decoder"]["temperature"]
    assert temperature == device["calibration"]["temperature"] != 1.0


def test_embedding_shape_and_dtype(embedder: EmbeddingModel, split: DigitsSplit) -> None:
    embedding = embedder.embed(split.x_heldout)
    assert embedding.dtype == np.float32
    assert embedding.shape == (len(split.x_heldout), embedder.dim)
    assert embedder.dim < N_FEATURES
    assert embedder.embed(split.x_heldout[:0]).shape == (0, embedder.dim)


def test_embed_then_cloud_embed_reaches_recorded_accuracy(
    embedder: EmbeddingModel, manifest: dict[str, Any], split: DigitsSplit
) -> None:
    classifier = OnnxModel.load("cloud-embed")
    assert classifier.spec.n_features == embedder.dim
    accuracy = _accuracy(classifier, embedder.embed(split.x_heldout), split.y_heldout)
    recorded = manifest["cloud-embed"]["heldout_accuracy"]
    assert accuracy == pytest.approx(recorded, abs=ACCURACY_TOLERANCE)
    assert accuracy > manifest["edge"]["heldout_accuracy"]


def test_cloud_embed_names_the_embedding_it_was_trained_on(manifest: dict[str, Any]) -> None:
    source = manifest["cloud-embed"]["input_from"]
    assert source["role"] == "embed"
    assert source["sha256"] == manifest["embed"]["sha256"]
    assert source["version"] == manifest["embed"]["version"]
    assert source["width"] == EmbeddingModel.load().dim


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ([[0.0] * 64], "must be a numpy array"),
        (np.zeros((2, 64), dtype=np.float64), r"float32 \[N, 64\], got float64"),
        (np.zeros((2, 63), dtype=np.float32), r"got float32 \[2, 63\]"),
        (np.zeros(64, dtype=np.float32), r"got float32 \[64\]"),
        (np.full((1, 64), np.nan, dtype=np.float32), "NaN or infinity"),
    ],
)
def test_embed_rejects_bad_input(embedder: EmbeddingModel, features: Any, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        embedder.embed(features)


def _copy_embed(tmp_path: Path, manifest: dict[str, Any]) -> Path:
    name = manifest["embed"]["file"]
    shutil.copy(DEFAULT_MANIFEST.parent / name, tmp_path / name)
    return Path(shutil.copy(DEFAULT_MANIFEST, tmp_path / "manifest.json"))


def test_embed_refuses_a_file_that_does_not_match_its_hash(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    copy = _copy_embed(tmp_path, manifest)
    target = tmp_path / manifest["embed"]["file"]
    target.write_bytes(target.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="SHA-256 is"):
        EmbeddingModel.load(copy)


def test_embed_refuses_a_manifest_that_misdescribes_the_output(
    tmp_path: Path, manifest: dict[str, Any]
) -> None:
    copy = _copy_embed(tmp_path, manifest)
    document = json.loads(copy.read_text(encoding="utf-8"))
    document["models"]["embed"]["decoder"]["output"] = "embeddings"
    copy.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ModelError, match=r"decoder\.output 'embeddings' is not an output"):
        EmbeddingModel.load(copy)


def test_embed_errors_name_missing_roles_and_keys(tmp_path: Path, manifest: dict[str, Any]) -> None:
    with pytest.raises(ModelError, match="no model for role 'nope'"):
        EmbeddingModel.load(role="nope")
    copy = _copy_embed(tmp_path, manifest)
    document = json.loads(copy.read_text(encoding="utf-8"))
    del document["models"]["embed"]["decoder"]["type"]
    copy.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ModelError, match=r"models\.embed\.decoder\.type: required key is missing"):
        EmbeddingModel.load(copy)
    with pytest.raises(ConfigError, match="intra_op_threads"):
        EmbeddingModel.load(intra_op_threads=0)
