"""docker-compose.yml as the compose tests read it: interpolated as compose does, its
services by kind (hybridfleet workers and cameras, hub and site nats-servers), and
what they mount and pass."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ROLES = ("edge", "cloud", "camera")


# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a $.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<sep>:?[-?])(?P<arg>[^}]*))?\})"
)
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()


def interpolate(text: str, env: Mapping[str, str]) -> str:
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


def compose_variables() -> dict[str, str]:
    """A value for every variable the compose file requires (a password each)."""
    names = {m["name"] for m in _INTERPOLATION.finditer(COMPOSE_TEXT) if m["sep"] in (":?", "?")}
    return {name: f"pw-{name}" for name in names}


def compose_file(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose reads it, with ``env`` (default: ``compose_variables()``)."""
    text = interpolate(COMPOSE_TEXT, compose_variables() if env is None else env)
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def raw_compose_services() -> dict[str, dict[str, Any]]:
    """The services before interpolation: where each ${VARIABLE} is used."""
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_TEXT)["services"]
    return services


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose_file()["services"]
    return services


def _role(service: dict[str, Any]) -> str | None:
    """edge, cloud or camera for a service running ``hybridfleet``; None otherwise."""
    if service.get("build") != "." or "entrypoint" in service:
        return None
    return next(str(arg) for arg in service["command"] if arg in ROLES)


def hybridfleet_services() -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        name: (role, service)
        for name, service in compose_services().items()
        if (role := _role(service)) is not None
    }


def nats_services(conf: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose_services().items()
        if service.get("entrypoint") == ["nats-server"]
        and any(v.startswith(f"./deploy/{conf}:") for v in service["volumes"])
    }


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def host_path(mount: str) -> Path | None:
    source = mount.split(":", 1)[0]
    return ROOT / source if source.startswith(".") else None


def container_path(service: dict[str, Any], host: Path) -> str:
    for mount in service["volumes"]:
        if host_path(mount) == host:
            return str(mount.split(":")[1])
    raise AssertionError(f"{host} is not mounted")
