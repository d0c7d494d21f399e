"""Publishing heartbeats: what each worker tells the fleet about itself, every few seconds.

A worker publishes one JSON object (``schemas.heartbeat.Heartbeat``) on
``fleet.heartbeat.<site>.<worker>`` and puts the same bytes in the KV bucket
``HF_FLEET`` under ``worker.<site>.<worker>``. The subject is for whoever listens now;
the bucket is for whoever asks later (``hybridfleet fleet status``, the rollout
controller). The bucket keeps one value per key and forgets a key ``ttl_s`` after its
last put, so a worker that is gone for good disappears.

``HeartbeatPublisher.run`` is meant to be one task in the worker's ``TaskGroup``: a
lost server, a timeout or a missing bucket is logged and retried at the next beat,
never raised, because telemetry must not take a worker down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from schemas.errors import ConfigError, SchemaError
from schemas.heartbeat import (
    FLEET_BUCKET,
    Heartbeat,
    fleet_key,
    heartbeat_subject,
)

__all__ = ["DEFAULT_INTERVAL_S", "HeartbeatPublisher", "LatencyWindow", "ModelCounters"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
_STREAM_IN_USE = 10058  # add_stream: a stream of this name exists with another config


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
                    description="hybridfleet worker heartbeats (pipeline/fleet/heartbeat.py)",
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
