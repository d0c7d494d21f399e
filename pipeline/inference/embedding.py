"""The site's embedding model from ``models/manifest.json``: its spec, verified loading, use.

The ``embed`` role maps a digit's 64 features to a short float32 embedding (PCA to
16 values in the shipped build) that the ``cloud-embed`` classifier takes as input,
so a site can send an embedding instead of the digit. An embedding keeps less than
the pixels but is a linear projection, not a privacy mechanism.

As for the classifiers in :mod:`pipeline.inference.model`, the file is only loaded through its
manifest declaration: its SHA-256, input and output must match it; the embedding's
length is the width of the declared output (``decoder.output``) in the file.
The ``cloud-embed`` classifier itself is an ordinary classifier entry and loads with
``OnnxModel.load("cloud-embed")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort

from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.model import feature_width
from pipeline.inference.session import Signature, VerifiedModel, read_verified, tensor_name
from schemas.errors import ModelError

__all__ = ["EMBED_ROLE", "EmbeddingModel", "EmbeddingSpec"]

EMBED_ROLE: Final = "embed"
_ORT_FLOAT: Final = "tensor(float)"


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    """An embedding's declaration (task ``embed``, decoder ``embedding``) with what only
    its file tells: the input and output tensors' names and the embedding's length.

    Input is float32 [N, n_features], output float32 [N, dim].
    """

    declaration: ModelDeclaration
    input_name: str
    output_name: str
    dim: int

    @property
    def name(self) -> str:
        """Model name, e.g. ``digits-pca16``."""
        return self.declaration.name

    @property
    def version(self) -> str:
        """Model version."""
        return self.declaration.version

    @property
    def n_features(self) -> int:
        """Number of input columns per row."""
        return feature_width(self.declaration, self.name)

    @property
    def normalize(self) -> bool:
        """Whether each embedding is scaled to unit L2 norm (``decoder.normalize``)."""
        return bool(self.declaration.decoder.params.normalize)

    @property
    def signature(self) -> Signature:
        """What the session is run by: [N, n_features] in, [N, dim] out."""
        return Signature(self.input_name, "float32", self.n_features, self.output_name, self.dim)


class EmbeddingModel(VerifiedModel[EmbeddingSpec]):
    """The verified embedding model, on its declared providers.

    Create with :meth:`load`. :meth:`embed` is thread-safe (onnxruntime allows
    concurrent ``run`` calls on one session), so callers may run it in an executor.
    """

    @classmethod
    def load(
        cls,
        manifest: Path | None = None,
        *,
        role: str = EMBED_ROLE,
        intra_op_threads: int | None = None,
    ) -> EmbeddingModel:
        """Load the ``embed`` model from ``manifest`` (default: the shipped manifest).

        The file is resolved relative to the manifest's folder and must have the
        declared SHA-256, input and output; otherwise :class:`ModelError` says what
        differs. ``intra_op_threads``, if given, replaces the entry's.
        """
        manifest_path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
        declaration, where = load_declaration(role, manifest_path)
        path = manifest_path.parent / declaration.file
        data = read_verified(path, declaration.sha256)
        return cls._open(declaration, data, path, where, intra_op_threads)

    @staticmethod
    def _spec_of(
        declaration: ModelDeclaration, session: ort.InferenceSession, path: Path, where: str
    ) -> EmbeddingSpec:
        """The spec: an ``embed`` model over features whose declared output has a fixed width."""
        if (declaration.task, declaration.decoder.type) != ("embed", "embedding"):
            raise ModelError(f"{where}: an embedding declares task 'embed', decoder 'embedding'")
        feature_width(declaration, where)
        outputs = session.get_outputs()
        output_name = tensor_name(declaration.decoder.params.output, outputs)
        shapes = {o.name: o.shape for o in outputs}
        width = shapes.get(output_name, [None])[-1]
        if not isinstance(width, int):
            raise ModelError(
                f"{where}: decoder.output {output_name!r} is not an output of fixed width in "
                f"the file; its outputs are {shapes}"
            )
        input_name = tensor_name(declaration.input.name, session.get_inputs())
        return EmbeddingSpec(declaration, input_name, output_name, width)

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
        """Embeddings for a batch: float32 [N, dim], scaled to unit length if the
        declaration says ``normalize``.

        ``features`` must be a float32 numpy array [N, n_features] of finite values (see
        :func:`pipeline.inference.digits.pixels_to_features`). N == 0 returns an empty array.
        """
        vectors = self._run(features)
        if not self._spec.normalize:
            return vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.where(norms > 0.0, norms, 1.0), dtype=np.float32)

    def __repr__(self) -> str:
        spec = self._spec
        return f"EmbeddingModel({spec.name!r}, version={spec.version!r}, dim={spec.dim})"
