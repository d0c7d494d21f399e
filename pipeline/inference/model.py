"""The [N, features] classifiers of ``models/manifest.json``: spec, verified loading, inference.

A model is only ever loaded through its manifest declaration
(pipeline/inference/declaration.py): the file's SHA-256, input and output must match
what it declares, so a worker never silently serves a stale or corrupt file.
``python -m models.build`` writes both the files and the manifest. The session itself is
shared with the embedding model (pipeline/inference/session.py); what is the
classifiers' own is the spec (task ``classify`` with decoder ``probabilities`` over
features: preprocess ``digits8x8``, or the output of the ``input_from`` model), the
check of the file's input and output, and temperature scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort

from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.digits import N_FEATURES
from pipeline.inference.manifest import (
    DEFAULT_MANIFEST,
    MANIFEST_SCHEMA,
    display_path,
    load_declaration,
)
from pipeline.inference.session import (
    Signature,
    VerifiedModel,
    check_digest,
    read_verified,
    tensor_name,
)
from schemas.errors import ModelError

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_SCHEMA",
    "ModelSpec",
    "OnnxModel",
    "apply_temperature",
    "feature_width",
    "load_spec",
]

_ORT_TYPES: Final = {"float32": "tensor(float)"}
# Smallest normal float32: a probability of exactly 0 stays the least likely class
# under temperature scaling instead of producing log(0) = -inf and NaNs.
_PROBA_FLOOR: Final = float(np.finfo(np.float32).tiny)
_FEATURES: Final = "digits8x8"


def feature_width(declaration: ModelDeclaration, where: str) -> int:
    """The number of features per row a [N, features] model takes: ``input_from.width``
    for a model fed by another, else the ``digits8x8`` preprocessor's 64; ModelError
    for a model whose input is an image."""
    if declaration.input_from is not None:
        return declaration.input_from.width
    if declaration.input.preprocess != _FEATURES:
        raise ModelError(
            f"{where}: input.preprocess is {declaration.input.preprocess!r}; a [N, features] "
            f"model takes {_FEATURES!r} or declares input_from"
        )
    return N_FEATURES


@dataclass(frozen=True)
class ModelSpec:
    """A classifier's declaration with what only its file tells: the label of each output
    column and the input and output tensors' names (the declared ones, or the file's
    first where the declaration says "")."""

    declaration: ModelDeclaration
    labels: tuple[str, ...]
    input_name: str
    output_name: str

    @classmethod
    def of(
        cls,
        declaration: ModelDeclaration,
        labels: tuple[str, ...],
        *,
        input_name: str = "",
        output_name: str = "",
        where: str = "model declaration",
    ) -> ModelSpec:
        """The spec, or ModelError (prefixed by ``where``) if ``declaration`` is not an
        [N, features] classifier whose output is probabilities."""
        kind = (declaration.task, declaration.decoder.type)
        if kind != ("classify", "probabilities"):
            raise ModelError(
                f"{where}: task {kind[0]!r} with decoder {kind[1]!r}; a [N, features] "
                "classifier declares task 'classify' and decoder 'probabilities'"
            )
        feature_width(declaration, where)
        names = (input_name or declaration.input.name, output_name or _output(declaration))
        return cls(declaration, labels, *names)

    @property
    def name(self) -> str:
        """Model name, e.g. ``digits-mlp32``."""
        return self.declaration.name

    @property
    def version(self) -> str:
        """Model version, e.g. ``1.0.0``."""
        return self.declaration.version

    @property
    def file(self) -> str:
        """The model file, relative to the manifest's folder."""
        return self.declaration.file

    @property
    def sha256(self) -> str:
        """The file's SHA-256 (hex)."""
        return self.declaration.sha256

    @property
    def input_dtype(self) -> str:
        """The input tensor's element type, e.g. ``float32``."""
        return self.declaration.input.dtype

    @property
    def n_features(self) -> int:
        """Number of input columns per row."""
        return feature_width(self.declaration, self.name)

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """[None (any batch), n_features]."""
        return (None, self.n_features)

    @property
    def n_classes(self) -> int:
        """Number of classes, i.e. columns of the probability output."""
        return len(self.labels)

    @property
    def temperature(self) -> float:
        """The temperature that scales the model's log-probabilities (1.0: uncalibrated)."""
        return float(self.declaration.decoder.params.temperature)

    @property
    def heldout_accuracy(self) -> float | None:
        """The build's accuracy on the held-out split, if recorded."""
        return self.declaration.heldout_accuracy

    @property
    def signature(self) -> Signature:
        """What the session is run by: [N, n_features] in, [N, n_classes] out."""
        return Signature(
            self.input_name, self.input_dtype, self.n_features, self.output_name, self.n_classes
        )


def _output(declaration: ModelDeclaration) -> str:
    output: str = declaration.decoder.params.output
    return output


def load_spec(role: str, manifest: Path | None = None) -> ModelSpec:
    """The spec of the classifier serving ``role`` (e.g. "edge") in ``manifest``, without
    loading its file: its labels must be declared in the entry or a labels file.

    ``manifest`` defaults to :data:`DEFAULT_MANIFEST`. Raises :class:`ModelError` for an
    unreadable manifest, an unknown role (listing the roles present) or a bad entry.
    """
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    declaration, where = load_declaration(role, path)
    labels = declaration.resolve_labels(path.parent, {}, where)
    return ModelSpec.of(declaration, labels, where=where)


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scale probabilities: softmax(log(p) / T), row-wise, as float32.

    T > 1 softens, T < 1 sharpens; T == 1 returns the input unchanged.
    """
    if temperature == 1.0:
        return proba
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise ModelError(f"temperature must be a finite number > 0, got {temperature}")
    logits = np.log(np.maximum(proba.astype(np.float64), _PROBA_FLOOR)) / temperature
    # Shifting by the row maximum keeps exp() from overflowing; it cancels in the ratio.
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return np.asarray(weights / weights.sum(axis=1, keepdims=True), dtype=np.float32)


def _dims_match(expected: Sequence[int | None], actual: Sequence[object]) -> bool:
    """Manifest dims against the file's: None matches any symbolic dim, ints must be equal."""
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual, strict=True):
        if want is None:
            if isinstance(got, int):  # a fixed batch size would reject other batch sizes
                return False
        elif got != want:
            return False
    return True


class OnnxModel(VerifiedModel[ModelSpec]):
    """One verified ONNX classifier of [N, features] rows, on its declared providers.

    Create with :meth:`load`. :meth:`predict_proba` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so workers call it from an executor.
    """

    @classmethod
    def load(
        cls, role: str, manifest: Path | None = None, *, intra_op_threads: int | None = None
    ) -> OnnxModel:
        """Load the model for ``role`` from ``manifest`` (default :data:`DEFAULT_MANIFEST`).

        The file is resolved relative to the manifest's folder and must have the
        declared SHA-256, input and output; otherwise :class:`ModelError` says what
        differs and how to fix it. ``intra_op_threads``, if given, replaces the entry's
        ``runtime.intra_op_threads``.
        """
        manifest_path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
        declaration, where = load_declaration(role, manifest_path)
        path = manifest_path.parent / declaration.file
        data = read_verified(path, declaration.sha256)
        return cls._open(declaration, data, path, where, intra_op_threads)

    @classmethod
    def from_bytes(
        cls,
        declaration: ModelDeclaration,
        data: bytes,
        path: Path,
        *,
        intra_op_threads: int | None = None,
    ) -> OnnxModel:
        """Load ONNX ``data`` that ``declaration`` describes (e.g. a model bundle's file).

        ``path`` is where the bytes came from, for messages and :attr:`path` (a labels
        file is looked for next to it). The bytes must have ``declaration.sha256`` and
        the declared input and output; otherwise :class:`ModelError` says what differs.
        """
        where = display_path(path)
        check_digest(data, declaration.sha256, where, "")
        return cls._open(declaration, data, path, where, intra_op_threads)

    @staticmethod
    def _spec_of(
        declaration: ModelDeclaration, session: ort.InferenceSession, path: Path, where: str
    ) -> ModelSpec:
        """The classifier's spec: labels resolved (from the file's metadata if declared so)."""
        metadata = session.get_modelmeta().custom_metadata_map
        labels = declaration.resolve_labels(path.parent, metadata, where)
        return ModelSpec.of(
            declaration,
            labels,
            input_name=tensor_name(declaration.input.name, session.get_inputs()),
            output_name=tensor_name(_output(declaration), session.get_outputs()),
            where=where,
        )

    @staticmethod
    def _check_session(session: ort.InferenceSession, spec: ModelSpec, where: str) -> None:
        """ModelError if the file's input or output differs from what the manifest says."""
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelError(f"{where}: expected one input, the file has {names}")
        got = inputs[0]
        want_type = _ORT_TYPES.get(spec.input_dtype)
        if got.name != spec.input_name:
            raise ModelError(
                f"{where}: input is named {got.name!r} in the file, "
                f"manifest says {spec.input_name!r}"
            )
        if not _dims_match(spec.input_shape, got.shape) or got.type != want_type:
            raise ModelError(
                f"{where}: input {got.name!r} is {got.type} {got.shape} in the file, manifest says "
                f"{spec.input_dtype} {list(spec.input_shape)}"
            )
        outputs = {o.name: o for o in session.get_outputs()}
        output = outputs.get(spec.output_name)
        if output is None:
            raise ModelError(
                f"{where}: no output {spec.output_name!r} in the file; "
                f"outputs are {sorted(outputs)}"
            )
        if not _dims_match((None, spec.n_classes), output.shape) or output.type != "tensor(float)":
            raise ModelError(
                f"{where}: output {output.name!r} is {output.type} {output.shape} in the file, "
                f"expected float32 [None, {spec.n_classes}] ({spec.n_classes} labels)"
            )

    @property
    def name(self) -> str:
        """Model name, e.g. ``digits-mlp32``."""
        return self._spec.name

    @property
    def version(self) -> str:
        """Model version, e.g. ``1.0.0``."""
        return self._spec.version

    @property
    def n_classes(self) -> int:
        """Number of probability columns."""
        return self._spec.n_classes

    @property
    def declaration(self) -> ModelDeclaration:
        """The manifest declaration this model was verified against."""
        return self._spec.declaration

    @property
    def label_names(self) -> tuple[str, ...]:
        """The name of each probability column (the declaration's labels)."""
        return self._spec.labels

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch: float32 [N, n_classes], rows sum to 1.

        ``features`` must be float32 [N, n_features] (for ``digits8x8``, see
        :func:`pipeline.inference.digits.pixels_to_features`). The declared temperature
        (``decoder.temperature``) is applied. N == 0 returns an empty array without
        running the session.
        """
        return apply_temperature(self._run(features), self._spec.temperature)

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version!r}, path={str(self._path)!r})"
