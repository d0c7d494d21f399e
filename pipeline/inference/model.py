"""The classifiers named in ``models/manifest.json``: their spec, verified loading, inference.

A model is only ever loaded through its manifest entry (pipeline/inference/manifest.py):
the file's SHA-256, input name and shape must match what the manifest says, so a
worker never silently serves a stale or corrupt file. ``python -m models.build``
writes both the files and the manifest. The session itself is shared with the
embedding model (pipeline/inference/session.py); what is the classifiers' own is the
spec, the check of the file's input and output, and temperature scaling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from pipeline.inference.manifest import (
    DEFAULT_MANIFEST,
    MANIFEST_SCHEMA,
    EntryReader,
    display_path,
    manifest_entry,
)
from pipeline.inference.session import Signature, VerifiedModel, check_digest, read_verified
from schemas.errors import ModelError

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_SCHEMA",
    "ModelSpec",
    "OnnxModel",
    "apply_temperature",
    "load_spec",
]

_ORT_TYPES: Final = {"float32": "tensor(float)"}
# Smallest normal float32: a probability of exactly 0 stays the least likely class
# under temperature scaling instead of producing log(0) = -inf and NaNs.
_PROBA_FLOOR: Final = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class ModelSpec:
    """What the manifest promises about one model file.

    ``file`` is relative to the manifest's folder. ``input_shape`` uses None for the
    batch dimension. ``temperature`` scales the model's log-probabilities (1.0 means
    uncalibrated); ``heldout_accuracy`` is the build's measurement on the held-out split.
    """

    name: str
    version: str
    file: str
    sha256: str
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_name: str
    labels: tuple[int, ...]
    temperature: float
    heldout_accuracy: float

    @property
    def n_classes(self) -> int:
        """Number of classes, i.e. columns of the probability output."""
        return len(self.labels)

    @property
    def n_features(self) -> int:
        """Number of input columns per row."""
        last = self.input_shape[-1]
        assert last is not None  # from_manifest guarantees a fixed feature dimension
        return last

    @property
    def signature(self) -> Signature:
        """What the session is run by: [N, n_features] in, [N, n_classes] out."""
        return Signature(
            self.input_name, self.input_dtype, self.n_features, self.output_name, self.n_classes
        )

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any], *, where: str = "manifest entry") -> ModelSpec:
        """Build a spec from one ``models.<role>`` entry of manifest.json.

        Raises :class:`ModelError` naming the missing or bad key, prefixed by ``where``.
        """
        fields = EntryReader(entry, where)
        labels = fields.int_list("labels")
        classes = fields.integer("output.classes")
        if classes != len(labels):
            fields.fail("output.classes", f"is {classes} but there are {len(labels)} labels")
        return cls(
            **fields.file_fields(),
            input_name=fields.text("input.name"),
            input_shape=(None, fields.width("input.shape", "features")),
            input_dtype=fields.choice("input.dtype", tuple(_ORT_TYPES)),
            output_name=fields.text("output.name"),
            labels=tuple(labels),
            temperature=fields.number("temperature", low=0.0, low_open=True),
            heldout_accuracy=fields.number("heldout_accuracy", low=0.0, high=1.0),
        )


def load_spec(role: str, manifest: Path | None = None) -> ModelSpec:
    """The spec of the model serving ``role`` ("edge" or "cloud") in ``manifest``.

    ``manifest`` defaults to :data:`DEFAULT_MANIFEST`. Raises :class:`ModelError` for an
    unreadable manifest, an unknown role (listing the roles present) or a bad entry.
    """
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    entry, where = manifest_entry(role, path)
    return ModelSpec.from_manifest(entry, where=where)


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
    """One verified ONNX classifier on onnxruntime's CPU provider.

    Create with :meth:`load`. :meth:`predict_proba` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so workers call it from an executor.
    """

    @classmethod
    def load(
        cls, role: str, manifest: Path | None = None, *, intra_op_threads: int = 1
    ) -> OnnxModel:
        """Load the model for ``role`` from ``manifest`` (default :data:`DEFAULT_MANIFEST`).

        The file is resolved relative to the manifest's folder and must have the
        manifest's SHA-256, input name, dtype and shape; otherwise :class:`ModelError`
        says what differs and how to fix it.
        """
        manifest_path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
        spec = load_spec(role, manifest_path)
        path = manifest_path.parent / spec.file
        return cls._open(spec, read_verified(path, spec.sha256), path, intra_op_threads)

    @classmethod
    def from_bytes(
        cls, spec: ModelSpec, data: bytes, path: Path, *, intra_op_threads: int = 1
    ) -> OnnxModel:
        """Load ONNX ``data`` described by ``spec`` (e.g. a model bundle's file).

        ``path`` is where the bytes came from, for messages and :attr:`path`. The bytes
        must have ``spec.sha256`` and the spec's input name, dtype and shape and output;
        otherwise :class:`ModelError` says what differs.
        """
        check_digest(data, spec.sha256, display_path(path), "")
        return cls._open(spec, data, path, intra_op_threads)

    @staticmethod
    def _check_session(session: ort.InferenceSession, spec: ModelSpec, where: str) -> None:
        """ModelError if the file's input or output differs from what the manifest says."""
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelError(f"{where}: expected one input, the file has {names}")
        got = inputs[0]
        want_type = _ORT_TYPES[spec.input_dtype]
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
                f"expected float32 [None, {spec.n_classes}]"
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

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch: float32 [N, n_classes], rows sum to 1.

        ``features`` must be float32 [N, 64] (see
        :func:`pipeline.inference.digits.pixels_to_features`).
        The manifest's temperature is applied. N == 0 returns an empty array without
        running the session.
        """
        return apply_temperature(self._run(features), self._spec.temperature)

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version!r}, path={str(self._path)!r})"
