"""docker-compose.yml, deploy/ and pipeline/fleet/launcher.py describe the same fleet (no
docker engine).

* the compose file parses, and every file or folder it mounts is in the repository;
* every hybridfleet service runs a command that ``fleet up`` runs too (same subcommand
  and flags), with the same settings file and the same per-process variables;
* the nats-server configs have the settings of pipeline/messaging/topology.py;
* the stop order is cameras, edge workers, cloud workers, servers; host ports move.

The users and permissions are checked in test_compose_auth.py, the image and its build
context in test_compose_image.py, Prometheus and Grafana in test_compose_monitoring.py.
deploy/compose-check.sh (``make compose-check``) runs the stack for real.
"""

from __future__ import annotations

import inspect
import itertools
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline.config import load_settings
from pipeline.fleet.spec import (
    DEFAULT_CONFIG_DIR,
    FleetOptions,
    camera_command,
    worker_command,
    worker_env,
)
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN, SITE_PING_INTERVAL
from tests.unit.composefile import (
    DEPLOY,
    ROLES,
    ROOT,
    compose_file,
    compose_services,
    compose_variables,
    container_path,
    flag_value,
    host_path,
    hybridfleet_services,
    nats_services,
    raw_compose_services,
)

# Flags only the containers pass: their metrics must listen beyond loopback for
# Prometheus, while `fleet up` keeps the default (127.0.0.1).
CONTAINER_ONLY_FLAGS = frozenset({"--metrics-addr"})


def _shape(argv: list[str]) -> tuple[str, frozenset[str]]:
    """A command line's subcommand and the flags it passes (values may differ)."""
    subcommand = next(arg for arg in argv if arg in ROLES)
    return subcommand, frozenset(a for a in argv if a.startswith("--")) - CONTAINER_ONLY_FLAGS


# ---------------------------------------------------------------------------- compose


def test_every_mounted_file_and_volume_exists() -> None:
    compose = compose_file()
    volumes = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
        for mount in service.get("volumes", []):
            host = host_path(mount)
            if host is None:
                assert mount.split(":", 1)[0] in volumes, f"{name}: volume {mount} not declared"
            else:
                assert host.exists(), f"{name} mounts {host}, which is not in the repository"


def test_the_topology_is_a_hub_of_three_and_two_leaf_sites() -> None:
    hubs = nats_services("nats-hub.conf")
    sites = nats_services("nats-site.conf")
    assert sorted(hubs) == ["hub-1", "hub-2", "hub-3"]
    assert sorted(sites) == ["site1", "site2"]
    for name, service in sites.items():
        assert service["environment"]["SITE"] == name  # its JetStream domain
    roles: dict[str, set[str]] = {}
    for _, (role, service) in hybridfleet_services().items():
        site = service["environment"].get("HYBRIDFLEET_EDGE_SITE") or ""
        roles.setdefault(role, set()).add(site)
    assert roles["edge"] == set(sites)
    assert roles["cloud"] == {""}
    cameras = [s["command"] for r, s in hybridfleet_services().values() if r == "camera"]
    assert sorted(flag_value(c, "--site") for c in cameras) == sorted(sites)


def test_hybridfleet_services_run_the_commands_of_fleet_up() -> None:
    launcher = {
        "edge": _shape(worker_command("edge", "edge.toml", 9100)),
        "cloud": _shape(worker_command("cloud", "cloud.toml", 9200)),
        "camera": _shape(camera_command("site1", 2, 10.0, 60.0)),
    }
    services = hybridfleet_services()
    assert {role for role, _ in services.values()} == set(ROLES)
    for name, (role, service) in services.items():
        assert _shape(service["command"]) == launcher[role], name
        if role == "camera":
            continue
        # The settings file is the one fleet up passes: deploy/fleet/<role>.toml.
        config = flag_value(service["command"], "--config")
        mount = container_path(service, DEFAULT_CONFIG_DIR)
        assert config == f"{mount}/{role}.toml", name
        assert FleetOptions().config_file(role) == DEFAULT_CONFIG_DIR / f"{role}.toml"


def test_hybridfleet_services_set_the_variables_of_fleet_up() -> None:
    hubs = sorted(nats_services("nats-hub.conf"))
    sites = sorted(nats_services("nats-site.conf"))
    for name, (role, service) in hybridfleet_services().items():
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
            site = env.get("HYBRIDFLEET_EDGE_SITE") or flag_value(service["command"], "--site")
            assert hosts == [site], f"{name} must talk to its own site's server"


@pytest.mark.parametrize("role", ["edge", "cloud"])
def test_the_settings_files_load_with_each_service_environment(role: str) -> None:
    path = DEFAULT_CONFIG_DIR / f"{role}.toml"
    for name, (service_role, service) in hybridfleet_services().items():
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
    for name, (role, service) in hybridfleet_services().items():
        env = service.get("environment", {})
        site = str(env.get("HYBRIDFLEET_EDGE_SITE", role))
        key = (site, str(env.get(f"HYBRIDFLEET_{role.upper()}_WORKER_ID", name)))
        assert key not in seen, f"{name} repeats worker id {key}"
        seen.add(key)


# ---------------------------------------------------------------------------- nats configs


def test_the_nats_configs_have_the_settings_of_the_topology() -> None:
    hub = (DEPLOY / "nats-hub.conf").read_text()
    site = (DEPLOY / "nats-site.conf").read_text()
    hubs = sorted(nats_services("nats-hub.conf"))
    default_payload = inspect.signature(NatsServer).parameters["max_payload"].default
    payload = f"max_payload: {default_payload >> 20}MB"
    for text in (hub, site):
        assert "server_name: $NATS_SERVER_NAME" in text
        assert payload in text
    assert f"domain: {HUB_DOMAIN}" in hub
    assert "no_advertise: true" in hub
    for node in hubs:
        assert f"nats-route://{node}:6222" in hub
    # The leaf link lists every node: its URLs carry the leaf user's password, so they
    # come from the environment (test_each_site_links_to_every_hub_node_as_its_leaf_user).
    assert "urls: [$HF_LEAF_URL_1, $HF_LEAF_URL_2, $HF_LEAF_URL_3]" in site
    assert len(hubs) == 3
    assert "domain: $SITE" in site
    assert "sync_interval: always" in site
    assert f'ping_interval: "{SITE_PING_INTERVAL}"' in site
    for name, service in nats_services("nats-site.conf").items():
        assert service["environment"]["NATS_SERVER_NAME"] == f"site-{name}"  # as topology


# ---------------------------------------------------------------------------- start and stop


def _depends_on(service: dict[str, Any]) -> set[str]:
    deps = service.get("depends_on", [])
    return set(deps)


def _stop_waves() -> list[set[str]]:
    """The order ``docker compose stop`` stops the services in: a service stops once
    every service that depends on it has stopped."""
    services = compose_services()
    dependents = {
        name: {n for n, s in services.items() if name in _depends_on(s)} for name in services
    }
    stopped: set[str] = set()
    waves = []
    while len(stopped) < len(services):
        wave = {n for n in services if n not in stopped and dependents[n] <= stopped}
        assert wave, "depends_on has a cycle"
        waves.append(wave)
        stopped |= wave
    return waves


def _wave_of(name: str, waves: list[set[str]]) -> int:
    return next(i for i, wave in enumerate(waves) if name in wave)


def test_compose_stops_cameras_then_edges_then_cloud_then_servers() -> None:
    # Edge workers drain on SIGTERM: they wait for the cloud's answers to their
    # escalations, so the cloud workers and the hub must still be up.
    waves = _stop_waves()
    by_role: dict[str, list[str]] = {}
    for name, (role, _) in hybridfleet_services().items():
        by_role.setdefault(role, []).append(name)
    hubs, sites = nats_services("nats-hub.conf"), nats_services("nats-site.conf")
    order = [by_role["camera"], by_role["edge"], by_role["cloud"], sorted(hubs)]
    for earlier, later in itertools.pairwise(order):
        for a in earlier:
            for b in later:
                assert _wave_of(a, waves) < _wave_of(b, waves), f"{a} must stop before {b}"
    for edge in by_role["edge"]:
        site = compose_services()[edge]["environment"]["HYBRIDFLEET_EDGE_SITE"]
        assert _wave_of(edge, waves) < _wave_of(site, waves), f"{edge} stops after its server"
    for site in sites:
        assert all(_wave_of(site, waves) < _wave_of(h, waves) for h in hubs), site


def test_every_hybridfleet_process_gets_its_signals() -> None:
    # Without an init, the process is PID 1, for which the kernel drops a SIGTERM it
    # has no handler for: `docker compose stop` then killed the cameras after 10 s.
    for name, service in compose_services().items():
        if service.get("build") == ".":
            assert service.get("init") is True, name


def test_host_ports_are_on_loopback_and_can_be_moved() -> None:
    # 4222, 4223 and 8222 clashed with a local `fleet up` or a test's nats-server.
    clashing = {4222, 4223, 6222, 7422, 8222}
    published = 0
    for name, service in raw_compose_services().items():
        for port in service.get("ports", []):
            published += 1
            m = re.fullmatch(r"127\.0\.0\.1:\$\{(HF_[A-Z0-9_]+_PORT):-(\d+)\}:(\d+)", port)
            assert m, f"{name}: {port} must be 127.0.0.1:${{HF_..._PORT:-default}}:port"
            assert int(m[2]) not in clashing, f"{name}: default host port {m[2]}"
    assert published
    site1 = compose_file({**compose_variables(), "HF_SITE1_PORT": "24222"})["services"]["site1"]
    assert site1["ports"] == ["127.0.0.1:24222:4222"]
