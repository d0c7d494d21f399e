"""The temperature of a model, fitted on out-of-fold predictions of the training part.

Stratified, seeded k-fold cross-validation: each training digit is predicted by a
model that did not see it (``cross_validated_proba``); the temperature is fitted on
those predictions, never on the held-out part the camera shows, and ``calibrate``
writes the manifest's record of it (expected calibration error and log-likelihood
before and after, there and on the held-out part). ``hybridfleet tune`` uses the same
folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from models.manifest import DIGITS
from models.recipes import N_CLASSES
from pipeline.inference.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from pipeline.inference.digits import DigitsSplit
from pipeline.inference.model import apply_temperature

__all__ = [
    "CALIBRATION_FOLDS",
    "CALIBRATION_SEED",
    "ECE_BINS",
    "calibrate",
    "cross_validated_proba",
]

# Out-of-fold predictions for calibration (and for `hybridfleet tune`): 5 folds as in
# scikit-learn's CalibratedClassifierCV, stratified and shuffled with a fixed seed.
CALIBRATION_FOLDS = 5
CALIBRATION_SEED = 0
ECE_BINS = 15


def cross_validated_proba(
    train: Callable[[DigitsSplit], Any],
    split: DigitsSplit,
    *,
    folds: int = CALIBRATION_FOLDS,
    seed: int = CALIBRATION_SEED,
) -> np.ndarray:
    """Out-of-fold probabilities [n_train, classes] for the training part of ``split``.

    Each fold's rows are predicted by a model ``train`` fitted on the other folds only
    (scikit-learn ``predict_proba``; the exported ONNX files match it within
    ONNX_TOLERANCE). The held-out part is not used. Deterministic for a given seed.
    """
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((len(split.y_train), N_CLASSES), dtype=np.float64)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, predict_rows in cv.split(split.x_train, split.y_train):
        part = replace(split, x_train=split.x_train[fit_rows], y_train=split.y_train[fit_rows])
        model = train(part)
        out[predict_rows] = model.predict_proba(split.x_train[predict_rows])
    return out


def calibrate(
    out_of_fold: np.ndarray, heldout_proba: np.ndarray, split: DigitsSplit
) -> dict[str, Any]:
    """Fit the temperature on out-of-fold probabilities; the manifest's calibration record.

    ``ece_*`` and ``nll_*`` are measured on the out-of-fold predictions the temperature
    was fitted on; ``heldout_ece_*`` on the held-out part (measured, not fitted on).
    """
    y_train, y_heldout = split.y_train, split.y_heldout
    # The rounded temperature is the one that ships: the "after" figures use it.
    temperature = round(fit_temperature(out_of_fold, y_train), DIGITS)

    def scaled(p: np.ndarray) -> np.ndarray:
        return apply_temperature(p.astype(np.float32), temperature)

    def ece(p: np.ndarray, y: np.ndarray) -> float:
        return round(expected_calibration_error(p, y, bins=ECE_BINS), DIGITS + 2)

    def nll(p: np.ndarray, y: np.ndarray) -> float:
        return round(negative_log_likelihood(p, y), DIGITS + 2)

    return {
        "method": "temperature",
        "temperature": temperature,
        "split": {
            "source": "train",
            "kind": "out-of-fold predictions, stratified k-fold cross-validation",
            "folds": CALIBRATION_FOLDS,
            "seed": CALIBRATION_SEED,
            "size": len(y_train),
        },
        "bins": ECE_BINS,
        "ece_before": ece(out_of_fold, y_train),
        "ece_after": ece(scaled(out_of_fold), y_train),
        "nll_before": nll(out_of_fold, y_train),
        "nll_after": nll(scaled(out_of_fold), y_train),
        "heldout_ece_before": ece(heldout_proba, y_heldout),
        "heldout_ece_after": ece(scaled(heldout_proba), y_heldout),
    }
