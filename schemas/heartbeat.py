"""The heartbeat: what each worker tells the fleet about itself, every few seconds.

Data only, no I/O: the message (``Heartbeat``, JSON, schema 1), its enums, and where it
travels (``fleet.heartbeat.<site>.<worker>`` and the KV bucket ``HF_FLEET`` under
``worker.<site>.<worker>``). pipeline/fleet/heartbeat.py publishes it; the fleet status
command and the rollout controller read it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from schemas import subjects
from schemas.errors import SchemaError
from schemas.subjects import check_token

__all__ = [
    "FLEET_BUCKET",
    "MAX_HEARTBEAT_BYTES",
    "SCHEMA_VERSION",
    "Health",
    "Heartbeat",
    "TemperatureSource",
    "Tier",
    "fleet_key",
    "heartbeat_subject",
]

SCHEMA_VERSION = 1
FLEET_BUCKET = subjects.FLEET_BUCKET
# A heartbeat is about 600 bytes; anything much larger is not one.
MAX_HEARTBEAT_BYTES = 64 << 10
_MAX_TEXT = 128


class Tier(StrEnum):
    EDGE = "edge"
    CLOUD = "cloud"
    DEVICE = "device"


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"


class TemperatureSource(StrEnum):
    SYSFS = "sysfs"  # a real sensor of this machine
    SIMULATED = "simulated"  # edge_worker.thermal.SimulatedThermal


def heartbeat_subject(site: str, worker: str) -> str:
    """``fleet.heartbeat.<site>.<worker>``."""
    return subjects.heartbeats(check_token(site, "site"), check_token(worker, "worker"))


def fleet_key(site: str, worker: str) -> str:
    """The worker's key in ``HF_FLEET``: ``worker.<site>.<worker>``."""
    return f"worker.{check_token(site, 'site')}.{check_token(worker, 'worker')}"


# Every int field but ``schema`` is a count (>= 0), except those with a minimum here.
_INT_MINIMUM = {"backlog": -1}
_TIMES = ("at", "started_at", "model_since")
_ENUMS: dict[str, type[StrEnum]] = {
    "tier": Tier,
    "temperature_source": TemperatureSource,
    "health": Health,
}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One worker's state at ``at``; the fields are the contract, all required.

    Construction validates every field (``SchemaError`` naming it), so a worker with a
    bad snapshot fails in its own tests rather than in a reader's. Enum fields accept
    their string values and whole-number times accept ints; both are normalised.
    """

    site: str
    worker: str
    tier: Tier
    model: str
    model_version: str
    at: float  # unix seconds
    started_at: float
    model_since: float  # when this model version was loaded; counters start here
    frames: int
    local: int
    escalated: int
    shed: int
    dead_letters: int
    errors: int
    compared: int  # edge-vs-cloud comparisons (escalated and shadow-sampled frames)
    agreed: int  # of ``compared``, those with the same labels
    latency_p95_ms: float  # final-result latency over the last interval; 0.0 if none
    queue_depth: int
    pending: int
    link_up: bool
    temperature_c: float
    temperature_source: TemperatureSource
    health: Health
    backlog: int  # escalations waiting to go to the cloud; -1 if unknown
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name, kind in _ENUMS.items():
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except (ValueError, TypeError):
                allowed = ", ".join(m.value for m in kind)
                raise SchemaError(f"heartbeat.{name}: {value!r} is not one of {allowed}") from None
        if _is_number(self.schema) is not int or self.schema != SCHEMA_VERSION:
            raise SchemaError(
                f"heartbeat.schema: {self.schema!r} is not supported; this reader speaks "
                f"{SCHEMA_VERSION}"
            )
        check_token(self.site, "heartbeat.site")
        check_token(self.worker, "heartbeat.worker")
        for name in ("model", "model_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not 1 <= len(value) <= _MAX_TEXT:
                raise SchemaError(f"heartbeat.{name}: {value!r} is not a string of 1-{_MAX_TEXT}")
        for name in _TIMES:
            _set_float(self, name, lo=0.0)
        _set_float(self, "latency_p95_ms", lo=0.0)
        _set_float(self, "temperature_c", lo=-273.15)
        for f in dataclasses.fields(self):
            if f.type == "int" and f.name != "schema":
                _check_int(f.name, getattr(self, f.name), lo=_INT_MINIMUM.get(f.name, 0))
        if self.agreed > self.compared:
            raise SchemaError(
                f"heartbeat.agreed: {self.agreed} is more than compared ({self.compared})"
            )
        if not isinstance(self.link_up, bool):
            raise SchemaError(f"heartbeat.link_up: {self.link_up!r} is not true or false")

    def to_json(self) -> bytes:
        """The wire form: one JSON object, ``schema`` first."""
        fields: dict[str, Any] = {"schema": self.schema}
        for f in dataclasses.fields(self):
            fields[f.name] = getattr(self, f.name)
        return orjson.dumps(fields)

    @classmethod
    def from_json(cls, data: bytes) -> Heartbeat:
        """Parse and validate; ``SchemaError`` names the first field that is wrong.

        Unknown keys are ignored (a later schema may add optional ones, as on the
        rest of the wire: docs/wire-format.md); a missing key is an error.
        """
        if len(data) > MAX_HEARTBEAT_BYTES:
            raise SchemaError(f"heartbeat: {len(data)} bytes, over {MAX_HEARTBEAT_BYTES}")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"heartbeat: not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise SchemaError(f"heartbeat: a JSON {type(obj).__name__}, not an object")
        # The version first: a newer writer's message is refused for its version, not
        # for whatever field it renamed.
        if "schema" not in obj:
            raise SchemaError("heartbeat.schema: missing")
        if _is_number(obj["schema"]) is not int or obj["schema"] != SCHEMA_VERSION:
            raise SchemaError(
                f"heartbeat.schema: {obj['schema']!r} is not supported; this reader speaks "
                f"{SCHEMA_VERSION}"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        for name in names:
            if name not in obj:
                raise SchemaError(f"heartbeat.{name}: missing")
        return cls(**{name: obj[name] for name in names})


def _is_number(value: object) -> type | None:
    """``int`` or ``float`` for a JSON number, None otherwise (bool is not a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int
    if isinstance(value, float):
        return float
    return None


def _set_float(beat: Heartbeat, name: str, *, lo: float) -> None:
    value = getattr(beat, name)
    if _is_number(value) is None or not math.isfinite(value) or value < lo:
        raise SchemaError(f"heartbeat.{name}: {value!r} is not a finite number >= {lo}")
    object.__setattr__(beat, name, float(value))


def _check_int(name: str, value: Any, *, lo: int) -> None:
    if _is_number(value) is not int or value < lo:
        raise SchemaError(f"heartbeat.{name}: {value!r} is not an integer >= {lo}")
