"""Load the ONNX models named in ``models/manifest.json``, verify them, and run them.

A model is only ever loaded through its manifest entry: the file's SHA-256, input
name and shape must match what the manifest says, so a worker never silently serves
a stale or corrupt file. ``python -m models.build`` writes both the files and the
manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np
import onnxruntime as ort

import models
from schemas.errors import ConfigError, ModelError

__all__ = [
    "DEFAULT_MANIFEST",
    "MANIFEST_SCHEMA",
    "ModelSpec",
    "OnnxModel",
    "apply_temperature",
    "load_spec",
]

# Resolved through the package, not the working directory, so it finds the files both
# in a source checkout installed with ``pip install -e .`` and in a regular install.
DEFAULT_MANIFEST: Final[Path] = Path(models.__file__).resolve().parent / "manifest.json"
MANIFEST_SCHEMA: Final = 1

_REBUILD_HINT: Final = "rebuild with `python -m models.build` or restore the file"
_ORT_TYPES: Final = {"float32": "tensor(float)"}
_NUMPY_TYPES: Final = {"float32": np.dtype(np.float32)}
# Smallest normal float32: a probability of exactly 0 stays the least likely class
# under temperature scaling instead of producing log(0) = -inf and NaNs.
_PROBA_FLOOR: Final = float(np.finfo(np.float32).tiny)
_HASH_CHARS: Final = 12


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
            name=fields.text("name"),
            version=fields.text("version"),
            file=fields.relative_file("file"),
            sha256=fields.sha256("sha256"),
            input_name=fields.text("input.name"),
            input_shape=fields.input_shape("input.shape"),
            input_dtype=fields.choice("input.dtype", tuple(_ORT_TYPES)),
            output_name=fields.text("output.name"),
            labels=tuple(labels),
            temperature=fields.number("temperature", low=0.0, low_open=True),
            heldout_accuracy=fields.number("heldout_accuracy", low=0.0, high=1.0),
        )


class EntryReader:
    """Typed access to dotted keys of a manifest entry, with errors that name the key."""

    def __init__(self, entry: Mapping[str, Any], where: str) -> None:
        self._entry = entry
        self._where = where

    def fail(self, key: str, problem: str) -> NoReturn:
        """Raise ModelError about ``key``."""
        raise ModelError(f"{self._where}: key {key!r} {problem}")

    def get(self, key: str) -> Any:
        """The value at a dotted key; ModelError if any part of the path is missing."""
        node: Any = self._entry
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                self.fail(key, "is missing")
            node = node[part]
        return node

    def text(self, key: str) -> str:
        """A non-empty string."""
        value = self.get(key)
        if not isinstance(value, str) or not value:
            self.fail(key, f"must be a non-empty string, got {value!r}")
        return str(value)

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        """A string from ``allowed``."""
        value = self.text(key)
        if value not in allowed:
            self.fail(key, f"is {value!r}, supported: {list(allowed)}")
        return value

    def sha256(self, key: str) -> str:
        """A lowercase hex SHA-256 digest."""
        value = self.text(key).lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            self.fail(key, f"is not a hex SHA-256 digest: {value!r}")
        return value

    def relative_file(self, key: str) -> str:
        """A file name relative to the manifest's folder (never absolute)."""
        value = self.text(key)
        if Path(value).is_absolute():
            self.fail(key, f"must be relative to the manifest's folder, got {value!r}")
        return value

    def integer(self, key: str) -> int:
        """An int (JSON booleans are not integers here)."""
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, got {value!r}")
        return int(value)

    def int_list(self, key: str) -> list[int]:
        """A non-empty list of ints."""
        value = self.get(key)
        ok = isinstance(value, list) and value and all(_is_int(v) for v in value)
        if not ok:
            self.fail(key, f"must be a non-empty list of integers, got {value!r}")
        return [int(v) for v in value]

    def number(
        self, key: str, *, low: float, high: float = math.inf, low_open: bool = False
    ) -> float:
        """A finite number within [low, high] (or (low, high] with ``low_open``)."""
        value = self.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(key, f"must be a number, got {value!r}")
        number = float(value)
        too_low = number <= low if low_open else number < low
        if not math.isfinite(number) or too_low or number > high:
            bracket = "(" if low_open else "["
            self.fail(key, f"is {number}, must be in {bracket}{low}, {high}]")
        return number

    def input_shape(self, key: str) -> tuple[int | None, ...]:
        """[null, n]: any batch size, a fixed positive number of features."""
        value = self.get(key)
        ok = (
            isinstance(value, list)
            and len(value) == 2
            and value[0] is None
            and _is_int(value[1])
            and value[1] > 0
        )
        if not ok:
            self.fail(key, f"must be [null, <features>], got {value!r}")
        return (None, int(value[1]))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _display(path: Path) -> str:
    """A path as short as is unambiguous: relative to the working directory if inside it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except (OSError, ValueError):
        return str(path)


def _read_manifest(manifest: Path) -> Mapping[str, Any]:
    """The parsed manifest, checked for its schema version and a ``models`` mapping."""
    where = _display(manifest)
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{where}: manifest not found; build it with `python -m models.build`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{where}: cannot read manifest: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ModelError(f"{where}: manifest must be a JSON object")
    if document.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(
            f"{where}: key 'schema' is {document.get('schema')!r}, this code reads "
            f"{MANIFEST_SCHEMA}"
        )
    roles = document.get("models")
    if not isinstance(roles, Mapping):
        raise ModelError(f"{where}: key 'models' is missing or not an object")
    return roles


def load_spec(role: str, manifest: Path | None = None) -> ModelSpec:
    """The spec of the model serving ``role`` ("edge" or "cloud") in ``manifest``.

    ``manifest`` defaults to :data:`DEFAULT_MANIFEST`. Raises :class:`ModelError` for an
    unreadable manifest, an unknown role (listing the roles present) or a bad entry.
    """
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    roles = _read_manifest(path)
    if role not in roles:
        raise ModelError(
            f"{_display(path)}: no model for role {role!r}; roles present: {sorted(roles)}"
        )
    entry = roles[role]
    where = f"{_display(path)}: models.{role}"
    if not isinstance(entry, Mapping):
        raise ModelError(f"{where}: must be a JSON object")
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


def _sha256_file(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int):
        raise ConfigError(f"intra_op_threads must be an integer >= 1, got {intra_op_threads!r}")
    if intra_op_threads < 1:
        raise ConfigError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Workers parallelise across requests with their own executor; one inter-op thread
    # per session keeps the number of OS threads predictable.
    options.inter_op_num_threads = 1
    return options


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
            f"{where}: input is named {got.name!r} in the file, manifest says {spec.input_name!r}"
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
            f"{where}: no output {spec.output_name!r} in the file; outputs are {sorted(outputs)}"
        )
    if not _dims_match((None, spec.n_classes), output.shape) or output.type != "tensor(float)":
        raise ModelError(
            f"{where}: output {output.name!r} is {output.type} {output.shape} in the file, "
            f"expected float32 [None, {spec.n_classes}]"
        )


class OnnxModel:
    """One verified ONNX classifier on onnxruntime's CPU provider.

    Create with :meth:`load`. :meth:`predict_proba` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so workers call it from an executor.
    """

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession, path: Path) -> None:
        """Wrap an already verified session; use :meth:`load` instead."""
        self._spec = spec
        self._session = session
        self._path = path
        self._dtype = _NUMPY_TYPES[spec.input_dtype]

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
        where = _display(path)
        data = _read_model_bytes(path, where)
        _check_digest(data, spec, where, f"; {_REBUILD_HINT}")
        return cls._from_checked_bytes(spec, data, path, intra_op_threads)

    @classmethod
    def from_bytes(
        cls, spec: ModelSpec, data: bytes, path: Path, *, intra_op_threads: int = 1
    ) -> OnnxModel:
        """Load ONNX ``data`` described by ``spec`` (e.g. a model bundle's file).

        ``path`` is where the bytes came from, for messages and :attr:`path`. The bytes
        must have ``spec.sha256`` and the spec's input name, dtype and shape and output;
        otherwise :class:`ModelError` says what differs.
        """
        _check_digest(data, spec, _display(path), "")
        return cls._from_checked_bytes(spec, data, path, intra_op_threads)

    @classmethod
    def _from_checked_bytes(
        cls, spec: ModelSpec, data: bytes, path: Path, intra_op_threads: int
    ) -> OnnxModel:
        where = _display(path)
        options = _session_options(intra_op_threads)
        try:
            # From the bytes just hashed, so the file cannot change between check and load.
            session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelError(f"{where}: onnxruntime cannot load it: {exc}") from exc
        _check_session(session, spec, where)
        return cls(spec, session, path)

    @property
    def spec(self) -> ModelSpec:
        """The manifest entry this model was verified against."""
        return self._spec

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
    def path(self) -> Path:
        """The .onnx file this model was loaded from."""
        return self._path

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch: float32 [N, n_classes], rows sum to 1.

        ``features`` must be float32 [N, 64] (see
        :func:`pipeline.inference.digits.pixels_to_features`).
        The manifest's temperature is applied. N == 0 returns an empty array without
        running the session.
        """
        batch = self._check_features(features)
        if batch.shape[0] == 0:
            return np.empty((0, self.n_classes), dtype=np.float32)
        try:
            (proba,) = self._session.run([self._spec.output_name], {self._spec.input_name: batch})
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelError(f"{self.name} {self.version}: inference failed: {exc}") from exc
        result = np.asarray(proba, dtype=np.float32)
        if result.shape != (batch.shape[0], self.n_classes):
            raise ModelError(
                f"{self.name} {self.version}: output shape {list(result.shape)}, expected "
                f"[{batch.shape[0]}, {self.n_classes}]"
            )
        return apply_temperature(result, self._spec.temperature)

    def _check_features(self, features: np.ndarray) -> np.ndarray:
        """The batch as a contiguous array, or ModelError saying what was given."""
        width = self._spec.n_features
        if not isinstance(features, np.ndarray):
            raise ModelError(
                f"{self.name}: features must be a numpy array, got {type(features).__name__}"
            )
        if features.dtype != self._dtype or features.ndim != 2 or features.shape[1] != width:
            raise ModelError(
                f"{self.name}: features must be {self._spec.input_dtype} [N, {width}], got "
                f"{features.dtype} {list(features.shape)}"
            )
        if not np.isfinite(features).all():
            raise ModelError(f"{self.name}: features contain NaN or infinity")
        return np.ascontiguousarray(features)

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, version={self.version!r}, path={str(self._path)!r})"


def _check_digest(data: bytes, spec: ModelSpec, where: str, hint: str) -> None:
    digest = _sha256_file(data)
    if digest != spec.sha256:
        raise ModelError(
            f"{where}: SHA-256 is {digest[:_HASH_CHARS]}..., manifest says "
            f"{spec.sha256[:_HASH_CHARS]}...{hint}"
        )


def _read_model_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{where}: model file is missing; {_REBUILD_HINT}") from None
    except OSError as exc:
        raise ModelError(f"{where}: cannot read model file: {exc}") from exc
