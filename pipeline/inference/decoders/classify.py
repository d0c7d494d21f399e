"""Classifier heads ``[B, C]`` -> one ``Classes`` per image. Pure.

``probabilities``: rows are already probabilities; they are renormalised to sum to 1
(negative entries count as 0). ``softmax``: rows are logits. ``sigmoid``: rows are
independent multi-label logits, so each class's probability stands alone and a row
need NOT sum to 1 (an exception to ``Classes``' rule, for multi-label models only).

``temperature`` T divides the log-probabilities (``probabilities``) or the logits
(``softmax``, ``sigmoid``) before normalising: T > 1 softens, T < 1 sharpens, 1 leaves
them as they are. A row holding NaN or infinity raises ModelError: a classifier has no
partial answer to fall back on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pipeline.declared import ranged
from pipeline.inference.decoders import register
from pipeline.inference.decoders._common import (
    Params,
    batch_of,
    pick_output,
    require_finite,
)
from pipeline.inference.geometry import Geometry
from pipeline.inference.outputs import Classes, Decoded

__all__ = [
    "ClassifyParams",
    "ProbabilitiesParams",
    "SigmoidParams",
    "SoftmaxParams",
    "decode_probabilities",
    "decode_sigmoid",
    "decode_softmax",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifyParams(Params):
    """``output``: the tensor to read, "" for the model's first; ``temperature`` > 0."""

    output: str = ""
    temperature: float = ranged(1.0, lo=0.0, lo_open=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbabilitiesParams(ClassifyParams):
    """``ClassifyParams`` for a head that outputs probabilities."""

    decoder: ClassVar[str] = "probabilities"


@dataclass(frozen=True, slots=True, kw_only=True)
class SoftmaxParams(ClassifyParams):
    """``ClassifyParams`` for a head that outputs logits of exclusive classes."""

    decoder: ClassVar[str] = "softmax"


@dataclass(frozen=True, slots=True, kw_only=True)
class SigmoidParams(ClassifyParams):
    """``ClassifyParams`` for a head that outputs independent (multi-label) logits."""

    decoder: ClassVar[str] = "sigmoid"


def _rows(
    name: str, outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], output: str
) -> np.ndarray:
    """The ``[B, C]`` tensor as float64, checked finite."""
    head = pick_output(name, outputs, output, "decoder.output")
    batch_of(name, head, geometries, "[batch, classes]", (1,))
    rows = head.astype(np.float64)
    require_finite(name, rows)
    return rows


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by each row's maximum so that nothing overflows."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(z / z.sum(axis=1, keepdims=True))


def _answers(probabilities: np.ndarray) -> list[Decoded]:
    """One ``Classes`` (float32) per row."""
    return [Classes(row) for row in probabilities.astype(np.float32)]


@register("probabilities", ProbabilitiesParams)
def decode_probabilities(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: ProbabilitiesParams
) -> list[Decoded]:
    """Probabilities -> ``Classes``; a row with nothing positive becomes uniform."""
    p = np.clip(_rows("probabilities", outputs, geometries, params.output), 0.0, None)
    total = p.sum(axis=1, keepdims=True)
    p = np.where(total > 0.0, p / np.where(total > 0.0, total, 1.0), 1.0 / p.shape[1])
    if params.temperature != 1.0:
        with np.errstate(divide="ignore"):
            p = _softmax(np.log(p) / params.temperature)
    return _answers(p)


@register("softmax", SoftmaxParams)
def decode_softmax(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: SoftmaxParams
) -> list[Decoded]:
    """Logits -> softmax ``Classes``."""
    logits = _rows("softmax", outputs, geometries, params.output)
    return _answers(_softmax(logits / params.temperature))


@register("sigmoid", SigmoidParams)
def decode_sigmoid(
    outputs: Mapping[str, np.ndarray], geometries: Sequence[Geometry], params: SigmoidParams
) -> list[Decoded]:
    """Multi-label logits -> independent probabilities (rows need not sum to 1)."""
    logits = _rows("sigmoid", outputs, geometries, params.output) / params.temperature
    # 1 / (1 + exp(-x)) without overflow for large negative x.
    e = np.exp(-np.abs(logits))
    return _answers(np.where(logits >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e)))
