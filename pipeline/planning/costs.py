"""What 1M frames cost: edge-only, cloud-only and hybrid, from configurable prices.

Pure arithmetic, no I/O. The formula, with each price's meaning and default, is in
``docs/cost-model.md``. Every default price is an assumption to replace with your own,
except the cloud throughput, which is a measurement (on hardware that is not this
project's cloud model; see :data:`MEASURED_CLOUD_THROUGHPUT`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final

from schemas.checks import require_number
from schemas.errors import ConfigError

__all__ = [
    "BYTES_PER_GB",
    "HOURS_PER_MONTH",
    "MEASURED_CLOUD_THROUGHPUT",
    "CostBreakdown",
    "CostModel",
    "Mode",
]

MILLION: Final = 1_000_000
# Clouds bill decimal gigabytes.
BYTES_PER_GB: Final = 1e9
# An average month: 365.25 days * 24 h / 12.
HOURS_PER_MONTH: Final = 730.5
# From shared/design/model-facts.md: ResNet-50, fp16, batch 64, one NVIDIA H100 80GB,
# PyTorch 2.11 eager, random weights, 224x224 inputs, one run. Batch 64 because the
# cloud worker fetches up to 64 escalations at a time (cloud.fetch_batch).
MEASURED_CLOUD_THROUGHPUT: Final = 8333.0
MEASURED_ON: Final = "ResNet-50 fp16, batch 64, one H100 80GB (PyTorch 2.11 eager)"
# The embedded stack's load: 4 cameras at 25 frames/s, all month.
_DEMO_FRAMES_PER_MONTH: Final = 4 * 25 * 3600 * HOURS_PER_MONTH


class Mode(StrEnum):
    """Where frames are answered."""

    EDGE_ONLY = "edge_only"  # every frame on the edge device, nothing sent
    CLOUD_ONLY = "cloud_only"  # every frame sent to the cloud, no edge device
    HYBRID = "hybrid"  # edge device answers, sends a share of frames to the cloud


@dataclass(frozen=True)
class CostBreakdown:
    """US dollars per 1M frames, by component; ``total`` is their sum."""

    mode: Mode
    cloud_compute: float
    transfer: float
    edge_device: float
    edge_power: float
    connectivity: float

    @property
    def total(self) -> float:
        """The sum of the components."""
        return (
            self.cloud_compute
            + self.transfer
            + self.edge_device
            + self.edge_power
            + self.connectivity
        )


@dataclass(frozen=True)
class CostModel:
    """Prices and volumes for one site. All money in US dollars.

    Defaults other than ``cloud_images_per_s`` are placeholder assumptions, not
    quotes: set your own.

    * ``gpu_hour``: price of one cloud GPU-hour.
    * ``cloud_images_per_s``: images per second one such GPU classifies, measured
      (default: :data:`MEASURED_CLOUD_THROUGHPUT`, measured on :data:`MEASURED_ON`).
    * ``cloud_utilization``: share of paid GPU time spent classifying, in (0, 1];
      1 is the lower bound of the cost (a GPU kept busy at the measured rate).
    * ``egress_per_gb``: price per GB (1e9 bytes) moved between site and cloud.
    * ``edge_device``: purchase price of one edge device, amortised linearly over
      ``edge_life_months``.
    * ``edge_power_w`` and ``price_per_kwh``: the device's average draw, the power price.
    * ``connectivity_per_month``: the site's link, paid in every mode.
    * ``frames_per_month``: frames one site produces in a month (default: 4 cameras
      at 25 frames/s, the embedded stack's load).
    * ``images_per_frame``: cloud inferences one sent frame costs (regions per frame).
    """

    gpu_hour: float = 3.00
    cloud_images_per_s: float = MEASURED_CLOUD_THROUGHPUT
    cloud_utilization: float = 1.0
    egress_per_gb: float = 0.09
    edge_device: float = 500.0
    edge_life_months: float = 36.0
    edge_power_w: float = 15.0
    price_per_kwh: float = 0.30
    connectivity_per_month: float = 50.0
    frames_per_month: float = _DEMO_FRAMES_PER_MONTH
    images_per_frame: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            require_number(f"cost model: {f.name}", getattr(self, f.name), 0)
        for name in ("cloud_images_per_s", "edge_life_months", "frames_per_month"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"cost model: {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.cloud_utilization <= 1:
            raise ConfigError(
                f"cost model: cloud_utilization must be in (0, 1], got {self.cloud_utilization}"
            )

    @property
    def cloud_per_image(self) -> float:
        """Dollars per cloud inference: gpu_hour / (3600 * images_per_s * utilization)."""
        return self.gpu_hour / (3600.0 * self.cloud_images_per_s * self.cloud_utilization)

    @property
    def edge_device_per_month(self) -> float:
        """The device's price spread over its life."""
        return self.edge_device / self.edge_life_months

    @property
    def edge_power_per_month(self) -> float:
        """Average draw (W) for a month of hours, at the kWh price."""
        return self.edge_power_w * HOURS_PER_MONTH / 1000.0 * self.price_per_kwh

    def cost_per_million(
        self,
        mode: Mode | str,
        escalation_share: float = 0.0,
        bytes_per_escalation: float = 0.0,
        bytes_per_frame: float = 0.0,
        *,
        bytes_per_reply: float = 0.0,
    ) -> CostBreakdown:
        """Dollars per 1M frames of one site, by component.

        * ``hybrid``: ``escalation_share`` of the frames go to the cloud, each sending
          ``bytes_per_escalation`` (crops or the whole frame, as privacy allows) and
          receiving ``bytes_per_reply``.
        * ``cloud_only``: every frame sends ``bytes_per_frame`` and receives a reply;
          there is no edge device (``escalation_share`` is not used).
        * ``edge_only``: nothing is sent (the shares and byte counts are not used).

        The site's connectivity is paid in every mode; fixed monthly costs are spread
        over ``frames_per_month``.
        """
        mode = Mode(mode)
        for name, value in (
            ("bytes_per_escalation", bytes_per_escalation),
            ("bytes_per_frame", bytes_per_frame),
            ("bytes_per_reply", bytes_per_reply),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0.0 <= escalation_share <= 1.0:
            raise ValueError(f"escalation_share must be in [0, 1], got {escalation_share!r}")
        if mode is Mode.EDGE_ONLY:
            sent, sent_bytes = 0.0, 0.0
        elif mode is Mode.CLOUD_ONLY:
            sent, sent_bytes = float(MILLION), MILLION * (bytes_per_frame + bytes_per_reply)
        else:
            sent = MILLION * escalation_share
            sent_bytes = sent * (bytes_per_escalation + bytes_per_reply)
        per_frame_month = MILLION / self.frames_per_month
        has_edge = mode is not Mode.CLOUD_ONLY
        return CostBreakdown(
            mode=mode,
            cloud_compute=sent * self.images_per_frame * self.cloud_per_image,
            transfer=sent_bytes / BYTES_PER_GB * self.egress_per_gb,
            edge_device=self.edge_device_per_month * per_frame_month if has_edge else 0.0,
            edge_power=self.edge_power_per_month * per_frame_month if has_edge else 0.0,
            connectivity=self.connectivity_per_month * per_frame_month,
        )
