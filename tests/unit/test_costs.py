"""The cost model, against figures computed by hand."""

from __future__ import annotations

import pytest

from pipeline.planning.costs import MEASURED_CLOUD_THROUGHPUT, CostModel, Mode
from schemas.errors import ConfigError

# Round numbers so every expectation below is easy to check by hand.
PRICES = CostModel(
    gpu_hour=3.6,  # $3.6/h at 1000 images/s = $1e-6 per image = $1 per 1M images
    cloud_images_per_s=1000.0,
    egress_per_gb=0.1,
    edge_device=360.0,  # over 36 months = $10/month
    edge_life_months=36.0,
    edge_power_w=10.0,  # 10 W * 730.5 h = 7.305 kWh at $0.2 = $1.461/month
    price_per_kwh=0.2,
    connectivity_per_month=20.0,
    frames_per_month=10_000_000.0,  # monthly costs / 10 per 1M frames
)


def test_edge_only() -> None:
    c = PRICES.cost_per_million(Mode.EDGE_ONLY, 0.5, 1000, 1000)  # shares and bytes unused
    assert c.cloud_compute == 0 and c.transfer == 0
    assert c.edge_device == pytest.approx(1.0)
    assert c.edge_power == pytest.approx(0.1461)
    assert c.connectivity == pytest.approx(2.0)
    assert c.total == pytest.approx(3.1461)


def test_cloud_only() -> None:
    # 1M frames of 300,000 B = 300 GB at $0.1; 1M images at $1e-6; no edge device.
    c = PRICES.cost_per_million("cloud_only", bytes_per_frame=300_000)
    assert c.mode is Mode.CLOUD_ONLY
    assert c.cloud_compute == pytest.approx(1.0)
    assert c.transfer == pytest.approx(30.0)
    assert c.edge_device == 0 and c.edge_power == 0
    assert c.total == pytest.approx(33.0)


def test_hybrid() -> None:
    # 10% of 1M frames: 100,000 images ($0.1) and 100,000 * (1,000 + 300) B = 0.13 GB.
    c = PRICES.cost_per_million(Mode.HYBRID, 0.1, 1000, 300_000, bytes_per_reply=300)
    assert c.cloud_compute == pytest.approx(0.1)
    assert c.transfer == pytest.approx(0.013)
    assert c.total == pytest.approx(0.1 + 0.013 + 1.0 + 0.1461 + 2.0)
    none_sent = PRICES.cost_per_million(Mode.HYBRID, 0.0, 1000, 300_000)
    assert none_sent.total == pytest.approx(PRICES.cost_per_million(Mode.EDGE_ONLY).total)


def test_utilization_and_regions_scale_cloud_compute() -> None:
    from dataclasses import replace

    half_busy = replace(PRICES, cloud_utilization=0.5, images_per_frame=2.0)
    assert half_busy.cost_per_million(Mode.CLOUD_ONLY).cloud_compute == pytest.approx(4.0)


def test_defaults_name_the_measured_throughput() -> None:
    model = CostModel()
    assert model.cloud_images_per_s == MEASURED_CLOUD_THROUGHPUT == 8333.0
    assert model.cloud_per_image == pytest.approx(3.0 / (3600 * 8333))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gpu_hour", -1.0, "gpu_hour must be a finite number >= 0"),
        ("cloud_images_per_s", 0.0, "cloud_images_per_s must be > 0"),
        ("cloud_utilization", 1.5, r"cloud_utilization must be in \(0, 1\]"),
        ("egress_per_gb", float("nan"), "egress_per_gb"),
    ],
)
def test_bad_prices_are_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CostModel(**{field: value})


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="escalation_share"):
        PRICES.cost_per_million(Mode.HYBRID, 1.5)
    with pytest.raises(ValueError, match="bytes_per_frame"):
        PRICES.cost_per_million(Mode.CLOUD_ONLY, bytes_per_frame=-1)
    with pytest.raises(ValueError, match="gpu"):
        PRICES.cost_per_million("gpu")
