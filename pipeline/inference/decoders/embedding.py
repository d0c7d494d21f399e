"""Embedding heads ``[B, D]`` -> one ``Embedding`` per image. Pure.

With ``normalize`` (the default) each vector is scaled to unit L2 norm; an all-zero
vector stays zero. NaN or infinity raises ModelError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline.inference.decoders import register
from pipeline.inference.decoders._common import Params, batch_of, pick_output, require_finite
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Decoded, Embedding

__all__ = ["EmbeddingParams", "decode_embedding"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingParams(Params):
    """``output``: the tensor to read, "" for the model's first; ``normalize``: to unit
    L2 norm."""

    decoder: ClassVar[str] = "embedding"
    output: str = ""
    normalize: bool = True


@register("embedding", EmbeddingParams)
def decode_embedding(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: EmbeddingParams
) -> list[Decoded]:
    """``[B, D]`` -> one float32 vector per image."""
    head = pick_output("embedding", outputs, params.output, "decoder.output")
    batch_of("embedding", head, geometries, "[batch, dimensions]", (1,))
    vectors = head.astype(np.float64)
    require_finite("embedding", vectors)
    if params.normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0.0, norms, 1.0)
    return [Embedding(v) for v in vectors.astype(np.float32)]
