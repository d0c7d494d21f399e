"""Calibration of a classifier's probabilities, and the confidence signals built on them.

Pure numpy, no I/O. Three parts:

* :func:`fit_temperature` fits temperature scaling (Guo et al., 2017): one scalar ``T``
  so that ``softmax(log(p) / T)`` minimises the negative log-likelihood of the true
  labels on data the model was not trained on. The ONNX models output probabilities,
  not logits; log-probabilities are logits up to a per-row constant, which cancels in
  the softmax, so fitting on them is exact. ``pipeline.inference.model.apply_temperature`` applies
  the fitted ``T`` the same way (including the floor for probabilities of exactly 0).
* :func:`expected_calibration_error`: the gap between confidence and accuracy,
  averaged over equal-width confidence bins and weighted by the bins' sizes.
* Confidence signals: per-row scores in [0, 1] that the edge compares with its
  threshold (a row stays local when its confidence >= threshold). They are chosen
  by name from :data:`SIGNALS`; :func:`confidence` and :func:`frame_confidence` are what
  a worker calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np

from schemas.errors import ConfigError

__all__ = [
    "DEFAULT_SIGNAL",
    "SETTING_NAME",
    "SIGNALS",
    "ConfidenceSignal",
    "confidence",
    "entropy_confidence",
    "expected_calibration_error",
    "fit_temperature",
    "frame_confidence",
    "get_signal",
    "margin",
    "max_probability",
    "negative_log_likelihood",
]

# What the edge worker computes today (``scores.max(axis=1).min()``).
DEFAULT_SIGNAL: Final = "max_probability"
# Suggested name of the edge setting that would choose the signal:
# ``[edge] confidence_signal`` / ``HYBRIDFLEET_EDGE_CONFIDENCE_SIGNAL``.
SETTING_NAME: Final = "confidence_signal"

# The same floor as pipeline.inference.model.apply_temperature: a probability of exactly 0 stays
# the least likely class instead of becoming log(0) = -inf.
_PROBA_FLOOR: Final = float(np.finfo(np.float32).tiny)
# Search range of the temperature. Outside it the data say "as sharp / as flat as
# possible", which a fit on a few hundred examples should not be trusted to say.
_T_MIN: Final = 0.05
_T_MAX: Final = 20.0
_BISECTION_STEPS: Final = 200


def _as_2d(scores: np.ndarray, what: str = "scores") -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"{what} must be 2-D [rows, classes], got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinity")
    return array


def _labels_for(labels: np.ndarray, rows: int, classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (rows,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {rows} integers, got {y.dtype} {list(y.shape)}")
    if rows and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"labels must be in 0..{classes - 1}")
    return y.astype(np.intp)


def _log_probabilities(scores: np.ndarray, *, logits: bool) -> np.ndarray:
    """Log-probabilities (up to a per-row constant) from probabilities or logits."""
    if logits:
        return scores
    if (scores < 0).any():
        raise ValueError("probabilities must be >= 0 (pass logits=True for logits)")
    out: np.ndarray = np.log(np.maximum(scores, _PROBA_FLOOR))
    return out


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    out: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def negative_log_likelihood(
    scores: np.ndarray, labels: np.ndarray, *, temperature: float = 1.0, logits: bool = False
) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(log(scores) / T)``."""
    z = _log_probabilities(_as_2d(scores), logits=logits)
    y = _labels_for(labels, z.shape[0], z.shape[1])
    if z.shape[0] == 0:
        raise ValueError("need at least one row")
    log_p = _log_softmax(z / temperature)
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(
    probs_or_logits: np.ndarray, labels: np.ndarray, *, logits: bool = False
) -> float:
    """The temperature ``T`` that minimises the NLL of ``labels``; ``T > 1`` softens.

    ``probs_or_logits`` is [rows, classes]: probabilities (the default; their logs are
    used, floored like ``apply_temperature``) or, with ``logits=True``, logits. Fit it on
    data the model was not trained on (held-out or out-of-fold predictions).

    The NLL is convex in ``b = 1/T`` (a log-sum-exp of functions linear in ``b``, minus a
    linear term), so its derivative is increasing and a bisection on it finds the
    minimum exactly and deterministically. The result is clamped to [0.05, 20]: at a
    bound, the data want an even sharper (e.g. nothing misclassified) or flatter model.
    """
    z = _log_probabilities(_as_2d(probs_or_logits, "probs_or_logits"), logits=logits)
    y = _labels_for(labels, z.shape[0], z.shape[1])
    if z.shape[0] == 0:
        raise ValueError("need at least one row to fit a temperature")
    true_z = z[np.arange(len(y)), y]

    def slope(log_b: float) -> float:
        # d NLL / d b = mean over rows of (E_softmax(b z)[z] - z_true).
        b = math.exp(log_b)
        p = np.exp(_log_softmax(z * b))
        return float(((p * z).sum(axis=1) - true_z).mean())

    lo, hi = math.log(1.0 / _T_MAX), math.log(1.0 / _T_MIN)
    if slope(lo) >= 0.0:
        return _T_MAX
    if slope(hi) <= 0.0:
        return _T_MIN
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 1.0 / math.exp(0.5 * (lo + hi))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over equal-width bins of (share of rows) * |accuracy - mean confidence|.

    Confidence is the maximum probability of a row and the prediction its argmax; a
    row with confidence ``c`` falls in bin ``ceil(c * bins) - 1`` (bins are ``(lo, hi]``,
    and a confidence of 0 goes to the first). 15 bins as in Guo et al. (2017).
    """
    p = _as_2d(probs, "probs")
    y = _labels_for(labels, p.shape[0], p.shape[1])
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if p.shape[0] == 0:
        raise ValueError("need at least one row")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(conf * bins).astype(np.intp) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    conf_sums = np.bincount(index, weights=conf, minlength=bins)
    correct_sums = np.bincount(index, weights=correct, minlength=bins)
    used = counts > 0
    gaps = np.abs(correct_sums[used] - conf_sums[used])  # = n_b * |acc_b - conf_b|
    return float(gaps.sum() / p.shape[0])


# --- confidence signals ------------------------------------------------------------


def _unit(values: np.ndarray) -> np.ndarray:
    """Clipped to [0, 1] (rounding can step just outside), as float64."""
    out: np.ndarray = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return out


def max_probability(scores: np.ndarray) -> np.ndarray:
    """The top probability of each row."""
    p = _as_2d(scores)
    return _unit(p.max(axis=1))


def margin(scores: np.ndarray) -> np.ndarray:
    """Top probability minus the second, per row (the top one alone for one class)."""
    p = _as_2d(scores)
    if p.shape[1] == 1:
        return _unit(p[:, 0])
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return _unit(top2[:, 1] - top2[:, 0])


def entropy_confidence(scores: np.ndarray) -> np.ndarray:
    """``1 - H(p) / log(K)`` per row: 1 for a one-hot row, 0 for a uniform one."""
    p = _as_2d(scores)
    k = p.shape[1]
    if k == 1:
        return np.ones(p.shape[0])
    safe = np.where(p > 0.0, p, 1.0)  # 0 * log 0 = 0
    entropy = -(p * np.log(safe)).sum(axis=1)
    return _unit(1.0 - entropy / math.log(k))


@dataclass(frozen=True)
class ConfidenceSignal:
    """A named way to turn a row of probabilities into one confidence in [0, 1]."""

    name: str
    description: str
    per_row: Callable[[np.ndarray], np.ndarray]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return self.per_row(scores)


SIGNALS: Final[Mapping[str, ConfidenceSignal]] = MappingProxyType(
    {
        s.name: s
        for s in (
            ConfidenceSignal("max_probability", "top probability", max_probability),
            ConfidenceSignal("margin", "top probability minus the second", margin),
            ConfidenceSignal("entropy", "1 - entropy / log(classes)", entropy_confidence),
        )
    }
)


def get_signal(name: str) -> ConfidenceSignal:
    """The signal called ``name``; ConfigError listing the known names otherwise."""
    signal = SIGNALS.get(name)
    if signal is None:
        raise ConfigError(f"unknown confidence signal {name!r}; known: {', '.join(SIGNALS)}")
    return signal


def confidence(scores: np.ndarray, signal: str = DEFAULT_SIGNAL) -> np.ndarray:
    """Per-row confidence of ``scores`` [rows, classes] under the named signal, float64."""
    return get_signal(signal)(scores)


def frame_confidence(scores: np.ndarray, signal: str = DEFAULT_SIGNAL) -> float:
    """A frame's confidence: that of its least confident region (row), 1.0 with no rows.

    The same rule as the edge worker's ``scores.max(axis=1).min()`` for
    ``max_probability``.
    """
    per_row = confidence(scores, signal)
    return float(per_row.min()) if per_row.size else 1.0
