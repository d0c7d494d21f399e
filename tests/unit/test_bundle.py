"""Model bundles: made, signed and verified; every kind of damage is refused with a reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipeline.inference.digits import load_split
from pipeline.inference.labels import Labels
from pipeline.inference.model import OnnxModel
from pipeline.release.bundle import load_bundle, make_bundle, read_unverified
from pipeline.release.manifest import MANIFEST_FILE, SIGNATURE_FILE, BundleManifest
from pipeline.release.signing import generate_keypair, parse_trusted_keys, public_key_of, sign
from schemas.errors import BundleError, ModelError
from tests.release_helpers import edge_bundle, models_cli

EDGE_FILE = "edge-mlp32.onnx"


@pytest.fixture(scope="module")
def edge() -> OnnxModel:
    return OnnxModel.load("edge")


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_keypair()


def _make(out: Path, edge: OnnxModel, private: str, *, version: str = "1.1.0") -> Path:
    assert edge.spec.heldout_accuracy is not None
    heldout = {"accuracy": edge.spec.heldout_accuracy, "size": 540}
    return edge_bundle(
        out, edge, private, version, threshold=0.85, heldout=heldout, commit="0123abcd"
    )


def _edit(bundle: Path, change: Callable[[dict[str, Any]], None], key: str | None) -> None:
    """Change bundle.json; re-sign it with ``key`` (a signed but wrong bundle) unless None."""
    document = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    change(document)
    data = json.dumps(document).encode()
    (bundle / MANIFEST_FILE).write_bytes(data)
    if key is not None:
        (bundle / SIGNATURE_FILE).write_bytes(sign(data, key))


def test_round_trip(tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]) -> None:
    private, public = keys
    path = _make(tmp_path, edge, private)
    assert path == tmp_path / "edge" / "1.1.0"
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST_FILE, SIGNATURE_FILE, EDGE_FILE]

    bundle = load_bundle(path, [generate_keypair()[1], public], tier="edge", version="1.1.0")
    assert bundle.signer == public
    m = bundle.manifest
    assert (m.name, m.version, m.tier, m.model_file) == ("digits-mlp32", "1.1.0", "edge", EDGE_FILE)
    assert m.files == {EDGE_FILE: edge.spec.sha256}
    assert m.model == replace(
        edge.declaration,
        version="1.1.0",
        heldout_accuracy=edge.spec.heldout_accuracy,
    )
    assert (m.model.input.name, m.model.input.preprocess) == ("input", "digits8x8")
    assert m.model.labels is not None and m.model.labels.names == tuple("0123456789")
    assert m.model.decoder.params.temperature == edge.spec.temperature
    assert m.default_threshold == 0.85
    assert m.heldout == {"accuracy": edge.spec.heldout_accuracy, "size": 540}
    assert (m.trained_by, m.commit) == ("models/build.py", "0123abcd")
    assert BundleManifest.from_json(m.to_json()) == m

    model = bundle.load_model()
    assert model.version == "1.1.0"
    x = load_split().x_heldout[:50]
    np.testing.assert_array_equal(model.predict_proba(x), edge.predict_proba(x))


def test_tampered_model_file_is_refused_by_hash(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    private, public = keys
    path = _make(tmp_path, edge, private)
    data = bytearray((path / EDGE_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / EDGE_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256 is") as caught:
        load_bundle(path, [public])
    message = str(caught.value)
    assert EDGE_FILE in message
    assert f"bundle.json says {edge.spec.sha256[:12]}" in message
    assert "fetch the bundle again" in message


def test_tampered_manifest_is_refused_by_signature(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    private, public = keys
    path = _make(tmp_path, edge, private)
    _edit(path, lambda d: d.update(default_threshold=0.1), key=None)
    with pytest.raises(BundleError, match="does not verify against any of the 1 trusted keys"):
        load_bundle(path, [public])


def test_unknown_key_is_refused(tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]) -> None:
    path = _make(tmp_path, edge, keys[0])
    others = [generate_keypair()[1], generate_keypair()[1]]
    with pytest.raises(BundleError, match="any of the 2 trusted keys") as caught:
        load_bundle(path, others)
    assert others[0][:12] in str(caught.value)
    with pytest.raises(BundleError, match="no trusted public keys configured"):
        load_bundle(path, [])


def test_signature_is_checked_before_the_manifest_is_read(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    path = _make(tmp_path, edge, keys[0])
    (path / MANIFEST_FILE).write_bytes(b"not json at all")
    with pytest.raises(BundleError, match="signature does not verify"):
        load_bundle(path, [keys[1]])


def test_wrong_labels_are_refused_even_when_signed(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    private, public = keys
    path = _make(tmp_path, edge, private)
    _edit(path, lambda d: d["model"].update(labels=["a", "b", "c"]), key=private)
    with pytest.raises(BundleError, match=r"expected float32 \[None, 3\]") as caught:
        load_bundle(path, [public])
    assert isinstance(caught.value, ModelError)  # callers catching ModelError see it too


def test_make_bundle_refuses_a_spec_the_model_does_not_match(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    declaration = replace(edge.declaration, input=replace(edge.declaration.input, name="pixels"))
    with pytest.raises(BundleError, match="input is named 'input' in the file"):
        make_bundle(
            tmp_path,
            "edge",
            edge.path,
            declaration,
            version="2.0.0",
            default_threshold=0.9,
            heldout={"accuracy": 0.9},
            trained_by="models/build.py",
            commit="unknown",
            signing_key=keys[0],
        )
    assert not (tmp_path / "edge" / "2.0.0").exists()


@pytest.mark.parametrize("missing", [EDGE_FILE, SIGNATURE_FILE, MANIFEST_FILE])
def test_missing_file_is_refused(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str], missing: str
) -> None:
    path = _make(tmp_path, edge, keys[0])
    (path / missing).unlink()
    with pytest.raises(BundleError, match=f"{missing}: missing; the bundle is incomplete"):
        load_bundle(path, [keys[1]])


def test_asked_for_version_must_match_the_signed_one(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    path = _make(tmp_path, edge, keys[0])
    with pytest.raises(BundleError, match=r"version is '1\.1\.0' but '1\.2\.0' was asked for"):
        load_bundle(path, [keys[1]], version="1.2.0")
    with pytest.raises(BundleError, match="tier is 'edge' but 'cloud' was asked for"):
        load_bundle(path, [keys[1]], tier="cloud")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(files={"../escape.onnx": "0" * 64}), "not a plain file name"),
        (lambda d: d["model"].update(version="../1"), "model.version is '../1'"),
        (lambda d: d.update(tier="phone"), "tier must be one of edge, cloud, device, got 'phone'"),
        (lambda d: d["model"].update(file="other.onnx"), "not listed in 'files'"),
        (lambda d: d.update(heldout={"size": 3}), "'accuracy' in \\[0, 1\\]"),
        (lambda d: d.update(schema=3), "schema is 3, this code reads 2"),
        (lambda d: d["model"].pop("input"), "model.input: required key is missing"),
        (lambda d: d["model"]["input"].update(nmae="x"), "did you mean 'name'"),
    ],
)
def test_signed_but_invalid_manifest_names_the_key(
    tmp_path: Path,
    edge: OnnxModel,
    keys: tuple[str, str],
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    private, public = keys
    path = _make(tmp_path, edge, private)
    _edit(path, change, key=private)
    with pytest.raises(BundleError, match=message):
        load_bundle(path, [public])


def test_read_unverified_checks_hashes_but_not_the_signature(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    path = _make(tmp_path, edge, keys[0])
    manifest, contents = read_unverified(path)
    assert manifest.version == "1.1.0"
    assert sorted(contents) == [MANIFEST_FILE, SIGNATURE_FILE, EDGE_FILE]
    assert contents[EDGE_FILE] == edge.path.read_bytes()
    (path / EDGE_FILE).write_bytes(b"x")
    with pytest.raises(BundleError, match="SHA-256"):
        read_unverified(path)


def test_keys(edge: OnnxModel) -> None:
    private, public = generate_keypair()
    assert len(private) == len(public) == 64
    assert public_key_of(private) == public
    assert parse_trusted_keys(f" {public.upper()} ,, {public}") == (public, public)
    with pytest.raises(BundleError, match="trusted key #2"):
        parse_trusted_keys(f"{public},abc")
    with pytest.raises(BundleError, match="signing key: neither"):
        sign(b"x", "not a key")
    pem_key = Ed25519PrivateKey.generate()
    pem = pem_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    pem_public = pem_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert public_key_of(pem) == pem_public.hex()


def test_bundle_exists_already(tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]) -> None:
    _make(tmp_path, edge, keys[0])
    with pytest.raises(BundleError, match="exists already"):
        _make(tmp_path, edge, keys[0])


def test_cli_keygen_and_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert models_cli(["keygen", "--out", str(tmp_path / "keys")]) == 0
    private_file = tmp_path / "keys" / "bundle-signing.key"
    public = (tmp_path / "keys" / "bundle-signing.pub").read_text().strip()
    assert private_file.stat().st_mode & 0o777 == 0o600
    assert public in capsys.readouterr().out
    with pytest.raises(BundleError, match="not overwriting a key"):
        models_cli(["keygen", "--out", str(tmp_path / "keys")])

    argv = ["bundle", "--tier", "edge", "--role", "edge", "--version", "1.2.0"]
    argv += ["--key", str(private_file), "--out", str(tmp_path / "b"), "--commit", "abc123"]
    assert models_cli(argv) == 0
    path = Path(capsys.readouterr().out.strip())
    bundle = load_bundle(path, [public], tier="edge", version="1.2.0")
    assert bundle.manifest.commit == "abc123"
    assert bundle.manifest.trained_by == "models/build.py"
    assert set(bundle.manifest.heldout) == {"accuracy", "size", "ece"}


def test_a_labels_file_travels_in_the_bundle(
    tmp_path: Path, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    private, public = keys
    source = tmp_path / "models"
    source.mkdir()
    (source / EDGE_FILE).write_bytes(edge.path.read_bytes())
    (source / "digits.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    labels = Labels(file="digits.txt")
    declaration = replace(edge.declaration, labels=labels)
    path = make_bundle(
        tmp_path / "out",
        "edge",
        source / EDGE_FILE,
        declaration,
        version="3.0.0",
        default_threshold=0.9,
        heldout={"accuracy": 0.97},
        trained_by="models/build.py",
        commit="unknown",
        signing_key=private,
    )
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [MANIFEST_FILE, SIGNATURE_FILE, EDGE_FILE, "digits.txt"]
    )
    model = load_bundle(path, [public]).load_model()
    assert model.spec.labels[3] == "digit 3"
    (path / "digits.txt").write_text("changed\n")
    with pytest.raises(BundleError, match=r"digits\.txt: SHA-256 is"):
        load_bundle(path, [public])
