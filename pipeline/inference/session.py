"""One verified ONNX file in an onnxruntime session: what every [N, features] model shares.

The file's bytes are read once and checked against the SHA-256 its manifest entry
names, and the session is made from those very bytes (on the providers its entry's
``runtime`` asks for, pipeline/inference/providers.py), so the file cannot change
between check and load. ``run`` checks a batch of features, runs the session and
checks the output's shape; onnxruntime allows concurrent ``run`` calls on one session,
so workers call it from an executor. ``VerifiedModel`` is the base of the classifiers
(pipeline/inference/model.py) and the embedding (pipeline/inference/embedding.py).
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, Protocol, Self, TypeVar

import numpy as np
import onnxruntime as ort

from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.manifest import display_path
from pipeline.inference.providers import session_for, with_threads
from schemas.errors import ModelError

__all__ = [
    "REBUILD_HINT",
    "Signature",
    "VerifiedModel",
    "check_digest",
    "read_model_file",
    "read_verified",
    "run",
    "tensor_name",
]

REBUILD_HINT: Final = "rebuild with `python -m models.build` or restore the file"
_HASH_CHARS: Final = 12


@dataclass(frozen=True, slots=True)
class Signature:
    """The one input and output a session is run by: ``input_dtype`` [N, width] in,
    float32 [N, columns] out."""

    input_name: str
    input_dtype: str
    width: int
    output_name: str
    columns: int


def read_model_file(path: Path, where: str) -> bytes:
    """The file's bytes, or ModelError saying how to get it back."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{where}: model file is missing; {REBUILD_HINT}") from None
    except OSError as exc:
        raise ModelError(f"{where}: cannot read model file: {exc}") from exc


def read_verified(path: Path, sha256: str) -> bytes:
    """The bytes of the model file at ``path``, checked against the manifest's SHA-256."""
    where = display_path(path)
    data = read_model_file(path, where)
    check_digest(data, sha256, where, f"; {REBUILD_HINT}")
    return data


def tensor_name(declared: str, tensors: list[ort.NodeArg]) -> str:
    """The declared tensor name; "" means the file's first (its only, for an input)."""
    return declared or (tensors[0].name if tensors else "")


def check_digest(data: bytes, sha256: str, where: str, hint: str) -> None:
    """ModelError (ending in ``hint``) unless ``data`` has the manifest's SHA-256."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelError(
            f"{where}: SHA-256 is {digest[:_HASH_CHARS]}..., manifest says "
            f"{sha256[:_HASH_CHARS]}...{hint}"
        )


def _check_batch(features: np.ndarray, dtype: str, width: int, name: str) -> np.ndarray:
    """The batch as a contiguous array, or ModelError saying what was given."""
    if not isinstance(features, np.ndarray):
        raise ModelError(f"{name}: features must be a numpy array, got {type(features).__name__}")
    if features.dtype != np.dtype(dtype) or features.ndim != 2 or features.shape[1] != width:
        raise ModelError(
            f"{name}: features must be {dtype} [N, {width}], got "
            f"{features.dtype} {list(features.shape)}"
        )
    if not np.isfinite(features).all():
        raise ModelError(f"{name}: features contain NaN or infinity")
    return np.ascontiguousarray(features)


def run(
    session: ort.InferenceSession,
    signature: Signature,
    features: np.ndarray,
    *,
    name: str,
    version: str,
) -> np.ndarray:
    """The output for a batch of ``features``, as ``signature`` says; ModelError names the
    model when the batch or the output is wrong or the run fails. N == 0 returns an
    empty array without running the session."""
    sig = signature
    batch = _check_batch(features, sig.input_dtype, sig.width, name)
    if batch.shape[0] == 0:
        return np.empty((0, sig.columns), dtype=np.float32)
    try:
        (output,) = session.run([sig.output_name], {sig.input_name: batch})
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ModelError(f"{name} {version}: inference failed: {exc}") from exc
    result = np.asarray(output, dtype=np.float32)
    if result.shape != (batch.shape[0], sig.columns):
        raise ModelError(
            f"{name} {version}: output shape {list(result.shape)}, expected "
            f"[{batch.shape[0]}, {sig.columns}]"
        )
    return result


class _Spec(Protocol):
    """What a manifest entry says that every model needs."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def signature(self) -> Signature: ...


S = TypeVar("S", bound=_Spec)


class VerifiedModel(abc.ABC, Generic[S]):
    """A model file verified against its manifest declaration, in a session of its own.

    Subclasses say what their ``spec`` is (``_spec_of``: the declaration with what only
    the file can tell, e.g. labels from its metadata) and what the file's input and
    output must be (``_check_session``).
    """

    def __init__(self, spec: S, session: ort.InferenceSession, path: Path) -> None:
        """Wrap an already verified session; use the subclass's ``load`` instead."""
        self._spec = spec
        self._session = session
        self._path = path

    @classmethod
    def _open(
        cls,
        declaration: ModelDeclaration,
        data: bytes,
        path: Path,
        where: str,
        intra_op_threads: int | None,
    ) -> Self:
        """The model over ``data`` (already checked against its digest), from ``path``.

        ``where`` names the entry; ``intra_op_threads``, if given, replaces the entry's
        (a worker's setting).
        """
        shown = display_path(path)
        runtime = with_threads(declaration.runtime, intra_op_threads)
        session = session_for(data, runtime, shown)
        spec = cls._spec_of(declaration, session, path, where)
        cls._check_session(session, spec, shown)
        return cls(spec, session, path)

    @staticmethod
    @abc.abstractmethod
    def _spec_of(
        declaration: ModelDeclaration, session: ort.InferenceSession, path: Path, where: str
    ) -> S:
        """The spec of ``declaration``'s model in ``session`` (loaded from ``path``);
        ModelError, prefixed by ``where``, if the declaration does not suit the class."""

    @staticmethod
    @abc.abstractmethod
    def _check_session(session: ort.InferenceSession, spec: S, where: str) -> None:
        """ModelError if the file's input or output differs from what ``spec`` says."""

    @property
    def spec(self) -> S:
        """What this model was verified against."""
        return self._spec

    @property
    def path(self) -> Path:
        """The .onnx file this model was loaded from."""
        return self._path

    def _run(self, features: np.ndarray) -> np.ndarray:
        """The session's output for ``features``, as the spec's signature says."""
        spec = self._spec
        return run(self._session, spec.signature, features, name=spec.name, version=spec.version)
