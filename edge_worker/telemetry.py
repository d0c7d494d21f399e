"""How one edge worker is doing: heat and load (the pressure the decision reads), its
counters and heartbeat, the drift monitor's health report and the budget event.

* Every heartbeat interval: read the thermal sensor and the site's backlog, update the
  pressure, publish a heartbeat (pipeline/fleet/heartbeat.py).
* Every health interval: publish the drift monitor's report on ``health.<site>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from edge_worker.budget import Allowance
from edge_worker.drift import DriftMonitor
from edge_worker.health import HealthStatus
from edge_worker.metrics import EdgeMetrics
from edge_worker.thermal import OffloadPressure, SimulatedThermal, ThermalSensor
from pipeline.config import EdgeSettings
from pipeline.fleet.heartbeat import HeartbeatPublisher, LatencyWindow, ModelCounters
from pipeline.inference.analysis import Analyser
from schemas import subjects
from schemas.heartbeat import Health, Heartbeat, Tier
from schemas.messages import InferenceResult, Reason, Source

__all__ = ["Telemetry"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Telemetry:
    """The measured state of one edge worker; ``pressure`` is in 0..1."""

    cfg: EdgeSettings
    thermal: ThermalSensor
    drift: DriftMonitor
    metrics: EdgeMetrics
    queue_depth: Callable[[], int]
    pressure: float = field(default=0.0, init=False)  # how hard to lean on the cloud (heat, queue)
    temperature_c: float = field(default=0.0, init=False)
    busy_s: float = field(default=0.0, init=False)  # model time, for the simulated device
    # Escalations stored at the site, not yet sourced by the hub; -1 until read.
    backlog: int = field(default=-1, init=False)
    counters: ModelCounters = field(init=False)  # the running model's
    started_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._offload = OffloadPressure(self.cfg.hot_c, self.cfg.critical_c)
        self.counters = ModelCounters(since=time.time())
        self.started_at = time.time()
        self._latencies = LatencyWindow()

    def on_final(self, result: InferenceResult) -> None:
        """Count a published final result."""
        self.metrics.decisions.labels(self.cfg.site, result.reason.value).inc()
        self._latencies.observe(result.latency_ms)
        if result.source is Source.EDGE and result.reason is not Reason.SHED:
            self.counters.local += 1

    def heartbeat(self, model: Analyser, pending: int, *, link_up: bool) -> Heartbeat:
        """What the worker says about itself every heartbeat interval."""
        c = self.counters
        return Heartbeat(
            site=self.cfg.site,
            worker=self.cfg.worker_id,
            tier=Tier.EDGE,
            model=model.name,
            model_version=model.version,
            at=time.time(),
            started_at=self.started_at,
            model_since=c.since,
            frames=c.frames,
            local=c.local,
            escalated=c.escalated,
            shed=c.shed,
            dead_letters=c.dead_letters,
            errors=c.errors,
            compared=c.compared,
            agreed=c.agreed,
            latency_p95_ms=self._latencies.take_p95(),
            queue_depth=self.queue_depth(),
            pending=pending,
            link_up=link_up,
            temperature_c=self.temperature_c,
            temperature_source=self.thermal.source,
            health=Health.DEGRADED if self.drift.alarmed else Health.HEALTHY,
            backlog=self.backlog,
        )

    def update_pressure(self) -> None:
        self.pressure = self._offload.update(
            self.temperature_c, self.queue_depth(), self.cfg.queue_capacity
        )
        self.metrics.offload_pressure.labels(self.cfg.site).set(self.pressure)

    async def status_loop(
        self, stop: asyncio.Event, js: JetStreamContext, heartbeats: HeartbeatPublisher
    ) -> None:
        """Every heartbeat interval: read heat and backlog, publish a heartbeat."""
        interval = self.cfg.heartbeat_interval_s
        last, busy = time.monotonic(), self.busy_s
        stream = subjects.site_escalations_stream(self.cfg.site)
        while not stop.is_set():
            now = time.monotonic()
            if isinstance(self.thermal, SimulatedThermal):
                self.thermal.set_utilisation((self.busy_s - busy) / max(now - last, 1e-9))
            last, busy = now, self.busy_s
            reading = await asyncio.to_thread(self.thermal.read_c)
            if reading is not None:
                self.temperature_c = reading
            self.metrics.temperature.labels(self.cfg.site).set(self.temperature_c)
            self.update_pressure()
            try:
                info = await js.stream_info(stream)
                self.backlog = info.state.messages
                self.metrics.site_backlog.labels(self.cfg.site).set(self.backlog)
            except Exception as exc:  # advisory figure: keep the last one
                log.debug("could not read the backlog of %s: %s", stream, exc)
            await heartbeats.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def health_loop(self, stop: asyncio.Event, nc: Client) -> None:
        """Publish the drift monitor's report on ``health.<site>`` every interval."""
        subject = subjects.health(self.cfg.site)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.health_interval_s)
            report = self.drift.report(time.time())
            degraded = report.status is HealthStatus.DEGRADED
            self.metrics.health_degraded.labels(self.cfg.site).set(int(degraded))
            if report.rolling_agreement is not None:
                self.metrics.drift_agreement.labels(self.cfg.site).set(report.rolling_agreement)
            if degraded:
                log.warning("edge model degraded: %s", "; ".join(report.reasons))
            try:
                await nc.publish(subject, report.to_json())
            except Exception as exc:  # a health report is advisory: never stop the worker
                log.info("could not publish health report: %s", exc)

    async def budget_exhausted(self, nc: Client, allowance: Allowance) -> None:
        """Say once on ``health.<site>`` that the day's cloud budget is used up."""
        log.warning(
            "site %s used up its cloud budget of $%.6g for %s: answering at the edge",
            self.cfg.site,
            allowance.limit,
            allowance.day,
        )
        event = {
            "type": "budget",
            "v": 1,
            "site": self.cfg.site,
            "worker": self.cfg.worker_id,
            "status": "exhausted",
            "day": allowance.day,
            "limit_usd": allowance.limit,
            "at": time.time(),
        }
        with contextlib.suppress(Exception):
            await nc.publish(subjects.health(self.cfg.site), orjson.dumps(event))
