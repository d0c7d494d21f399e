"""The users of a secure ``fleet up``, kept in ``<workdir>/credentials.json`` (mode 0600).

``fleet up`` turns on the per-site users of ``pipeline.messaging.security`` unless it is told
``--insecure``: on each site server ``camera``, ``edge`` and ``operator``; on the hub
``cloud`` and one ``leaf-<site>`` per site's leaf link. The passwords are generated on
the first start and kept in the working directory, so a fleet started again in the
same directory keeps them, and so do the operator's scripts.

``fleet_url`` gives the commands that talk to a running fleet (``infer``, ``tail``,
``dead-letters``, ``fleet status``) the URL of a site server or of the hub, with the
credentials of a role in it when the fleet is secure.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.fleet.spec import FLEET_FILE
from pipeline.messaging.security import SITE_ROLES, Credentials
from schemas.errors import ConfigError

__all__ = ["CREDENTIALS_FILE", "FleetCredentials", "fleet_url"]

CREDENTIALS_FILE = "credentials.json"
# A site's users: its server's roles, and its leaf link's user at the hub.
_SITE_USERS = (*SITE_ROLES, "leaf")


def _user_name(site: str, role: str) -> str:
    return f"leaf-{site}" if role == "leaf" else f"{role}-{site}"


@dataclass(frozen=True)
class FleetCredentials:
    """Every user of a fleet: ``cloud`` at the hub, and per site a user per role of
    ``SITE_ROLES`` plus ``leaf`` (the site's leaf link's user at the hub)."""

    cloud: Credentials
    sites: Mapping[str, Mapping[str, Credentials]]

    @classmethod
    def generate(cls, sites: Sequence[str], edge_workers: Sequence[str]) -> FleetCredentials:
        """New passwords for ``sites``, whose edge workers have the ids ``edge_workers``."""
        return cls(
            Credentials.generate("cloud"),
            {
                site: {
                    role: Credentials.generate(_user_name(site, role), edge_workers)
                    for role in _SITE_USERS
                }
                for site in sites
            },
        )

    @classmethod
    def load_or_generate(
        cls, path: Path, sites: Sequence[str], edge_workers: Sequence[str]
    ) -> FleetCredentials:
        """The users kept in ``path``, with any site or role that is missing added.

        Worker ids are not kept: they come from ``edge_workers`` at every start.
        """
        fresh = cls.generate(sites, edge_workers)
        if not path.exists():
            return fresh
        kept = cls.load(path)
        merged: dict[str, dict[str, Credentials]] = {}
        for site in sites:
            merged[site] = {}
            for role in _SITE_USERS:
                old = kept.sites.get(site, {}).get(role)
                merged[site][role] = (
                    replace(old, workers=tuple(edge_workers))
                    if old is not None
                    else fresh.sites[site][role]
                )
        return cls(kept.cloud, merged)

    @classmethod
    def load(cls, path: Path) -> FleetCredentials:
        """Read a ``credentials.json`` that ``save`` wrote."""
        try:
            raw = json.loads(path.read_text())
            cloud = _credentials(raw["cloud"])
            sites = {
                site: {role: _credentials(c) for role, c in users.items()}
                for site, users in raw["sites"].items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a fleet's credentials file ({exc!r}); delete it and start "
                "the fleet again to generate new users"
            ) from exc
        return cls(cloud, sites)

    def save(self, path: Path) -> None:
        """Write the users to ``path``, readable by this user only (0600)."""
        data = {
            "schema": 1,
            "cloud": _as_dict(self.cloud),
            "sites": {
                site: {role: _as_dict(c) for role, c in users.items()}
                for site, users in self.sites.items()
            },
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=2) + "\n")
        os.chmod(tmp, 0o600)  # an older file of the same name kept its mode
        tmp.replace(path)

    def site_users(self, site: str) -> dict[str, Credentials]:
        """The users of ``site``'s server, by role (``camera``, ``edge``, ``operator``)."""
        return {role: self.sites[site][role] for role in SITE_ROLES}

    def leaves(self) -> dict[str, Credentials]:
        """Each site's leaf link user at the hub, by site."""
        return {site: users["leaf"] for site, users in self.sites.items()}

    def user(self, site: str | None, role: str) -> Credentials:
        """The user of ``role`` at ``site`` (None: the hub, where the one user is ``cloud``)."""
        if site is None:
            if role != "cloud":
                raise ConfigError(f"the hub has no {role!r} user; use role 'cloud'")
            return self.cloud
        if site not in self.sites:
            raise ConfigError(f"the fleet has no site {site!r}; it has {sorted(self.sites)}")
        if role not in self.sites[site]:
            raise ConfigError(f"site {site} has no {role!r} user; roles: {list(_SITE_USERS)}")
        return self.sites[site][role]


def _credentials(raw: Any) -> Credentials:
    return Credentials(str(raw["user"]), str(raw["password"]))


def _as_dict(credentials: Credentials) -> dict[str, str]:
    return {"user": credentials.user, "password": credentials.password}


def fleet_url(workdir: Path, site: str | None, role: str = "operator") -> str:
    """The URL of ``site``'s server (None: every hub node), from a fleet's ``fleet.json``.

    When the fleet is secure, the URL carries the credentials of ``role`` (at the hub
    the one role is ``cloud``). Raises ``ConfigError`` saying what is missing.
    """
    path = Path(workdir) / FLEET_FILE
    try:
        fleet = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"no fleet in {workdir}: cannot read {path} ({exc}); start one with "
            "`hybridfleet fleet up` or pass --url"
        ) from exc
    if fleet.get("state") != "running":
        raise ConfigError(f"the fleet in {workdir} is {fleet.get('state')!r}, not running")
    members = fleet.get("members", [])
    if site is None:
        urls = [m["url"] for m in members if m.get("role") == "hub"]
        if role == "operator":
            role = "cloud"  # the hub's one user does the operator's reading there
    else:
        urls = [m["url"] for m in members if m.get("role") == "site" and m.get("site") == site]
    if not urls:
        where = "hub" if site is None else f"site {site!r}"
        raise ConfigError(f"fleet.json in {workdir} lists no server for the {where}")
    url = ",".join(urls)
    if not fleet.get("secure", False):
        return url
    credentials = FleetCredentials.load(Path(workdir) / CREDENTIALS_FILE)
    return credentials.user(site, role).url(url)
