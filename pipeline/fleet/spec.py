"""What ``hybridfleet fleet up`` runs: its options, and each process's command line.

Workers are started with the same command lines as the services of
``docker-compose.yml`` (``worker_command``, ``camera_command``), with the settings
files of ``deploy/fleet/`` and what differs per process in ``HYBRIDFLEET_*``
variables (``worker_env``). ``tests/unit/test_compose.py`` holds the two together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.fleet.supervisor import RestartPolicy
from schemas.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_WORKDIR",
    "FLEET_FILE",
    "PROMETHEUS_TARGETS_FILE",
    "FleetOptions",
    "camera_command",
    "site_names",
    "worker_command",
    "worker_env",
]

FLEET_FILE = "fleet.json"
PROMETHEUS_TARGETS_FILE = "prometheus-targets.json"
DEFAULT_WORKDIR = Path(".hybridfleet")
# The settings files docker-compose.yml mounts at /etc/hybridfleet.
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "fleet"


def site_names(count: int) -> list[str]:
    """The sites of a fleet of ``count`` sites: ``site1`` .. ``site<count>``."""
    return [f"site{i}" for i in range(1, count + 1)]


def worker_command(role: str, config_file: str, metrics_port: int) -> list[str]:
    """The ``hybridfleet`` arguments of an edge or cloud worker (as in docker-compose.yml)."""
    if role not in ("edge", "cloud"):
        raise ValueError(f"role must be edge or cloud, got {role!r}")
    return [
        "--log-level",
        "INFO",
        role,
        "--config",
        config_file,
        "--metrics-port",
        str(metrics_port),
    ]


def camera_command(site: str, cameras: int, rate_hz: float, seconds: float) -> list[str]:
    """The ``hybridfleet`` arguments of a site's camera simulator."""
    return [
        "--log-level",
        "INFO",
        "camera",
        "--site",
        site,
        "--cameras",
        str(cameras),
        "--rate",
        f"{rate_hz:g}",
        "--seconds",
        f"{seconds:g}",
    ]


def worker_env(
    role: str,
    *,
    nats_url: str,
    site: str = "",
    worker: str = "",
    sites: Sequence[str] = (),
    replicas: int = 1,
) -> dict[str, str]:
    """The per-process settings, as ``HYBRIDFLEET_*`` variables (they win over the file).

    An edge worker needs its site server's URL, its site and its id. A cloud worker
    needs every hub node's URL, its id, the sites it sources, and the replica count
    that the hub's size allows. A camera needs only its site server's URL.
    """
    env = {"HYBRIDFLEET_NATS_URL": nats_url}
    if role == "edge":
        env.update(HYBRIDFLEET_EDGE_SITE=site, HYBRIDFLEET_EDGE_WORKER_ID=worker)
    elif role == "cloud":
        env.update(
            HYBRIDFLEET_CLOUD_WORKER_ID=worker,
            HYBRIDFLEET_CLOUD_SITES=",".join(sites),
            HYBRIDFLEET_STREAM_REPLICAS=str(replicas),
        )
    elif role != "camera":
        raise ValueError(f"role must be edge, cloud or camera, got {role!r}")
    return env


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """What ``fleet up`` runs. Cameras and rate are per site; rate is frames/s per camera."""

    sites: int = 2
    edge_workers: int = 1
    cloud_workers: int = 1
    hub_nodes: int = 3
    cameras: int = 2
    rate_hz: float = 10.0
    # The simulators stop after this long; the workers keep running until stopped.
    camera_seconds: float = 600.0
    workdir: Path = DEFAULT_WORKDIR
    config_dir: Path = DEFAULT_CONFIG_DIR
    # Per-site users and subject permissions (pipeline/messaging/security.py); False: anyone
    # who reaches a port may publish anything (--insecure).
    secure: bool = True
    # How a worker or camera that exits when it should not is started again.
    restart: RestartPolicy = field(default_factory=RestartPolicy)

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.sites <= 99, "sites must be 1..99"),
            (1 <= self.edge_workers <= 64, "edge_workers must be 1..64"),
            (1 <= self.cloud_workers <= 64, "cloud_workers must be 1..64"),
            (self.hub_nodes in (1, 3), "hub_nodes must be 1 or 3"),
            (self.cameras >= 1, "cameras must be >= 1"),
            (self.rate_hz > 0 and self.camera_seconds > 0, "rate and camera seconds must be > 0"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def edge_worker_ids(self) -> list[str]:
        """The ids of each site's edge workers: ``edge-1`` .. ``edge-K``."""
        return [f"edge-{i}" for i in range(1, self.edge_workers + 1)]

    def config_file(self, role: str) -> Path:
        """The settings file of ``role`` (``edge`` or ``cloud``) in ``config_dir``."""
        path = Path(self.config_dir) / f"{role}.toml"
        if not path.is_file():
            raise ConfigError(f"settings file {path} does not exist (see --config-dir)")
        return path
