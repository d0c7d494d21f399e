"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest

from pipeline.inference.digits import DigitsSplit, load_split


@pytest.fixture(scope="module")
def split() -> DigitsSplit:
    """The digits: the training part the models learn from, the held-out part the camera shows."""
    return load_split()
