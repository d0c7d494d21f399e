"""The per-frame answers to tune on: out-of-fold predictions of both retrained models.

``cross_validated_data`` retrains the edge and cloud models on the training digits
(the same folds as ``models/build.py``'s calibration), never on the simulator's
held-out split, and returns them as ``TuningData``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pipeline.inference.calibration import confidence
from pipeline.planning.curves import OperatingPoint, TuningError, sweep

__all__ = ["TuningData", "cross_validated_data"]


@dataclass(frozen=True)
class TuningData:
    """Per-frame answers to tune on: the truth, the edge's (calibrated) probabilities
    [n, classes] as the worker sees them, the cloud's labels, and where they come from."""

    truth: np.ndarray
    edge_proba: np.ndarray
    cloud_labels: np.ndarray
    source: str

    @property
    def edge_correct(self) -> np.ndarray:
        """Whether the edge's argmax is right, per frame."""
        correct: np.ndarray = self.edge_proba.argmax(axis=1) == self.truth
        return correct

    @property
    def cloud_correct(self) -> np.ndarray:
        """Whether the cloud's label is right, per frame."""
        correct: np.ndarray = self.cloud_labels == self.truth
        return correct

    def curve(self, signal: str) -> tuple[OperatingPoint, ...]:
        """The operating points of one confidence signal."""
        return sweep(confidence(self.edge_proba, signal), self.edge_correct, self.cloud_correct)


def cross_validated_data() -> TuningData:
    """Out-of-fold predictions of both models on the training digits (needs the models extra).

    The same stratified, seeded folds as the calibration in ``models/build.py``; the
    edge temperature from the shipped manifest is applied, as the worker applies it.
    Retrains 5 MLPs and 5 SVCs (seconds). The simulator's held-out split is not used.
    """
    try:
        import sklearn  # noqa: F401  (the training below imports it lazily)

        from models.calibrate import CALIBRATION_FOLDS, cross_validated_proba
        from models.recipes import train_cloud, train_edge
        from pipeline.inference.digits import load_split
    except ImportError as exc:  # depends on the installed extras
        raise TuningError(
            f"tune needs the models extra (scikit-learn, skl2onnx): {exc}; "
            "install with pip install -e '.[models]'"
        ) from exc
    from pipeline.inference.model import apply_temperature, load_spec

    split = load_split()
    with warnings.catch_warnings():
        # See models.build._ignore_svc_probability_deprecation.
        warnings.filterwarnings("ignore", r"The `probability` parameter", FutureWarning)
        warnings.filterwarnings("ignore", r"Attribute `prob[AB]_` was deprecated", FutureWarning)
        edge = cross_validated_proba(train_edge, split)
        cloud = cross_validated_proba(train_cloud, split)
    temperature = load_spec("edge").temperature
    return TuningData(
        truth=split.y_train,
        edge_proba=apply_temperature(edge.astype(np.float32), temperature),
        cloud_labels=cloud.argmax(axis=1),
        source=(
            f"{CALIBRATION_FOLDS}-fold cross-validated (out-of-fold) predictions of both "
            f"models on the {len(split.y_train)} training digits, edge temperature "
            f"{temperature} applied; not the simulator's held-out split"
        ),
    )
