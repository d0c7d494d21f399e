"""A secure fleet's users: kept across starts, private to their owner, and found by
``fleet_url``; and the permissions they are given."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pipeline.fleet.auth import CREDENTIALS_FILE, FleetCredentials, fleet_url
from pipeline.messaging.security import Credentials, hub_authorization, site_authorization
from schemas.errors import ConfigError


def test_credentials_are_kept_between_starts_and_readable_only_by_their_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / CREDENTIALS_FILE
    first = FleetCredentials.load_or_generate(path, ["site1"], ["edge-1"])
    first.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = FleetCredentials.load_or_generate(path, ["site1", "site2"], ["edge-1", "edge-2"])
    assert again.cloud == first.cloud
    assert again.user("site1", "camera").password == first.user("site1", "camera").password
    # A new site gets new users; worker ids come from this start, not the file.
    assert again.user("site2", "edge").user == "edge-site2"
    assert again.user("site1", "edge").workers == ("edge-1", "edge-2")
    with pytest.raises(ConfigError, match="no 'admin' user"):
        again.user("site1", "admin")


def test_a_damaged_credentials_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / CREDENTIALS_FILE
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="delete it"):
        FleetCredentials.load(path)


def test_fleet_url_carries_the_roles_credentials_only_when_the_fleet_is_secure(
    tmp_path: Path,
) -> None:
    credentials = FleetCredentials.generate(["site1"], ["edge-1"])
    credentials.save(tmp_path / CREDENTIALS_FILE)
    members = [
        {"role": "hub", "url": "nats://127.0.0.1:1001", "site": ""},
        {"role": "hub", "url": "nats://127.0.0.1:1002", "site": ""},
        {"role": "site", "url": "nats://127.0.0.1:2001", "site": "site1"},
    ]
    fleet = {"state": "running", "secure": True, "members": members}
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    camera = credentials.user("site1", "camera")
    assert fleet_url(tmp_path, "site1", "camera") == camera.url("nats://127.0.0.1:2001")
    cloud = credentials.cloud
    assert fleet_url(tmp_path, None) == (
        f"nats://cloud:{cloud.password}@127.0.0.1:1001,nats://cloud:{cloud.password}@127.0.0.1:1002"
    )
    with pytest.raises(ConfigError, match="no server for the site 'site9'"):
        fleet_url(tmp_path, "site9")
    (tmp_path / "fleet.json").write_text(json.dumps({**fleet, "secure": False}))
    assert fleet_url(tmp_path, "site1") == "nats://127.0.0.1:2001"
    (tmp_path / "fleet.json").write_text(json.dumps({**fleet, "state": "stopped"}))
    with pytest.raises(ConfigError, match="not running"):
        fleet_url(tmp_path, "site1")


def test_every_edge_worker_gets_its_answer_consumer_and_nothing_of_other_sites() -> None:
    edge = Credentials.generate("edge-site1", ["edge-1", "edge-2"])
    block = site_authorization("site1", {"edge": edge, "camera": Credentials.generate("cam")})
    for worker in ("edge-1", "edge-2"):
        assert f"CONSUMER.MSG.NEXT.REPLIES.edge-site1-{worker}" in block
    assert "site2" not in block
    leaf = Credentials.generate("leaf-site1", ["edge-1", "edge-2"])
    hub = hub_authorization(Credentials.generate("cloud"), {"site1": leaf})
    assert "CONSUMER.MSG.NEXT.REPLIES.edge-site1-edge-2" in hub
    assert '"fleet.heartbeat.site1.>"' in hub
    with pytest.raises(ValueError, match="unknown roles"):
        site_authorization("site1", {"intruder": edge})
