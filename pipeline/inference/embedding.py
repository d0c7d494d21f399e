"""The site's embedding model from ``models/manifest.json``: its spec, verified loading, use.

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

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from pipeline.inference.manifest import DEFAULT_MANIFEST, EntryReader, manifest_entry
from pipeline.inference.session import Signature, VerifiedModel, read_verified
from schemas.errors import ModelError

__all__ = ["EMBED_ROLE", "EmbeddingModel", "EmbeddingSpec"]

EMBED_ROLE: Final = "embed"
_DTYPE: Final = "float32"
_ORT_FLOAT: Final = "tensor(float)"


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

    @property
    def signature(self) -> Signature:
        """What the session is run by: [N, n_features] in, [N, dim] out."""
        return Signature(self.input_name, _DTYPE, self.n_features, self.output_name, self.dim)

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any], *, where: str) -> EmbeddingSpec:
        """Build a spec from a ``models.embed`` entry; ModelError names the bad key."""
        fields = EntryReader(entry, where)
        for key in ("input.dtype", "output.dtype"):
            fields.choice(key, (_DTYPE,))
        return cls(
            **fields.file_fields(),
            input_name=fields.text("input.name"),
            n_features=fields.width("input.shape", "width"),
            output_name=fields.text("output.name"),
            dim=fields.width("output.shape", "width"),
        )


class EmbeddingModel(VerifiedModel[EmbeddingSpec]):
    """The verified embedding model on onnxruntime's CPU provider.

    Create with :meth:`load`. :meth:`embed` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so callers may run it in an executor.
    """

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
        entry, where = manifest_entry(role, manifest_path)
        spec = EmbeddingSpec.from_manifest(entry, where=where)
        path = manifest_path.parent / spec.file
        return cls._open(spec, read_verified(path, spec.sha256), path, intra_op_threads)

    @staticmethod
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

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        return self._spec.dim

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Embeddings for a batch: float32 [N, dim].

        ``features`` must be a float32 numpy array [N, 64] of finite values (see
        :func:`pipeline.inference.digits.pixels_to_features`). N == 0 returns an empty array.
        """
        return self._run(features)

    def __repr__(self) -> str:
        spec = self._spec
        return f"EmbeddingModel({spec.name!r}, version={spec.version!r}, dim={spec.dim})"
