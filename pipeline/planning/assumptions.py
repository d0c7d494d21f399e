"""What the planner is told besides the figures: tier capacities, the fleet, the weights.

Stated defaults, each to replace with your own: the largest model each tier takes
(:class:`TierCapabilities`, a hard constraint), how many units an update of a stage
has to reach (:class:`Fleet`), and how much each soft factor of the score counts
(:class:`Weights`). ``docs/pipelines.md`` argues the defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.planning.pipelines import Tier
from schemas.checks import require_int, require_number
from schemas.errors import ConfigError

__all__ = ["Fleet", "TierCapabilities", "Weights"]


@dataclass(frozen=True, slots=True)
class TierCapabilities:
    """The largest model each tier takes, in bytes (None: no limit). Stated defaults."""

    device_max_model_bytes: int | None = 1_000_000
    edge_max_model_bytes: int | None = 100_000_000
    cloud_max_model_bytes: int | None = None

    def limit(self, tier: Tier) -> int | None:
        """The model size limit of ``tier``."""
        return {
            Tier.DEVICE: self.device_max_model_bytes,
            Tier.EDGE: self.edge_max_model_bytes,
            Tier.CLOUD: self.cloud_max_model_bytes,
        }[tier]


@dataclass(frozen=True, slots=True)
class Fleet:
    """How many of each unit there are: what an update of one stage has to reach. Assumed."""

    sites: int = 10
    cameras_per_site: int = 4

    def __post_init__(self) -> None:
        for name in ("sites", "cameras_per_site"):
            require_int(f"fleet: {name}", getattr(self, name), 1)

    def units(self, tier: Tier) -> int:
        """Units to update when a stage runs on ``tier``: every camera, every site, or one cloud."""
        return {
            Tier.DEVICE: self.sites * self.cameras_per_site,
            Tier.EDGE: self.sites,
            Tier.CLOUD: 1,
        }[tier]


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each soft factor counts; the score is their weighted mean, in [0, 1].

    ``cost_scale_per_million``: the cost, in US$ per 1M inferences, at which the cost
    factor is 0.5 (it is 1 / (1 + cost / scale)).
    """

    latency: float = 4.0
    sensitivity: float = 2.0
    throughput: float = 2.0
    cost: float = 1.0
    operations: float = 1.0
    cost_scale_per_million: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            require_number(f"weights: {name}", value, 0)
        if self.cost_scale_per_million <= 0:
            raise ConfigError("weights: cost_scale_per_million must be > 0")
        if self.latency + self.sensitivity + self.throughput + self.cost + self.operations <= 0:
            raise ConfigError("weights: at least one weight must be > 0")
