"""docker-compose.yml, deploy/ and pipeline/fleet/launcher.py describe the same fleet (no
docker engine).

* the compose file parses, and every file or folder it mounts is in the repository;
* every hybridfleet service runs a command that ``fleet up`` runs too (same subcommand
  and flags), with the same settings file and the same per-process variables;
* the nats-server configs have the settings of pipeline/messaging/topology.py, and the users and
  permissions of pipeline/messaging/security.py; every process logs in as its role's user;
* the image installs every third-party module its packages import, and its build
  context (.dockerignore) holds what the Dockerfile copies and nothing else;
* the stop order is cameras, edge workers, cloud workers, servers; host ports move;
* Prometheus scrapes every worker's metrics port;
* every metric the Grafana dashboard queries is one a worker exposes.

deploy/compose-check.sh (``make compose-check``) runs the stack for real.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client import CollectorRegistry

from cloud_worker.metrics import CloudMetrics
from edge_worker.metrics import EdgeMetrics
from pipeline.config import load_settings
from pipeline.fleet.launcher import (
    DEFAULT_CONFIG_DIR,
    FleetOptions,
    camera_command,
    worker_command,
    worker_env,
)
from pipeline.messaging.security import SITE_ROLES, leaf_permissions, site_permissions
from pipeline.messaging.server import NatsServer
from pipeline.messaging.topology import HUB_DOMAIN, SITE_PING_INTERVAL

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


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a $.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<sep>:?[-?])(?P<arg>[^}]*))?\})"
)
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()


def _interpolate(text: str, env: Mapping[str, str]) -> str:
    """What compose makes of ``text`` with the variables ``env`` (unset: missing)."""

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        value, sep = env.get(m["name"]), m["sep"] or ""
        if sep.endswith("?") and (value is None or (sep == ":?" and value == "")):
            raise KeyError(f"${{{m['name']}}} is required: {m['arg']}")
        if sep.endswith("-") and (value is None or (sep == ":-" and value == "")):
            return str(m["arg"])
        return value or ""

    return _INTERPOLATION.sub(one, text)


def _variables() -> dict[str, str]:
    """A value for every variable the compose file requires (a password each)."""
    names = {m["name"] for m in _INTERPOLATION.finditer(COMPOSE_TEXT) if m["sep"] in (":?", "?")}
    return {name: f"pw-{name}" for name in names}


def _compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose reads it, with ``env`` (default: ``_variables()``)."""
    text = _interpolate(COMPOSE_TEXT, _variables() if env is None else env)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _raw_services() -> dict[str, dict[str, Any]]:
    """The services before interpolation: where each ${VARIABLE} is used."""
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_TEXT)["services"]
    return services


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
    # The leaf link lists every node: its URLs carry the leaf user's password, so they
    # come from the environment (test_each_site_links_to_every_hub_node_as_its_leaf_user).
    assert "urls: [$HF_LEAF_URL_1, $HF_LEAF_URL_2, $HF_LEAF_URL_3]" in site
    assert len(hubs) == 3
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


# ---------------------------------------------------------------------------- the image

# The packages of the image: the Dockerfile's COPY sources that are Python packages.
DOCKERFILE = ROOT / "Dockerfile"


def _dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def _copy_sources() -> list[str]:
    """The build-context paths the Dockerfile copies (``COPY src... dest``)."""
    sources = []
    for line in _dockerfile_lines():
        words = shlex.split(line)
        if words[0].upper() == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def _image_packages() -> list[str]:
    return [s for s in _copy_sources() if (ROOT / s / "__init__.py").is_file()]


def _installed_extras(lines: Iterable[str]) -> set[str]:
    """The extras of the project's own ``pip install`` ('.' or '.[a,b]') in ``lines``."""
    installs = []
    for line in lines:
        for command in re.split(r"&&|;", line):
            words = shlex.split(command.replace("RUN ", " ", 1))
            if "pip" in " ".join(words[:1]) and "install" in words:
                installs += [w for w in words if w == "." or w.startswith(".[")]
    assert len(installs) == 1, f"one pip install of the project expected, found {installs}"
    return set(filter(None, installs[0][2:-1].split(","))) if installs[0] != "." else set()


def _requirement_closure(extras: Iterable[str]) -> set[str]:
    """Every distribution ``pip install '.[extras]'`` installs: the project's requirements
    and theirs, as the installed distributions here declare them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    pending = [Requirement(r) for r in project["dependencies"]]
    pending += [Requirement(r) for e in extras for r in optional[e]]
    closure: set[str] = set()
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project["name"]):  # hybridfleet[models] in an extra
            pending += [Requirement(r) for e in req.extras for r in optional[e]]
            continue
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = importlib.metadata.distribution(req.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for sub in map(Requirement, requires):
            wanted = ("", *req.extras)
            try:
                if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                    pending.append(sub)
            except UndefinedEnvironmentName:
                continue
    return closure


def _third_party_imports(packages: Iterable[str]) -> dict[str, str]:
    """Top-level modules imported anywhere in ``packages`` (also inside functions) that
    are neither the standard library nor the image's own packages -> a file importing it."""
    own = set(packages)
    found: dict[str, str] = {}
    for package in sorted(own):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in own or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _not_installed(extras: Iterable[str]) -> dict[str, str]:
    """Modules the image's packages import that ``pip install '.[extras]'`` leaves out."""
    closure = _requirement_closure(extras)
    owners = importlib.metadata.packages_distributions()
    return {
        module: where
        for module, where in _third_party_imports(_image_packages()).items()
        if not {canonicalize_name(d) for d in owners.get(module, [])} & closure
    }


def test_the_image_installs_every_module_its_packages_import() -> None:
    # The camera simulator imports scikit-learn (pipeline/inference/digits.py); an image of the
    # core dependencies alone crash-looped its cameras with ModuleNotFoundError.
    packages = {"schemas", "pipeline", "edge_worker", "cloud_worker", "models"}
    assert set(_image_packages()) == packages
    missing = _not_installed(_installed_extras(_dockerfile_lines()))
    assert missing == {}, f"the image's code imports them; its pip line leaves them out: {missing}"


def test_the_import_check_catches_an_image_without_the_extra() -> None:
    # The Dockerfile's old line: core dependencies only.
    extras = _installed_extras(["RUN pip install --no-cache-dir -e . && useradd x"])
    assert extras == set()
    assert "sklearn" in _not_installed(extras)
    assert _installed_extras(["RUN /opt/v/bin/pip install -e '.[models,dev]'"]) == {"models", "dev"}


def test_the_image_has_a_writable_home_and_runs_as_a_user() -> None:
    # onnxruntime keeps a telemetry id under $HOME: without one, every start logged
    # "Failed to persist telemetry device ID".
    lines = _dockerfile_lines()
    env = " ".join(line for line in lines if line.startswith("ENV "))
    home = re.search(r"\bHOME=(\S+)", env)
    assert home, "the image sets no HOME"
    useradd = next(line for line in lines if "useradd" in line)
    assert f"--home-dir {home[1]}" in useradd and "--create-home" in useradd
    assert [line.split()[1] for line in lines if line.startswith("USER ")] == ["hybridfleet"]


# ---------------------------------------------------------------------------- .dockerignore


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _dockerignore() -> list[tuple[bool, re.Pattern[str], int]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((keep, _glob_regex(pattern), pattern.count("/") + 1))
    return rules


def _ignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule that
    matches the path, or the leading folders of it with as many parts, decides."""
    parts = path.split("/")
    ignored = False
    for keep, regex, depth in _dockerignore():
        if regex.match(path) or (len(parts) > depth and regex.match("/".join(parts[:depth]))):
            ignored = not keep
    return ignored


def test_the_build_context_has_what_the_dockerfile_copies() -> None:
    sources = _copy_sources()
    assert sources, "the Dockerfile copies nothing?"
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [
            p for p in files if "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
        assert kept, source
        for file in kept:
            relative = file.relative_to(ROOT).as_posix()
            assert not _ignored(relative), f"COPY {source}: .dockerignore drops {relative}"


def test_the_build_context_has_nothing_else() -> None:
    # A context from a working checkout was 915 MB: the virtual environment.
    for path in (".venv/bin/python", ".venv/lib/x.so", ".git/HEAD", ".env", "bench/results/a.json",
                 ".hybridfleet/hub-1/jetstream/x", ".mypy_cache/x", "pipeline/__pycache__/a.pyc",
                 "hybridfleet.egg-info/PKG-INFO", "tests/unit/test_compose.py", "docs/x.md"):
        assert _ignored(path), f"{path} would be sent to the Docker engine"
    sources = {s.split("/")[0] for s in _copy_sources()}
    for entry in ROOT.iterdir():
        if entry.name not in sources and entry.name not in ("Dockerfile", ".dockerignore"):
            probe = entry.name if entry.is_file() else f"{entry.name}/some-file"
            assert _ignored(probe), f"{entry.name} is in the build context, and no COPY needs it"


# ---------------------------------------------------------------------------- start and stop


def _depends_on(service: dict[str, Any]) -> set[str]:
    deps = service.get("depends_on", [])
    return set(deps)


def _stop_waves() -> list[set[str]]:
    """The order ``docker compose stop`` stops the services in: a service stops once
    every service that depends on it has stopped."""
    services = _services()
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
    for name, (role, _) in _hybridfleet_services().items():
        by_role.setdefault(role, []).append(name)
    hubs, sites = _nats_services("nats-hub.conf"), _nats_services("nats-site.conf")
    order = [by_role["camera"], by_role["edge"], by_role["cloud"], sorted(hubs)]
    for earlier, later in itertools.pairwise(order):
        for a in earlier:
            for b in later:
                assert _wave_of(a, waves) < _wave_of(b, waves), f"{a} must stop before {b}"
    for edge in by_role["edge"]:
        site = _services()[edge]["environment"]["HYBRIDFLEET_EDGE_SITE"]
        assert _wave_of(edge, waves) < _wave_of(site, waves), f"{edge} stops after its server"
    for site in sites:
        assert all(_wave_of(site, waves) < _wave_of(h, waves) for h in hubs), site


def test_every_hybridfleet_process_gets_its_signals() -> None:
    # Without an init, the process is PID 1, for which the kernel drops a SIGTERM it
    # has no handler for: `docker compose stop` then killed the cameras after 10 s.
    for name, service in _services().items():
        if service.get("build") == ".":
            assert service.get("init") is True, name


def test_host_ports_are_on_loopback_and_can_be_moved() -> None:
    # 4222, 4223 and 8222 clashed with a local `fleet up` or a test's nats-server.
    clashing = {4222, 4223, 6222, 7422, 8222}
    published = 0
    for name, service in _raw_services().items():
        for port in service.get("ports", []):
            published += 1
            m = re.fullmatch(r"127\.0\.0\.1:\$\{(HF_[A-Z0-9_]+_PORT):-(\d+)\}:(\d+)", port)
            assert m, f"{name}: {port} must be 127.0.0.1:${{HF_..._PORT:-default}}:port"
            assert int(m[2]) not in clashing, f"{name}: default host port {m[2]}"
    assert published
    site1 = _compose({**_variables(), "HF_SITE1_PORT": "24222"})["services"]["site1"]
    assert site1["ports"] == ["127.0.0.1:24222:4222"]


# ---------------------------------------------------------------------------- users


def _compose_auth() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_auth", DEPLOY / "compose_auth.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _auth_users(text: str) -> dict[str, dict[str, Any]]:
    """The users of a deploy/nats-auth file, by name; a password is its variable's name."""
    body = re.sub(r"^#.*$", "", text, flags=re.M)
    body = re.sub(r'"password": \$(\w+)', r'"password": "$\1"', body)
    users = json.loads(body.split("users = ", 1)[1].rsplit("}", 1)[0])
    return {u["user"]: u for u in users}


def _site_workers() -> dict[str, list[str]]:
    workers: dict[str, list[str]] = {}
    for role, service in _hybridfleet_services().values():
        if role == "edge":
            env = service["environment"]
            site, worker = env["HYBRIDFLEET_EDGE_SITE"], env["HYBRIDFLEET_EDGE_WORKER_ID"]
            workers.setdefault(site, []).append(worker)
    return {site: sorted(ids) for site, ids in workers.items()}


def test_the_nats_users_are_those_of_pipeline_security() -> None:
    # deploy/nats-auth is generated; a change to pipeline/messaging/security.py or to the sites
    # and edge workers of the compose file needs `deploy/compose_auth.py conf`.
    auth = _compose_auth()
    topology = auth.compose_topology(_compose())
    assert topology == _site_workers()
    for name, text in auth.render(topology).items():
        path = DEPLOY / "nats-auth" / name
        assert path.exists() and path.read_text() == text, (
            f"deploy/nats-auth/{name} is stale: run .venv/bin/python deploy/compose_auth.py conf"
        )
    assert sorted(p.name for p in (DEPLOY / "nats-auth").glob("*.conf")) == sorted(
        ["hub.conf", *(f"{site}.conf" for site in topology)]
    )


def test_each_site_server_enforces_its_own_users() -> None:
    for site, workers in _site_workers().items():
        users = _auth_users((DEPLOY / "nats-auth" / f"{site}.conf").read_text())
        assert set(users) == {f"{role}-{site}" for role in SITE_ROLES}
        expected = site_permissions(site, workers)
        for role in SITE_ROLES:
            assert users[f"{role}-{site}"]["permissions"] == expected[role].block(), (site, role)
        camera = users[f"camera-{site}"]["permissions"]
        assert camera["publish"]["allow"] == [f"frames.{site}.>", f"infer.{site}"]
        # Only the edge workers store escalations.
        escalating = [u for u, v in users.items() if any(
            s.startswith("escalations.") for s in v["permissions"]["publish"]["allow"])]
        assert escalating == [f"edge-{site}"]
        others = [s for s in _site_workers() if s != site]
        for user in users.values():
            allowed = user["permissions"]["publish"]["allow"]
            allowed += user["permissions"]["subscribe"]["allow"]
            for subject in allowed:
                assert not any(other in subject for other in others), (site, user["user"], subject)
    hub = _auth_users((DEPLOY / "nats-auth" / "hub.conf").read_text())
    assert set(hub) == {"cloud", *(f"leaf-{s}" for s in _site_workers())}
    for site, workers in _site_workers().items():
        assert hub[f"leaf-{site}"]["permissions"] == leaf_permissions(site, workers).block()


def test_every_nats_server_includes_its_users() -> None:
    for conf in ("nats-hub.conf", "nats-site.conf"):
        assert 'include "auth.conf"' in (DEPLOY / conf).read_text(), conf
        for name, service in _nats_services(conf).items():
            mounted = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
            expected = "hub.conf" if conf == "nats-hub.conf" else f"{name}.conf"
            assert mounted["/etc/nats/auth.conf"] == f"./deploy/nats-auth/{expected}", name
            # Every password the server's users need is in its environment, from .env.
            text = (DEPLOY / "nats-auth" / expected).read_text()
            raw = _raw_services()[name]["environment"]
            for var in re.findall(r"\$(HF_\w+_PASSWORD)", text):
                assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", str(raw.get(var))), (name, var)


def test_each_site_links_to_every_hub_node_as_its_leaf_user() -> None:
    auth = _compose_auth()
    hubs = sorted(_nats_services("nats-hub.conf"))
    for site, service in _nats_services("nats-site.conf").items():
        env = service["environment"]
        urls = [urlsplit(env[f"HF_LEAF_URL_{i}"]) for i in range(1, len(hubs) + 1)]
        assert [u.hostname for u in urls] == hubs, site
        expected = ("nats-leaf", 7422, f"leaf-{site}")
        assert {(u.scheme, u.port, u.username) for u in urls} == {expected}
        assert {u.password for u in urls} == {f"pw-{auth.leaf_password_var(site)}"}, site


def test_every_process_logs_in_as_its_roles_user() -> None:
    auth = _compose_auth()
    for name, (role, service) in _hybridfleet_services().items():
        env = service["environment"]
        site = env.get("HYBRIDFLEET_EDGE_SITE") or (
            _flag(service["command"], "--site") if role == "camera" else None
        )
        if role == "cloud":
            user, var = "cloud", auth.cloud_password_var()
        else:
            user, var = auth.site_user(site, role), auth.site_password_var(site, role)
        for url in env["HYBRIDFLEET_NATS_URL"].split(","):
            parts = urlsplit(url.strip())
            assert (parts.username, parts.password) == (user, f"pw-{var}"), name


def test_compose_refuses_to_start_without_the_passwords() -> None:
    with pytest.raises(KeyError, match=r"compose_auth\.py env"):
        _compose({})


def test_the_env_file_gets_a_password_for_every_user(tmp_path: Path) -> None:
    auth = _compose_auth()
    names = auth.compose_password_vars(COMPOSE_TEXT)
    assert set(names) == set(_variables())
    env = tmp_path / ".env"
    env.write_text("HF_CLOUD_PASSWORD=kept\nOTHER=1")
    added = auth.write_env(env, names)
    assert set(added) == set(names) - {"HF_CLOUD_PASSWORD"}
    lines = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    assert lines["HF_CLOUD_PASSWORD"] == "kept" and lines["OTHER"] == "1"
    assert all(re.fullmatch(r"hf[0-9a-f]{40}", lines[n]) for n in added)
    assert env.stat().st_mode & 0o777 == 0o600
    assert auth.write_env(env, names) == []
    _compose(lines)  # compose starts with them
