"""Signed, versioned model bundles: make them, and refuse any that is not right.

A bundle is a folder (docs/model-bundles.md): ``bundle.json`` (pipeline/release/manifest.py)
describes the model and lists every file with its SHA-256, ``bundle.sig`` is an Ed25519
signature over the exact bytes of ``bundle.json`` (pipeline/release/signing.py), and the
ONNX file(s) sit next to them. A worker trusts a bundle only through :func:`load_bundle`,
which checks, in this order: the signature against the trusted public keys (before
reading anything the manifest says), each file's SHA-256, and that the ONNX file's
input and output are what the manifest promises. Every refusal is a
:class:`BundleError` that says what to fix.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.model import OnnxModel
from pipeline.release.manifest import MANIFEST_FILE, SIGNATURE_FILE, BundleManifest
from pipeline.release.signing import SIGNATURE_BYTES, sign, verify
from schemas.errors import BundleError, ModelError

__all__ = [
    "VerifiedBundle",
    "load_bundle",
    "make_bundle",
    "read_unverified",
    "write_folder",
]

# How much of a SHA-256 names it in a message.
_HASH_CHARS: Final = 12


# ---------------------------------------------------------------- making a bundle


def make_bundle(
    out_dir: Path,
    tier: str,
    model_file: Path,
    declaration: ModelDeclaration,
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

    ``declaration`` is the model's manifest entry (its ``version``, ``file``, ``sha256``
    and ``heldout_accuracy`` are replaced by the bundle's); a labels file it declares is
    taken from next to ``model_file`` into the bundle. The model is loaded and checked
    against the declaration before anything is signed, and the folder appears complete
    or not at all. Raises :class:`BundleError` if the folder exists, a field is invalid,
    or the model does not match its declaration.
    """
    target = Path(out_dir) / tier / version
    if target.exists():
        raise BundleError(f"{target} exists already; choose another --out or remove it")
    data = _read(Path(model_file))
    name = Path(model_file).name
    digest = hashlib.sha256(data).hexdigest()
    contents = {name: data}
    labels = declaration.labels
    if labels is not None and labels.file:
        contents[labels.file] = _read(Path(model_file).parent / labels.file)
    model = replace(
        declaration,
        version=version,
        file=name,
        sha256=digest,
        heldout_accuracy=heldout.get("accuracy", declaration.heldout_accuracy),
    )
    manifest = BundleManifest(
        model=model,
        tier=tier,
        files={file: hashlib.sha256(content).hexdigest() for file, content in contents.items()},
        default_threshold=default_threshold,
        heldout=dict(heldout),
        trained_by=trained_by,
        commit=commit,
        created_at=created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    text = manifest.to_json()
    # One code path decides what a valid bundle is: the one that reads them.
    checked = BundleManifest.from_json(text, where=f"{target / MANIFEST_FILE}")
    _load_model(checked, data, Path(model_file), intra_op_threads=None)
    signature = sign(text, signing_key)
    write_folder(target, {**contents, MANIFEST_FILE: text, SIGNATURE_FILE: signature})
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
    intra_op_threads: int | None = None,
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
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(
            f"{folder / SIGNATURE_FILE}: {len(signature)} bytes, an Ed25519 signature is "
            f"{SIGNATURE_BYTES}; re-sign the bundle"
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
    manifest: BundleManifest, data: bytes, path: Path, *, intra_op_threads: int | None
) -> OnnxModel:
    try:
        return OnnxModel.from_bytes(manifest.model, data, path, intra_op_threads=intra_op_threads)
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
