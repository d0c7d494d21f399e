"""Choosing a declared model's uncertainty band from a target: the escalated share.

A detector's or text reader's edge asks the cloud about every item whose confidence
falls in its ``confidence.uncertain_band`` [low, high) (pipeline/inference/chain.py),
so a frame is escalated when any of its items does. Given the items' confidences on
representative frames (``frame_scores``: one array per frame), the share of frames
escalated grows with ``high``; ``choose_high`` picks the largest ``high`` whose share
stays within the target. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from schemas.errors import ConfigError

__all__ = ["BandChoice", "choose_high", "escalated_share"]


@dataclass(frozen=True, slots=True)
class BandChoice:
    """The band chosen, and the share of the frames it escalates."""

    low: float
    high: float
    share: float
    frames: int


def escalated_share(frame_scores: Sequence[np.ndarray], low: float, high: float) -> float:
    """The share of frames with at least one item whose confidence is in [low, high)."""
    if not frame_scores:
        return 0.0
    asked = sum(bool(np.any((s >= low) & (s < high))) for s in frame_scores)
    return asked / len(frame_scores)


def choose_high(
    frame_scores: Sequence[np.ndarray], low: float, max_share: float, *, steps: int = 200
) -> BandChoice:
    """The largest ``high`` in (low, 1] (on a grid of ``steps``) whose escalated share
    is at most ``max_share``; ``low`` itself (nothing asked) when none is."""
    if not 0.0 <= low < 1.0:
        raise ConfigError(f"low must be in [0, 1), got {low!r}")
    if not 0.0 <= max_share <= 1.0:
        raise ConfigError(f"the escalated share must be in [0, 1], got {max_share!r}")
    if not frame_scores:
        raise ConfigError("no frames to tune on; give a video with frames")
    best = BandChoice(low, low, 0.0, len(frame_scores))
    for high in np.linspace(low, 1.0, steps + 1)[1:]:
        share = escalated_share(frame_scores, low, float(high))
        if share > max_share:
            break
        best = BandChoice(low, round(float(high), 4), share, len(frame_scores))
    return best
