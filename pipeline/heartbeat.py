"""Heartbeats: what each worker tells the fleet about itself, every few seconds.

A worker publishes one JSON object (``Heartbeat``, the contract in
/work/notes/contracts.md) on ``fleet.heartbeat.<site>.<worker>`` and puts the same
bytes in the KV bucket ``HF_FLEET`` under ``worker.<site>.<worker>``. The subject is
for whoever listens now; the bucket is for whoever asks later (``hybridfleet fleet
status``, the rollout controller). The bucket keeps one value per key and forgets a
key ``ttl_s`` after its last put, so a worker that is gone for good disappears.

``HeartbeatPublisher.run`` is meant to be one task in the worker's ``TaskGroup``: a
lost server, a timeout or a missing bucket is logged and retried at the next beat,
never raised, because telemetry must not take a worker down.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.codec import check_token
from schemas.errors import ConfigError, SchemaError

__all__ = [
    "DEFAULT_INTERVAL_S",
    "FLEET_BUCKET",
    "MAX_HEARTBEAT_BYTES",
    "SCHEMA_VERSION",
    "Health",
    "Heartbeat",
    "HeartbeatPublisher",
    "LatencyWindow",
    "TemperatureSource",
    "Tier",
    "fleet_key",
    "heartbeat_subject",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FLEET_BUCKET = subjects.FLEET_BUCKET
DEFAULT_INTERVAL_S = 2.0
# A heartbeat is about 600 bytes; anything much larger is not one.
MAX_HEARTBEAT_BYTES = 64 << 10
_MAX_TEXT = 128
_STREAM_IN_USE = 10058  # add_stream: a stream of this name exists with another config


class Tier(StrEnum):
    EDGE = "edge"
    CLOUD = "cloud"
    DEVICE = "device"


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"


class TemperatureSource(StrEnum):
    SYSFS = "sysfs"  # a real sensor of this machine
    SIMULATED = "simulated"  # pipeline.thermal.SimulatedThermal


def heartbeat_subject(site: str, worker: str) -> str:
    """``fleet.heartbeat.<site>.<worker>``."""
    return subjects.heartbeats(check_token(site, "site"), check_token(worker, "worker"))


def fleet_key(site: str, worker: str) -> str:
    """The worker's key in ``HF_FLEET``: ``worker.<site>.<worker>``."""
    return f"worker.{check_token(site, 'site')}.{check_token(worker, 'worker')}"


_COUNTERS = (
    "frames",
    "local",
    "escalated",
    "shed",
    "dead_letters",
    "errors",
    "compared",
    "agreed",
    "queue_depth",
    "pending",
)
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
        for name in _COUNTERS:
            _check_int(name, getattr(self, name), lo=0)
        _check_int("backlog", self.backlog, lo=-1)
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


class LatencyWindow:
    """Final-result latencies of the current interval, for a heartbeat's p95.

    Pure. The worker calls ``observe`` per final result and ``take_p95`` once per
    heartbeat, which also starts the next interval. It keeps the latest ``capacity``
    samples, so a burst costs bounded memory and the p95 is of the newest results.
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {capacity}")
        self._samples: deque[float] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._samples)

    def observe(self, latency_ms: float) -> None:
        """Record one latency. NaN is ignored; a negative one (clock skew between the
        camera and this machine) counts as 0."""
        if math.isnan(latency_ms):
            return
        self._samples.append(max(0.0, latency_ms))

    def p95(self) -> float:
        """Nearest-rank 95th percentile of this interval, 0.0 when it is empty."""
        if not self._samples:
            return 0.0
        ordered = sorted(self._samples)
        return ordered[math.ceil(0.95 * len(ordered)) - 1]

    def reset(self) -> None:
        """Start a new interval."""
        self._samples.clear()

    def take_p95(self) -> float:
        """``p95()``, then ``reset()``."""
        value = self.p95()
        self.reset()
        return value


# What a beat survives: the server is away or slow, the bucket is missing, JetStream
# refuses for now. Anything else is a bug and is raised.
_TRANSIENT = (nats.errors.Error, TimeoutError, OSError)


class HeartbeatPublisher:
    """Publishes ``snapshot()`` every ``interval_s`` on the subject and into ``HF_FLEET``.

    ``js`` decides where the bucket lives: the worker's own server by default, or
    another JetStream domain (e.g. ``nc.jetstream(domain="hub")``) so the whole fleet
    is in one place. The bucket is created if missing: history 1, memory storage
    (the values are refreshed every beat, so a server restart loses nothing that
    matters), and entries expire ``ttl_s`` after their last put (the stream's
    ``max_age``; nats-py's ``KeyValue.put`` has no per-message TTL). Whichever worker
    creates the bucket sets its TTL for everyone.

    ``on_error`` (e.g. a Prometheus counter's ``inc``) is called with each transient
    failure. A snapshot whose site or worker is not this publisher's is a bug:
    ``SchemaError``.
    """

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        site: str,
        worker: str,
        snapshot: Callable[[], Heartbeat],
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        ttl_s: float | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ConfigError(f"heartbeat interval_s must be > 0, got {interval_s}")
        self.ttl_s = 10 * interval_s if ttl_s is None else ttl_s
        if not (math.isfinite(self.ttl_s) and self.ttl_s >= interval_s):
            raise ConfigError(f"heartbeat ttl_s must be >= interval_s, got {ttl_s}")
        self.site = site
        self.worker = worker
        self.subject = heartbeat_subject(site, worker)
        self.key = fleet_key(site, worker)
        self.interval_s = interval_s
        self._nc = nc
        self._js = js
        self._snapshot = snapshot
        self._on_error = on_error
        # A put waits at most this long, so a dead server does not stretch the beat.
        self._timeout_s = max(interval_s, 1.0)
        self._kv: KeyValue | None = None
        self._failing = False
        self.published = 0  # beats that reached both the subject and the bucket
        self.failures = 0  # transient failures (a beat can count two)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Beat now, then every ``interval_s``, until ``stop`` is set or the task is
        cancelled. Never raises on a NATS error."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def publish_once(self) -> bool:
        """Take a snapshot and publish it; False if the subject or the bucket failed."""
        beat = self._snapshot()
        if (beat.site, beat.worker) != (self.site, self.worker):
            raise SchemaError(
                f"heartbeat of {beat.site}/{beat.worker} given to the publisher of "
                f"{self.site}/{self.worker}"
            )
        data = beat.to_json()
        ok = True
        try:
            await self._nc.publish(self.subject, data)
        except _TRANSIENT as exc:
            ok = self._failed("publish on " + self.subject, exc)
        try:
            await asyncio.wait_for(self._put(data), self._timeout_s)
        except _TRANSIENT as exc:
            self._kv = None  # the bucket may be gone (a memory bucket after a restart)
            ok = self._failed(f"put {FLEET_BUCKET} {self.key}", exc)
        if ok:
            self.published += 1
            if self._failing:
                log.info("heartbeats of %s/%s are getting through again", self.site, self.worker)
                self._failing = False
        return ok

    async def _put(self, data: bytes) -> None:
        if self._kv is None:
            self._kv = await self._bucket()
        await self._kv.put(self.key, data)

    async def _bucket(self) -> KeyValue:
        try:
            return await self._js.key_value(FLEET_BUCKET)
        except BucketNotFoundError:
            pass
        try:
            return await self._js.create_key_value(
                api.KeyValueConfig(
                    bucket=FLEET_BUCKET,
                    description="hybridfleet worker heartbeats (pipeline/heartbeat.py)",
                    history=1,
                    ttl=self.ttl_s,
                    storage=api.StorageType.MEMORY,
                )
            )
        except BadRequestError as exc:
            if exc.err_code != _STREAM_IN_USE:
                raise
            # Another worker created it first, with its own TTL: use theirs.
            return await self._js.key_value(FLEET_BUCKET)

    def _failed(self, what: str, exc: Exception) -> bool:
        self.failures += 1
        # Once per outage at warning level; a dead link would otherwise log every beat.
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "heartbeat of %s/%s: %s failed: %r", self.site, self.worker, what, exc)
        self._failing = True
        if self._on_error is not None:
            self._on_error(exc)
        return False


@dataclass(slots=True)
class ModelCounters:
    """What a worker did since its current model was loaded: the heartbeat's counters.

    A model swap starts a fresh set (``since`` = the swap), so a rollout controller can
    compare two versions without subtracting what the old one did.
    """

    since: float
    frames: int = 0
    local: int = 0
    escalated: int = 0
    shed: int = 0
    dead_letters: int = 0
    errors: int = 0
    compared: int = 0
    agreed: int = 0
