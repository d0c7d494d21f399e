"""Heartbeat: the JSON contract, strict validation, and the p95 latency window."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.fleet.heartbeat import HeartbeatPublisher, LatencyWindow
from schemas.errors import ConfigError, SchemaError
from schemas.heartbeat import (
    MAX_HEARTBEAT_BYTES,
    Health,
    Heartbeat,
    TemperatureSource,
    Tier,
    fleet_key,
    heartbeat_subject,
)

# The field list of /work/notes/contracts.md, "Heartbeats".
CONTRACT_FIELDS = {
    "schema",
    "site",
    "worker",
    "tier",
    "model",
    "model_version",
    "at",
    "started_at",
    "model_since",
    "frames",
    "local",
    "escalated",
    "shed",
    "dead_letters",
    "errors",
    "compared",
    "agreed",
    "latency_p95_ms",
    "queue_depth",
    "pending",
    "link_up",
    "temperature_c",
    "temperature_source",
    "health",
    "backlog",
}


def make_beat(**changes: Any) -> Heartbeat:
    fields: dict[str, Any] = {
        "site": "site1",
        "worker": "edge-1",
        "tier": Tier.EDGE,
        "model": "digits-mlp32",
        "model_version": "1.0.0",
        "at": 1_700_000_100.5,
        "started_at": 1_700_000_000.0,
        "model_since": 1_700_000_001.25,
        "frames": 1000,
        "local": 940,
        "escalated": 53,
        "shed": 7,
        "dead_letters": 1,
        "errors": 0,
        "compared": 53,
        "agreed": 50,
        "latency_p95_ms": 17.03,
        "queue_depth": 3,
        "pending": 2,
        "link_up": True,
        "temperature_c": 48.5,
        "temperature_source": TemperatureSource.SIMULATED,
        "health": Health.HEALTHY,
        "backlog": 0,
    }
    fields.update(changes)
    return Heartbeat(**fields)


def wire(**changes: Any) -> bytes:
    """A valid heartbeat's JSON with some keys changed (None: removed)."""
    obj = orjson.loads(make_beat().to_json())
    for key, value in changes.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return orjson.dumps(obj)


def test_json_round_trip_is_exact() -> None:
    beat = make_beat()
    assert Heartbeat.from_json(beat.to_json()) == beat


def test_json_has_exactly_the_contract_fields_schema_first() -> None:
    data = make_beat().to_json()
    obj = orjson.loads(data)
    assert set(obj) == CONTRACT_FIELDS
    assert data.startswith(b'{"schema":1,')
    assert obj["tier"] == "edge"
    assert obj["temperature_source"] == "simulated"
    assert obj["link_up"] is True


def test_strings_become_enums_and_whole_times_floats() -> None:
    beat = Heartbeat.from_json(wire(tier="cloud", health="degraded", at=1_700_000_200))
    assert beat.tier is Tier.CLOUD
    assert beat.health is Health.DEGRADED
    assert isinstance(beat.at, float)
    assert beat.at == 1_700_000_200.0


def test_unknown_keys_are_ignored() -> None:
    assert Heartbeat.from_json(wire(gpu="none")) == make_beat()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schema": 2}, "schema"),
        ({"schema": True}, "schema"),
        ({"schema": None}, "schema"),
        ({"site": "site.1"}, "site"),
        ({"worker": ""}, "worker"),
        ({"tier": "fog"}, "tier"),
        ({"model": ""}, "model"),
        ({"model_version": 1}, "model_version"),
        ({"at": "now"}, "at"),
        ({"started_at": -1.0}, "started_at"),
        ({"model_since": None}, "model_since"),
        ({"frames": -1}, "frames"),
        ({"local": 1.5}, "local"),
        ({"shed": True}, "shed"),
        ({"errors": "0"}, "errors"),
        ({"agreed": 54}, "agreed"),
        ({"latency_p95_ms": -0.5}, "latency_p95_ms"),
        ({"queue_depth": [1]}, "queue_depth"),
        ({"pending": None}, "pending"),
        ({"link_up": 1}, "link_up"),
        ({"temperature_c": "hot"}, "temperature_c"),
        ({"temperature_source": "ir"}, "temperature_source"),
        ({"health": "ok"}, "health"),
        ({"health": ["healthy"]}, "health"),
        ({"backlog": -2}, "backlog"),
    ],
)
def test_a_wrong_field_is_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SchemaError, match=rf"^heartbeat\.{field}: "):
        Heartbeat.from_json(wire(**changes))


def test_unknown_backlog_is_allowed() -> None:
    assert Heartbeat.from_json(wire(backlog=-1)).backlog == -1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b"{}", r"heartbeat\.schema: missing"),
        (b"x" * (MAX_HEARTBEAT_BYTES + 1), "over"),
    ],
)
def test_not_a_heartbeat_at_all(data: bytes, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        Heartbeat.from_json(data)


@pytest.mark.parametrize("field", sorted(CONTRACT_FIELDS - {"schema"}))
def test_every_field_is_required(field: str) -> None:
    with pytest.raises(SchemaError, match=rf"^heartbeat\.{field}: missing"):
        Heartbeat.from_json(wire(**{field: None}))


def test_construction_validates_too() -> None:
    with pytest.raises(SchemaError, match=r"heartbeat\.temperature_c"):
        make_beat(temperature_c=float("nan"))
    with pytest.raises(SchemaError, match=r"heartbeat\.at"):
        make_beat(at=float("inf"))


def test_frozen() -> None:
    beat = make_beat()
    with pytest.raises(dataclasses.FrozenInstanceError):
        beat.frames = 1  # type: ignore[misc]


def test_subject_and_key() -> None:
    assert heartbeat_subject("site1", "edge-1") == "fleet.heartbeat.site1.edge-1"
    assert fleet_key("site1", "edge-1") == "worker.site1.edge-1"
    with pytest.raises(SchemaError):
        heartbeat_subject("site1", "edge.1")
    with pytest.raises(SchemaError):
        fleet_key("*", "edge-1")


def test_publisher_refuses_bad_interval_and_ttl() -> None:
    nothing = cast(Any, None)  # never reached: arguments are checked first
    with pytest.raises(ConfigError, match="interval_s"):
        HeartbeatPublisher(nothing, nothing, "site1", "edge-1", make_beat, 0.0)
    with pytest.raises(ConfigError, match="ttl_s"):
        HeartbeatPublisher(nothing, nothing, "site1", "edge-1", make_beat, 2.0, ttl_s=1.0)


# ---------------------------------------------------------------- LatencyWindow


def test_empty_window_reports_zero() -> None:
    assert LatencyWindow().p95() == 0.0


def test_p95_nearest_rank() -> None:
    window = LatencyWindow()
    for ms in range(100, 0, -1):  # order must not matter
        window.observe(float(ms))
    assert window.p95() == 95.0
    window.reset()
    for ms in range(1, 21):
        window.observe(float(ms))
    assert window.p95() == 19.0  # ceil(0.95 * 20) = 19th of 20


def test_take_p95_starts_a_new_interval() -> None:
    window = LatencyWindow()
    window.observe(40.0)
    window.observe(10.0)
    assert window.take_p95() == 40.0
    assert len(window) == 0
    assert window.take_p95() == 0.0
    window.observe(5.0)
    assert window.take_p95() == 5.0


def test_window_keeps_the_newest_samples() -> None:
    window = LatencyWindow(capacity=3)
    for ms in (1000.0, 1.0, 2.0, 3.0):
        window.observe(ms)
    assert len(window) == 3
    assert window.p95() == 3.0  # the old 1000 ms sample was pushed out


def test_nan_is_ignored_and_negative_counts_as_zero() -> None:
    window = LatencyWindow()
    window.observe(float("nan"))
    assert len(window) == 0
    window.observe(-3.0)
    assert window.p95() == 0.0


def test_window_capacity_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="capacity"):
        LatencyWindow(capacity=0)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200))
def test_p95_is_a_sample_at_least_95_percent_are_not_above(samples: list[float]) -> None:
    window = LatencyWindow()
    for s in samples:
        window.observe(s)
    p95 = window.p95()
    assert p95 in samples
    assert sum(s <= p95 for s in samples) >= 0.95 * len(samples)
    assert sum(s < p95 for s in samples) < 0.95 * len(samples)
