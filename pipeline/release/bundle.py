"""Signed, versioned model bundles: make them, sign them, and refuse any that is not right.

A bundle is a folder (docs/model-bundles.md): ``bundle.json`` describes the model and
lists every file with its SHA-256, ``bundle.sig`` is an Ed25519 signature over the
exact bytes of ``bundle.json``, and the ONNX file(s) sit next to them. A worker
trusts a bundle only through :func:`load_bundle`, which checks, in this order: the
signature against the trusted public keys (before reading anything the manifest
says), each file's SHA-256, and that the ONNX file's input and output are what the
manifest promises. Every refusal is a :class:`BundleError` that says what to fix.

Keys are raw Ed25519 keys written as hex: 64 characters for a public key (what the
settings list as trusted keys) and for a private key. A PEM (PKCS#8) private key, as
``openssl genpkey -algorithm ed25519`` writes it, is accepted too.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipeline.inference.model import EntryReader, ModelSpec, OnnxModel
from schemas.checks import is_number
from schemas.errors import BundleError, ModelError

__all__ = [
    "BUNDLE_SCHEMA",
    "MANIFEST_FILE",
    "SIGNATURE_FILE",
    "TIERS",
    "BundleManifest",
    "VerifiedBundle",
    "generate_keypair",
    "load_bundle",
    "make_bundle",
    "parse_trusted_keys",
    "public_key_of",
    "read_unverified",
    "sign",
    "verify",
    "write_folder",
]

BUNDLE_SCHEMA: Final = 1
MANIFEST_FILE: Final = "bundle.json"
SIGNATURE_FILE: Final = "bundle.sig"
TIERS: Final = ("edge", "cloud", "device")

# Versions and file names become object names (<tier>/<version>/<file>) and local
# folder names: no '/', no leading '.', so a manifest cannot point outside its folder.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX = re.compile(r"[0-9a-f]+")
_SIGNATURE_BYTES: Final = 64
_KEY_BYTES: Final = 32
_HASH_CHARS: Final = 12


# ---------------------------------------------------------------- keys and signatures


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 keypair as ``(private_hex, public_hex)``, 64 hex characters each."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return private.hex(), _public_hex(key.public_key())


def public_key_of(private_key: str) -> str:
    """The public key (hex) of a private key given as hex or PEM."""
    return _public_hex(_load_private(private_key).public_key())


def sign(data: bytes, private_key: str) -> bytes:
    """The 64-byte Ed25519 signature of ``data`` with a private key given as hex or PEM."""
    return _load_private(private_key).sign(data)


def verify(
    data: bytes, signature: bytes, trusted_public_keys: Sequence[str], *, where: str = "data"
) -> str:
    """The trusted key (hex) whose signature ``signature`` is over ``data``.

    Any one of ``trusted_public_keys`` is enough, so keys can be rotated by trusting
    the old and the new one for a while. Raises :class:`BundleError` otherwise.
    """
    keys = [_load_public(k, i) for i, k in enumerate(trusted_public_keys, 1)]
    if not keys:
        raise BundleError(
            f"{where}: no trusted public keys configured, so no bundle can be accepted; "
            "set edge.trusted_keys / cloud.trusted_keys (hex, comma-separated)"
        )
    if len(signature) != _SIGNATURE_BYTES:
        raise BundleError(
            f"{where}: {SIGNATURE_FILE} is {len(signature)} bytes, an Ed25519 signature is "
            f"{_SIGNATURE_BYTES}; re-sign the bundle"
        )
    for key in keys:
        try:
            key.verify(signature, data)
        except InvalidSignature:
            continue
        return _public_hex(key)
    ids = ", ".join(_public_hex(k)[:_HASH_CHARS] + "..." for k in keys)
    raise BundleError(
        f"{where}: signature does not verify against any of the {len(keys)} trusted keys "
        f"({ids}); the bundle was changed after signing or signed with a key this worker "
        "does not trust"
    )


def parse_trusted_keys(text: str) -> tuple[str, ...]:
    """Comma-separated hex public keys (a settings value) as a tuple; checks each one."""
    keys = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    for i, key in enumerate(keys, 1):
        _load_public(key, i)
    return keys


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _load_public(key: str, index: int) -> Ed25519PublicKey:
    text = key.strip().lower() if isinstance(key, str) else ""
    if len(text) != 2 * _KEY_BYTES or not _HEX.fullmatch(text):
        raise BundleError(
            f"trusted key #{index} ({key!r}) is not {2 * _KEY_BYTES} hex characters (a raw "
            "Ed25519 public key); use the .pub file `hybridfleet models keygen` wrote"
        )
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))


def _load_private(key: str) -> Ed25519PrivateKey:
    text = key.strip()
    if text.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise BundleError(f"signing key: cannot read the PEM private key: {exc}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise BundleError(f"signing key: a {type(loaded).__name__}, not an Ed25519 key")
        return loaded
    if len(text) != 2 * _KEY_BYTES or not _HEX.fullmatch(text.lower()):
        raise BundleError(
            f"signing key: neither {2 * _KEY_BYTES} hex characters nor a PEM Ed25519 private "
            "key; make one with `hybridfleet models keygen`"
        )
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


# ---------------------------------------------------------------- the manifest


@dataclass(frozen=True, slots=True)
class BundleManifest:
    """The contents of ``bundle.json``: what the bundle holds and how it was made.

    ``files`` maps every file of the bundle except ``bundle.json`` and ``bundle.sig``
    to its hex SHA-256; ``model_file`` is the ONNX file among them. ``input_shape``
    uses None for the batch dimension. ``heldout`` holds the build's held-out
    measurements and always has ``accuracy``. ``trained_by`` is the training script's
    path and ``commit`` the git commit it was run from (``"unknown"`` allowed).
    ``created_at`` is ISO 8601 UTC.
    """

    name: str
    version: str
    tier: str
    model_file: str
    files: Mapping[str, str]
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_name: str
    labels: tuple[int, ...]
    temperature: float
    default_threshold: float
    heldout: Mapping[str, float]
    trained_by: str
    commit: str
    created_at: str

    def to_json(self) -> bytes:
        """The bytes of ``bundle.json`` (sorted keys, indented, UTF-8, final newline)."""
        document = {
            "schema": BUNDLE_SCHEMA,
            "name": self.name,
            "version": self.version,
            "tier": self.tier,
            "model_file": self.model_file,
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
        job (:func:`load_bundle`).
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
        return cls(
            name=spec.name,
            version=read.name_token("version"),
            tier=read.choice("tier", TIERS),
            model_file=model_file,
            files=files,
            input_name=spec.input_name,
            input_shape=spec.input_shape,
            input_dtype=spec.input_dtype,
            output_name=spec.output_name,
            labels=spec.labels,
            temperature=spec.temperature,
            default_threshold=read.unit("default_threshold"),
            heldout=heldout,
            trained_by=read.text("trained_by"),
            commit=read.text("commit"),
            created_at=read.timestamp("created_at"),
        )

    def model_spec(self) -> ModelSpec:
        """The model file's spec, as :class:`~pipeline.inference.model.OnnxModel` checks it."""
        return ModelSpec(
            name=self.name,
            version=self.version,
            file=self.model_file,
            sha256=self.files[self.model_file],
            input_name=self.input_name,
            input_shape=self.input_shape,
            input_dtype=self.input_dtype,
            output_name=self.output_name,
            labels=self.labels,
            temperature=self.temperature,
            heldout_accuracy=float(self.heldout["accuracy"]),
        )


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

# ---------------------------------------------------------------- making a bundle


def make_bundle(
    out_dir: Path,
    tier: str,
    model_file: Path,
    spec: ModelSpec,
    *,
    version: str,
    default_threshold: float,
    heldout: Mapping[str, float],
    trained_by: str,
    commit: str,
    signing_key: str,
    created_at: str | None = None,
) -> Path:
    """Write a signed bundle of ``model_file`` to ``out_dir/<tier>/<version>/``; its path.

    ``spec`` gives the model's name, input, output, labels and temperature (its
    ``version``, ``file`` and ``sha256`` are replaced by the bundle's). The model is
    loaded and checked against the manifest before anything is signed, and the folder
    appears complete or not at all. Raises :class:`BundleError` if the folder exists,
    a field is invalid, or the model does not match the spec.
    """
    target = Path(out_dir) / tier / version
    if target.exists():
        raise BundleError(f"{target} exists already; choose another --out or remove it")
    data = _read(Path(model_file))
    manifest = BundleManifest(
        name=spec.name,
        version=version,
        tier=tier,
        model_file=Path(model_file).name,
        files={Path(model_file).name: hashlib.sha256(data).hexdigest()},
        input_name=spec.input_name,
        input_shape=spec.input_shape,
        input_dtype=spec.input_dtype,
        output_name=spec.output_name,
        labels=spec.labels,
        temperature=spec.temperature,
        default_threshold=default_threshold,
        heldout=dict(heldout),
        trained_by=trained_by,
        commit=commit,
        created_at=created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    text = manifest.to_json()
    # One code path decides what a valid bundle is: the one that reads them.
    checked = BundleManifest.from_json(text, where=f"{target / MANIFEST_FILE}")
    _load_model(checked, data, Path(model_file), intra_op_threads=1)
    signature = sign(text, signing_key)
    write_folder(target, {checked.model_file: data, MANIFEST_FILE: text, SIGNATURE_FILE: signature})
    return target


def write_folder(target: Path, files: Mapping[str, bytes]) -> None:
    """Make folder ``target`` hold exactly ``files``, atomically, replacing an older copy.

    The files go to a temp folder next to ``target`` that is renamed into place, so a
    reader (or a crash) never sees a half-written bundle.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if target.exists():
            # rename() cannot replace a non-empty folder: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            target.rename(old / target.name)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---------------------------------------------------------------- reading a bundle


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle that passed every check of :func:`load_bundle`.

    ``signer`` is the trusted public key (hex) that verified it.
    """

    path: Path
    manifest: BundleManifest
    signer: str
    _model: OnnxModel = field(repr=False)

    def load_model(self) -> OnnxModel:
        """The bundle's model, ready to serve.

        It was built during verification from the very bytes whose SHA-256 was
        checked, so no file can change between the check and the load.
        """
        return self._model


def load_bundle(
    path: Path,
    trusted_public_keys: Sequence[str],
    *,
    tier: str | None = None,
    version: str | None = None,
    intra_op_threads: int = 1,
) -> VerifiedBundle:
    """Verify the bundle in folder ``path`` and load its model.

    Checks, in order: the signature of ``bundle.json`` against any one of
    ``trusted_public_keys``; the manifest's fields; ``tier`` and ``version`` if given
    (so a validly signed but different bundle cannot stand in for the one asked for);
    every listed file's SHA-256; the ONNX file's input and output. Raises
    :class:`BundleError` at the first failure. Blocking (file reads, onnxruntime):
    call it from a thread in async code.
    """
    folder = Path(path)
    manifest_bytes = _read(folder / MANIFEST_FILE)
    signature = _read(folder / SIGNATURE_FILE)
    where = str(folder / MANIFEST_FILE)
    signer = verify(manifest_bytes, signature, trusted_public_keys, where=where)
    manifest = BundleManifest.from_json(manifest_bytes, where=where)
    _expect(manifest, tier, version, where)
    contents = _checked_files(folder, manifest)
    model = _load_model(
        manifest,
        contents[manifest.model_file],
        folder / manifest.model_file,
        intra_op_threads=intra_op_threads,
    )
    return VerifiedBundle(path=folder, manifest=manifest, signer=signer, _model=model)


def read_unverified(path: Path) -> tuple[BundleManifest, dict[str, bytes]]:
    """A bundle's manifest and the bytes of all its files, WITHOUT checking the signature.

    For moving a bundle around (publishing it): checks that ``bundle.json`` is valid,
    ``bundle.sig`` has the size of a signature, and every listed file is there with
    its SHA-256. The returned mapping includes ``bundle.json`` and ``bundle.sig``.
    Never serve a model from this; use :func:`load_bundle`.
    """
    folder = Path(path)
    manifest_bytes = _read(folder / MANIFEST_FILE)
    signature = _read(folder / SIGNATURE_FILE)
    if len(signature) != _SIGNATURE_BYTES:
        raise BundleError(
            f"{folder / SIGNATURE_FILE}: {len(signature)} bytes, an Ed25519 signature is "
            f"{_SIGNATURE_BYTES}; re-sign the bundle"
        )
    manifest = BundleManifest.from_json(manifest_bytes, where=str(folder / MANIFEST_FILE))
    contents = _checked_files(folder, manifest)
    return manifest, {MANIFEST_FILE: manifest_bytes, SIGNATURE_FILE: signature, **contents}


def _expect(manifest: BundleManifest, tier: str | None, version: str | None, where: str) -> None:
    for key, wanted, got in (("tier", tier, manifest.tier), ("version", version, manifest.version)):
        if wanted is not None and wanted != got:
            raise BundleError(
                f"{where}: {key} is {got!r} but {wanted!r} was asked for; the bundle was stored "
                "under the wrong name, republish it"
            )


def _checked_files(folder: Path, manifest: BundleManifest) -> dict[str, bytes]:
    contents = {}
    for name, expected in manifest.files.items():
        data = _read(folder / name)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleError(
                f"{folder / name}: SHA-256 is {actual[:_HASH_CHARS]}..., {MANIFEST_FILE} says "
                f"{expected[:_HASH_CHARS]}...; the file was changed or damaged, fetch the "
                "bundle again"
            )
        contents[name] = data
    return contents


def _load_model(
    manifest: BundleManifest, data: bytes, path: Path, *, intra_op_threads: int
) -> OnnxModel:
    try:
        return OnnxModel.from_bytes(
            manifest.model_spec(), data, path, intra_op_threads=intra_op_threads
        )
    except BundleError:
        raise
    except ModelError as exc:
        raise BundleError(
            f"{exc}; fix {MANIFEST_FILE} or the model and rebuild the bundle"
        ) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(
            f"{path}: missing; the bundle is incomplete, fetch or rebuild it"
        ) from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc}") from exc
