"""Temperature fitting, expected calibration error and the confidence signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.inference.calibration import (
    DEFAULT_SIGNAL,
    SIGNALS,
    confidence,
    entropy_confidence,
    expected_calibration_error,
    fit_temperature,
    frame_confidence,
    get_signal,
    margin,
    max_probability,
    negative_log_likelihood,
)
from pipeline.inference.model import apply_temperature
from schemas.errors import ConfigError


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _sampled(true_temperature: float, rows: int = 8000, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Logits whose labels are drawn from softmax(logits / T): the right answer is T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (rows, 10))
    p = _softmax(logits / true_temperature)
    labels = (p.cumsum(axis=1) > rng.random((rows, 1))).argmax(axis=1)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_from_logits(true_temperature: float) -> None:
    logits, labels = _sampled(true_temperature)
    assert fit_temperature(logits, labels, logits=True) == pytest.approx(true_temperature, rel=0.05)


def test_fit_from_probabilities_equals_fit_from_logits() -> None:
    logits, labels = _sampled(2.0, rows=2000)
    from_logits = fit_temperature(logits, labels, logits=True)
    from_probs = fit_temperature(_softmax(logits), labels)
    assert from_probs == pytest.approx(from_logits, rel=1e-6)


def test_fitted_temperature_minimises_nll_as_apply_temperature_applies_it() -> None:
    logits, labels = _sampled(1.7, rows=3000)
    probs = _softmax(logits).astype(np.float32)
    t = fit_temperature(probs, labels)
    best = negative_log_likelihood(probs, labels, temperature=t)
    for other in (t * 0.9, t * 1.1):
        assert negative_log_likelihood(probs, labels, temperature=other) > best
    # apply_temperature (what OnnxModel runs) gives the distribution the fit scored.
    scaled = apply_temperature(probs, t)
    assert negative_log_likelihood(scaled, labels) == pytest.approx(best, rel=1e-4)


def test_fit_is_clamped_when_nothing_is_wrong() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert fit_temperature(probs, np.array([0, 1])) == 0.05  # sharper is always better
    assert fit_temperature(probs, np.array([1, 0])) == 20.0  # everything wrong: flatten


def test_fit_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.full((2, 3), 1 / 3), np.array([0, 3]))
    with pytest.raises(ValueError, match="2-D"):
        fit_temperature(np.full(3, 1 / 3), np.array([0]))
    with pytest.raises(ValueError, match=">= 0"):
        fit_temperature(np.array([[-1.0, 2.0]]), np.array([0]))
    with pytest.raises(ValueError, match="at least one row"):
        fit_temperature(np.empty((0, 3)), np.empty(0, dtype=np.int64))


def test_ece_by_hand() -> None:
    # Bin (0.8, 0.8667]: confidences 0.85 and 0.85, one right -> |0.5 - 0.85| = 0.35.
    # Bin (0.6, 0.6667]: confidence 0.65, right -> |1 - 0.65| = 0.35.
    # Bin (0.9333, 1]: confidence 1.0, right -> 0. Weighted: (2*0.35 + 0.35 + 0) / 4.
    probs = np.array([[0.85, 0.15], [0.15, 0.85], [0.65, 0.35], [0.0, 1.0]])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels, bins=15) == pytest.approx(1.05 / 4)


def test_ece_is_zero_for_a_calibrated_bin_and_counts_zero_confidence() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1]), bins=10) == pytest.approx(0)
    one_bin = expected_calibration_error(np.array([[0.0, 0.0]]), np.array([0]), bins=1)
    assert one_bin == pytest.approx(1.0)  # confidence 0, right: lands in the first bin
    with pytest.raises(ValueError, match="bins"):
        expected_calibration_error(probs, np.array([0, 0, 0, 1]), bins=0)


def test_signals_by_hand() -> None:
    scores = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(max_probability(scores), [0.7, 1 / 3, 1.0], atol=1e-7)
    np.testing.assert_allclose(margin(scores), [0.5, 0.0, 1.0], atol=1e-7)
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(
        entropy_confidence(scores), [1 - h / math.log(3), 0.0, 1.0], atol=1e-6
    )
    for name in SIGNALS:
        values = confidence(scores, name)
        assert values.dtype == np.float64
        assert ((values >= 0) & (values <= 1)).all()


def test_one_class_and_empty_rows() -> None:
    single = np.array([[1.0], [0.4]])
    np.testing.assert_allclose(margin(single), [1.0, 0.4])
    np.testing.assert_allclose(entropy_confidence(single), [1.0, 1.0])
    empty = np.empty((0, 10), dtype=np.float32)
    for name in SIGNALS:
        assert confidence(empty, name).shape == (0,)
        assert frame_confidence(empty, name) == 1.0


def test_frame_confidence_is_the_least_confident_region_like_the_worker() -> None:
    scores = np.array([[0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    assert frame_confidence(scores) == float(scores.max(axis=1).min())
    assert DEFAULT_SIGNAL == "max_probability"
    assert frame_confidence(scores, "margin") == pytest.approx(0.2)


def test_registry() -> None:
    assert list(SIGNALS) == ["max_probability", "margin", "entropy"]
    assert get_signal("margin").name == "margin"
    with pytest.raises(ConfigError, match="known: max_probability, margin, entropy"):
        get_signal("variance")
