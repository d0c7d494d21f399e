"""Load the site's embedding model from ``models/manifest.json``, verify it, run it.

The ``embed`` role maps a digit's 64 features to a short float32 embedding (PCA to
16 values in the shipped build) that the ``cloud-embed`` classifier takes as input,
so a site can send an embedding instead of the digit. An embedding keeps less than
the pixels but is a linear projection, not a privacy mechanism.

As for the classifiers in :mod:`pipeline.inference.model`, the file is only loaded through its
manifest entry: its SHA-256, input and output must match what the manifest says.
The ``cloud-embed`` classifier itself is an ordinary classifier entry and loads with
``OnnxModel.load("cloud-embed")``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from pipeline.inference.model import DEFAULT_MANIFEST, MANIFEST_SCHEMA
from schemas.errors import ConfigError, ModelError

__all__ = ["EMBED_ROLE", "EmbeddingModel", "EmbeddingSpec"]

EMBED_ROLE: Final = "embed"
_DTYPE: Final = "float32"
_ORT_FLOAT: Final = "tensor(float)"
_REBUILD_HINT: Final = "rebuild with `python -m models.build` or restore the file"


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """What the manifest promises about the embedding file.

    ``file`` is relative to the manifest's folder; input is float32 [N, n_features],
    output float32 [N, dim].
    """

    name: str
    version: str
    file: str
    sha256: str
    input_name: str
    n_features: int
    output_name: str
    dim: int

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any], *, where: str) -> EmbeddingSpec:
        """Build a spec from a ``models.embed`` entry; ModelError names the bad key."""

        def get(key: str) -> Any:
            node: Any = entry
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    raise ModelError(f"{where}: key {key!r} is missing")
                node = node[part]
            return node

        def text(key: str) -> str:
            value = get(key)
            if not isinstance(value, str) or not value:
                raise ModelError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
            return value

        def width(key: str) -> int:
            value = get(key)
            ok = (
                isinstance(value, list)
                and len(value) == 2
                and value[0] is None
                and isinstance(value[1], int)
                and not isinstance(value[1], bool)
                and value[1] > 0
            )
            if not ok:
                raise ModelError(f"{where}: key {key!r} must be [null, <width>], got {value!r}")
            return int(value[1])

        for key in ("input.dtype", "output.dtype"):
            if text(key) != _DTYPE:
                raise ModelError(f"{where}: key {key!r} is {get(key)!r}, supported: [{_DTYPE!r}]")
        sha256 = text("sha256").lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ModelError(f"{where}: key 'sha256' is not a hex SHA-256 digest: {sha256!r}")
        file = text("file")
        if Path(file).is_absolute():
            raise ModelError(f"{where}: key 'file' must be relative to the manifest's folder")
        return cls(
            name=text("name"),
            version=text("version"),
            file=file,
            sha256=sha256,
            input_name=text("input.name"),
            n_features=width("input.shape"),
            output_name=text("output.name"),
            dim=width("output.shape"),
        )


def _load_entry(manifest: Path, role: str) -> Mapping[str, Any]:
    """The raw ``models.<role>`` entry of ``manifest``, or ModelError saying why not."""
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{manifest}: manifest not found; {_REBUILD_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest}: cannot read manifest: {exc}") from exc
    if not isinstance(document, Mapping) or document.get("schema") != MANIFEST_SCHEMA:
        raise ModelError(f"{manifest}: not a schema {MANIFEST_SCHEMA} model manifest")
    roles = document.get("models")
    if not isinstance(roles, Mapping) or not isinstance(roles.get(role), Mapping):
        present = sorted(roles) if isinstance(roles, Mapping) else []
        raise ModelError(f"{manifest}: no model for role {role!r}; roles present: {present}")
    entry: Mapping[str, Any] = roles[role]
    return entry


def _check_session(session: ort.InferenceSession, spec: EmbeddingSpec, where: str) -> None:
    """ModelError if the file's input or output is not what the manifest says."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want_in = (spec.input_name, _ORT_FLOAT, spec.n_features)
    got_in = [(i.name, i.type, i.shape[-1]) for i in inputs]
    if got_in != [want_in] or isinstance(inputs[0].shape[0], int):
        raise ModelError(f"{where}: file input is {got_in}, manifest says {[want_in]}")
    want_out = (spec.output_name, _ORT_FLOAT, spec.dim)
    got_out = [(o.name, o.type, o.shape[-1]) for o in outputs]
    if want_out not in got_out:
        raise ModelError(f"{where}: file outputs are {got_out}, manifest says {want_out}")


class EmbeddingModel:
    """The verified embedding model on onnxruntime's CPU provider.

    Create with :meth:`load`. :meth:`embed` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so callers may run it in an executor.
    """

    def __init__(self, spec: EmbeddingSpec, session: ort.InferenceSession, path: Path) -> None:
        """Wrap an already verified session; use :meth:`load` instead."""
        self._spec = spec
        self._session = session
        self._path = path

    @classmethod
    def load(
        cls, manifest: Path | None = None, *, role: str = EMBED_ROLE, intra_op_threads: int = 1
    ) -> EmbeddingModel:
        """Load the ``embed`` model from ``manifest`` (default: the shipped manifest).

        The file is resolved relative to the manifest's folder and must have the
        manifest's SHA-256, input and output; otherwise :class:`ModelError` says what
        differs.
        """
        manifest_path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
        spec = EmbeddingSpec.from_manifest(
            _load_entry(manifest_path, role), where=f"{manifest_path}: models.{role}"
        )
        path = manifest_path.parent / spec.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model file ({exc}); {_REBUILD_HINT}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise ModelError(
                f"{path}: SHA-256 is {digest[:12]}..., manifest says {spec.sha256[:12]}...; "
                f"{_REBUILD_HINT}"
            )
        if (
            isinstance(intra_op_threads, bool)
            or not isinstance(intra_op_threads, int)
            or intra_op_threads < 1
        ):
            raise ConfigError(f"intra_op_threads must be an integer >= 1, got {intra_op_threads!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            # From the bytes just hashed, so the file cannot change between check and load.
            session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        _check_session(session, spec, str(path))
        return cls(spec, session, path)

    @property
    def spec(self) -> EmbeddingSpec:
        """The manifest entry this model was verified against."""
        return self._spec

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        return self._spec.dim

    @property
    def path(self) -> Path:
        """The .onnx file this model was loaded from."""
        return self._path

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Embeddings for a batch: float32 [N, dim].

        ``features`` must be a float32 numpy array [N, 64] of finite values (see
        :func:`pipeline.inference.digits.pixels_to_features`). N == 0 returns an empty array.
        """
        width, name = self._spec.n_features, self._spec.name
        if not isinstance(features, np.ndarray):
            raise ModelError(
                f"{name}: features must be a numpy array, got {type(features).__name__}"
            )
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != width:
            raise ModelError(
                f"{name}: features must be float32 [N, {width}], got "
                f"{features.dtype} {list(features.shape)}"
            )
        if not np.isfinite(features).all():
            raise ModelError(f"{name}: features contain NaN or infinity")
        if features.shape[0] == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        batch = np.ascontiguousarray(features)
        try:
            (embedding,) = self._session.run(
                [self._spec.output_name], {self._spec.input_name: batch}
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ModelError(f"{name} {self._spec.version}: inference failed: {exc}") from exc
        result = np.asarray(embedding, dtype=np.float32)
        if result.shape != (batch.shape[0], self.dim):
            raise ModelError(
                f"{name}: output shape {list(result.shape)}, "
                f"expected [{batch.shape[0]}, {self.dim}]"
            )
        return result

    def __repr__(self) -> str:
        spec = self._spec
        return f"EmbeddingModel({spec.name!r}, version={spec.version!r}, dim={spec.dim})"
