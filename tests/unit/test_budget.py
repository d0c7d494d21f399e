"""The daily cloud budget's pure accounting (``Allowance``) and pricing."""

from __future__ import annotations

import math

import pytest

from edge_worker.budget import Allowance, escalation_cost, utc_day
from pipeline.planning.costs import CostModel
from schemas.errors import ConfigError

DAY1 = 1_700_000_000.0  # 2023-11-14 UTC
DAY2 = DAY1 + 86_400


def test_utc_day() -> None:
    assert utc_day(DAY1) == "2023-11-14"
    assert utc_day(DAY2) == "2023-11-15"


def test_no_cap_always_allows_and_never_reserves() -> None:
    allowance = Allowance(0.0)
    assert allowance.allows(DAY1)
    assert not allowance.needs_block(1e9)
    assert allowance.spend(1e9)


def test_spends_reserved_blocks_then_is_exhausted() -> None:
    allowance = Allowance(1.0)
    assert allowance.allows(DAY1) and allowance.day == "2023-11-14"
    assert allowance.block == pytest.approx(0.02)
    assert allowance.needs_block(0.01)
    assert not allowance.spend(0.01), "nothing is spent before a block is reserved"
    allowance.granted(0.02)
    assert allowance.spend(0.015) and allowance.left == pytest.approx(0.005)
    assert allowance.needs_block(0.01)
    allowance.granted(0.0)  # the ledger has nothing left today
    assert allowance.exhausted and not allowance.allows(DAY1)
    assert not allowance.needs_block(0.01), "an exhausted day asks the ledger no more"
    assert allowance.spend(0.005), "what was reserved can still be spent"
    assert not allowance.spend(0.001)


def test_a_new_day_starts_afresh() -> None:
    allowance = Allowance(1.0)
    allowance.allows(DAY1)
    allowance.granted(0.0)
    assert not allowance.allows(DAY1)
    assert allowance.allows(DAY2)
    assert (allowance.day, allowance.left, allowance.exhausted) == ("2023-11-15", 0.0, False)


@pytest.mark.parametrize("limit", [-1.0, math.nan, math.inf, "1"])
def test_limit_validated(limit: object) -> None:
    with pytest.raises(ConfigError, match="daily cloud budget must be a number >= 0"):
        Allowance(limit)  # type: ignore[arg-type]


def test_escalation_cost_is_inference_per_region_plus_bytes() -> None:
    prices = CostModel(gpu_hour=3.6, cloud_images_per_s=1000.0, egress_per_gb=0.1)
    # 3.6 $/h at 1000 images/s: 1e-6 $ an image; 1e9 bytes at 0.1 $/GB: 0.1 $.
    assert escalation_cost(prices, 2, 0) == pytest.approx(2e-6)
    assert escalation_cost(prices, 1, 1_000_000_000) == pytest.approx(0.1 + 1e-6)
