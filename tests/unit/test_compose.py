"""docker-compose.yml, deploy/ and pipeline/fleet.py describe the same fleet (no docker engine).

* the compose file parses, and every file or folder it mounts is in the repository;
* every hybridfleet service runs a command that ``fleet up`` runs too (same subcommand
  and flags), with the same settings file and the same per-process variables;
* the nats-server configs have the settings of pipeline/topology.py;
* Prometheus scrapes every worker's metrics port;
* every metric the Grafana dashboard queries is one a worker exposes.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cloud_worker.metrics import CloudMetrics
from edge_worker.metrics import EdgeMetrics
from pipeline.config import load_settings
from pipeline.fleet import (
    DEFAULT_CONFIG_DIR,
    FleetOptions,
    camera_command,
    worker_command,
    worker_env,
)
from pipeline.natsserver import NatsServer
from pipeline.topology import HUB_DOMAIN, SITE_PING_INTERVAL

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hybridfleet.json"

# Metrics the dashboard may show before a worker exposes them: add a name here while
# its metric is being written, and remove it once EdgeMetrics or CloudMetrics has it.
# (hybridfleet_edge_drift_agreement and hybridfleet_edge_site_backlog were here; both
# are exposed now.)
PENDING_METRICS: frozenset[str] = frozenset()

# Flags only the containers pass: their metrics must listen beyond loopback for
# Prometheus, while `fleet up` keeps the default (127.0.0.1).
CONTAINER_ONLY_FLAGS = frozenset({"--metrics-addr"})

ROLES = ("edge", "cloud", "camera")


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _role(service: dict[str, Any]) -> str | None:
    """edge, cloud or camera for a service running ``hybridfleet``; None otherwise."""
    if service.get("build") != "." or "entrypoint" in service:
        return None
    return next(str(arg) for arg in service["command"] if arg in ROLES)


def _hybridfleet_services() -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        name: (role, service)
        for name, service in _services().items()
        if (role := _role(service)) is not None
    }


def _nats_services(conf: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in _services().items()
        if service.get("entrypoint") == ["nats-server"]
        and any(v.startswith(f"./deploy/{conf}:") for v in service["volumes"])
    }


def _shape(argv: list[str]) -> tuple[str, frozenset[str]]:
    """A command line's subcommand and the flags it passes (values may differ)."""
    subcommand = next(arg for arg in argv if arg in ROLES)
    return subcommand, frozenset(a for a in argv if a.startswith("--")) - CONTAINER_ONLY_FLAGS


def _flag(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _host_path(mount: str) -> Path | None:
    source = mount.split(":", 1)[0]
    return ROOT / source if source.startswith(".") else None


def _container_path(service: dict[str, Any], host: Path) -> str:
    for mount in service["volumes"]:
        if _host_path(mount) == host:
            return str(mount.split(":")[1])
    raise AssertionError(f"{host} is not mounted")


# ---------------------------------------------------------------------------- compose


def test_every_mounted_file_and_volume_exists() -> None:
    compose = _compose()
    volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for mount in service.get("volumes", []):
            host = _host_path(mount)
            if host is None:
                assert mount.split(":", 1)[0] in volumes, f"{name}: volume {mount} not declared"
            else:
                assert host.exists(), f"{name} mounts {host}, which is not in the repository"


def test_the_topology_is_a_hub_of_three_and_two_leaf_sites() -> None:
    hubs = _nats_services("nats-hub.conf")
    sites = _nats_services("nats-site.conf")
    assert sorted(hubs) == ["hub-1", "hub-2", "hub-3"]
    assert sorted(sites) == ["site1", "site2"]
    for name, service in sites.items():
        assert service["environment"]["SITE"] == name  # its JetStream domain
    roles: dict[str, set[str]] = {}
    for _, (role, service) in _hybridfleet_services().items():
        site = service["environment"].get("HYBRIDFLEET_EDGE_SITE") or ""
        roles.setdefault(role, set()).add(site)
    assert roles["edge"] == set(sites)
    assert roles["cloud"] == {""}
    cameras = [s["command"] for r, s in _hybridfleet_services().values() if r == "camera"]
    assert sorted(_flag(c, "--site") for c in cameras) == sorted(sites)


def test_hybridfleet_services_run_the_commands_of_fleet_up() -> None:
    launcher = {
        "edge": _shape(worker_command("edge", "edge.toml", 9100)),
        "cloud": _shape(worker_command("cloud", "cloud.toml", 9200)),
        "camera": _shape(camera_command("site1", 2, 10.0, 60.0)),
    }
    services = _hybridfleet_services()
    assert {role for role, _ in services.values()} == set(ROLES)
    for name, (role, service) in services.items():
        assert _shape(service["command"]) == launcher[role], name
        if role == "camera":
            continue
        # The settings file is the one fleet up passes: deploy/fleet/<role>.toml.
        config = _flag(service["command"], "--config")
        mount = _container_path(service, DEFAULT_CONFIG_DIR)
        assert config == f"{mount}/{role}.toml", name
        assert FleetOptions().config_file(role) == DEFAULT_CONFIG_DIR / f"{role}.toml"


def test_hybridfleet_services_set_the_variables_of_fleet_up() -> None:
    hubs = sorted(_nats_services("nats-hub.conf"))
    sites = sorted(_nats_services("nats-site.conf"))
    for name, (role, service) in _hybridfleet_services().items():
        env = {k: str(v) for k, v in service["environment"].items()}
        expected = worker_env(
            role,
            nats_url="nats://x:4222",
            site="site1",
            worker="w",
            sites=sites,
            replicas=len(hubs),
        )
        assert set(env) == set(expected), name
        hosts = [urlsplit(u).hostname for u in env["HYBRIDFLEET_NATS_URL"].split(",")]
        if role == "cloud":
            assert hosts == hubs, name  # every hub node, for fail-over
            assert env["HYBRIDFLEET_CLOUD_SITES"] == expected["HYBRIDFLEET_CLOUD_SITES"], name
            assert env["HYBRIDFLEET_STREAM_REPLICAS"] == str(len(hubs)), name
        else:
            site = env.get("HYBRIDFLEET_EDGE_SITE") or _flag(service["command"], "--site")
            assert hosts == [site], f"{name} must talk to its own site's server"


@pytest.mark.parametrize("role", ["edge", "cloud"])
def test_the_settings_files_load_with_each_service_environment(role: str) -> None:
    path = DEFAULT_CONFIG_DIR / f"{role}.toml"
    for name, (service_role, service) in _hybridfleet_services().items():
        if service_role != role:
            continue
        env = {k: str(v) for k, v in service["environment"].items()}
        settings = load_settings(path, env=env)
        if role == "edge":
            assert settings.edge.site == env["HYBRIDFLEET_EDGE_SITE"], name
            assert settings.edge.cloud_domain == HUB_DOMAIN, name
        else:
            assert settings.cloud.sites_are_domains, name
            assert settings.cloud.site_list == ["site1", "site2"], name


def test_the_worker_ids_of_a_site_are_distinct() -> None:
    seen: set[tuple[str, str]] = set()
    for name, (role, service) in _hybridfleet_services().items():
        env = service.get("environment", {})
        site = str(env.get("HYBRIDFLEET_EDGE_SITE", role))
        key = (site, str(env.get(f"HYBRIDFLEET_{role.upper()}_WORKER_ID", name)))
        assert key not in seen, f"{name} repeats worker id {key}"
        seen.add(key)


# ---------------------------------------------------------------------------- nats configs


def test_the_nats_configs_have_the_settings_of_the_topology() -> None:
    hub = (DEPLOY / "nats-hub.conf").read_text()
    site = (DEPLOY / "nats-site.conf").read_text()
    hubs = sorted(_nats_services("nats-hub.conf"))
    default_payload = inspect.signature(NatsServer).parameters["max_payload"].default
    payload = f"max_payload: {default_payload >> 20}MB"
    for text in (hub, site):
        assert "server_name: $NATS_SERVER_NAME" in text
        assert payload in text
    assert f"domain: {HUB_DOMAIN}" in hub
    assert "no_advertise: true" in hub
    for node in hubs:
        assert f"nats-route://{node}:6222" in hub
        assert f'"nats-leaf://{node}:7422"' in site  # the leaf link lists every node
    assert "domain: $SITE" in site
    assert "sync_interval: always" in site
    assert f'ping_interval: "{SITE_PING_INTERVAL}"' in site
    for name, service in _nats_services("nats-site.conf").items():
        assert service["environment"]["NATS_SERVER_NAME"] == f"site-{name}"  # as topology


# ---------------------------------------------------------------------------- prometheus


def test_prometheus_scrapes_every_worker_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    scraped: dict[str, dict[str, str]] = {}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                scraped[target] = static.get("labels", {})
    expected: dict[str, dict[str, str]] = {}
    for name, (role, service) in _hybridfleet_services().items():
        if role == "camera":
            continue
        env = service["environment"]
        labels = {"worker": env[f"HYBRIDFLEET_{role.upper()}_WORKER_ID"]}
        if role == "edge":
            labels["site"] = env["HYBRIDFLEET_EDGE_SITE"]
        expected[f"{name}:{_flag(service['command'], '--metrics-port')}"] = labels
    assert scraped == expected


def test_grafana_is_provisioned_with_the_dashboard_and_datasource() -> None:
    grafana = _services()["grafana"]
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert _container_path(grafana, provisioning) == "/etc/grafana/provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "hybridfleet.yml").read_text())
    dashboards_dir = _container_path(grafana, DASHBOARD.parent)
    assert [p["options"]["path"] for p in providers["providers"]] == [dashboards_dir]
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"]}
    assert urlsplit(sources["datasources"][0]["url"]).hostname in _services()
    dashboard = json.loads(DASHBOARD.read_text())
    used = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert used <= uids


# ---------------------------------------------------------------------------- dashboard


def _exposed(registry: CollectorRegistry) -> set[str]:
    """Every sample name a registry exposes, also for labelled metrics not yet observed.

    prometheus_client names a counter ``x`` ``x_total`` on exposition, a histogram
    ``x_bucket``/``_sum``/``_count``, an info ``x_info``.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in suffixes[family.type]}
        # What is exposed now must be among them, or the mapping above is wrong.
        assert {s.name for s in family.samples} <= names, family.name
    return names


def _worker_metric_names() -> set[str]:
    return _exposed(EdgeMetrics().registry) | _exposed(CloudMetrics().registry)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return queries


def test_every_metric_on_the_dashboard_is_exposed_by_a_worker() -> None:
    used = {
        name for query in _dashboard_queries() for name in re.findall(r"hybridfleet_\w+", query)
    }
    assert used, "the dashboard queries no hybridfleet metric"
    assert used - _worker_metric_names() - PENDING_METRICS == set()


def test_the_dashboard_has_a_panel_for_each_question() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    text = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    wanted = {
        "throughput": "rate(hybridfleet_edge_frames_received_total",
        "escalation share": "hybridfleet_edge_escalations_total",
        "latency percentiles": "histogram_quantile(0.99",
        "bytes saved": "hybridfleet_edge_escalated_bytes_total",
        "agreement": "hybridfleet_edge_drift_agreement",
        "model versions": "hybridfleet_edge_model_info",
        "backlog": "hybridfleet_edge_site_backlog",
        "shed": "hybridfleet_edge_shed_frames_total",
        "dead letters": "hybridfleet_cloud_dead_letters_total",
        "link up": "hybridfleet_edge_cloud_link_up",
    }
    missing = [q for q, expr in wanted.items() if not any(expr in e for e in text.values())]
    assert missing == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
