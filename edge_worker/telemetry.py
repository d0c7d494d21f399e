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

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from edge_worker.budget import Allowance
from edge_worker.drift import DriftMonitor, HealthStatus
from edge_worker.metrics import EdgeMetrics
from edge_worker.thermal import OffloadPressure, SimulatedThermal, ThermalSensor
from pipeline.config import EdgeSettings
from pipeline.fleet.heartbeat import HeartbeatPublisher, LatencyWindow, ModelCounters
from pipeline.inference.model import OnnxModel
from schemas import subjects
from schemas.heartbeat import Health, Heartbeat, Tier
from schemas.messages import InferenceResult, Reason, Source

__all__ = ["Telemetry"]

log = logging.getLogger(__name__)


class Telemetry:
    """The measured state of one edge worker; ``pressure`` is in 0..1."""

    def __init__(
        self,
        cfg: EdgeSettings,
        thermal: ThermalSensor,
        drift: DriftMonitor,
        metrics: EdgeMetrics,
        queue_depth: Callable[[], int],
    ) -> None:
        self._cfg = cfg
        self._site = cfg.site
        self.thermal = thermal
        self._drift = drift
        self._metrics = metrics
        self._queue_depth = queue_depth
        self._offload = OffloadPressure(cfg.hot_c, cfg.critical_c)
        self.pressure = 0.0  # how hard to lean on the cloud (heat, queue)
        self.temperature_c = 0.0
        self.busy_s = 0.0  # model time, for the simulated device's utilisation
        self.backlog = -1  # escalations stored at the site, not yet sourced by the hub
        self.counters = ModelCounters(since=time.time())  # the running model's
        self.started_at = time.time()
        self._latencies = LatencyWindow()

    def on_final(self, result: InferenceResult) -> None:
        """Count a published final result."""
        self._metrics.decisions.labels(self._site, result.reason.value).inc()
        self._latencies.observe(result.latency_ms)
        if result.source is Source.EDGE and result.reason is not Reason.SHED:
            self.counters.local += 1

    def heartbeat(self, model: OnnxModel, pending: int, *, link_up: bool) -> Heartbeat:
        """What the worker says about itself every heartbeat interval."""
        c = self.counters
        return Heartbeat(
            site=self._site,
            worker=self._cfg.worker_id,
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
            queue_depth=self._queue_depth(),
            pending=pending,
            link_up=link_up,
            temperature_c=self.temperature_c,
            temperature_source=self.thermal.source,
            health=Health.DEGRADED if self._drift.alarmed else Health.HEALTHY,
            backlog=self.backlog,
        )

    def update_pressure(self) -> None:
        self.pressure = self._offload.update(
            self.temperature_c, self._queue_depth(), self._cfg.queue_capacity
        )
        self._metrics.offload_pressure.labels(self._site).set(self.pressure)

    async def status_loop(
        self, stop: asyncio.Event, js: JetStreamContext, heartbeats: HeartbeatPublisher
    ) -> None:
        """Every heartbeat interval: read heat and backlog, publish a heartbeat."""
        interval = self._cfg.heartbeat_interval_s
        last, busy = time.monotonic(), self.busy_s
        stream = subjects.site_escalations_stream(self._site)
        while not stop.is_set():
            now = time.monotonic()
            if isinstance(self.thermal, SimulatedThermal):
                self.thermal.set_utilisation((self.busy_s - busy) / max(now - last, 1e-9))
            last, busy = now, self.busy_s
            reading = await asyncio.to_thread(self.thermal.read_c)
            if reading is not None:
                self.temperature_c = reading
            self._metrics.temperature.labels(self._site).set(self.temperature_c)
            self.update_pressure()
            try:
                info = await js.stream_info(stream)
                self.backlog = info.state.messages
                self._metrics.site_backlog.labels(self._site).set(self.backlog)
            except Exception as exc:  # advisory figure: keep the last one
                log.debug("could not read the backlog of %s: %s", stream, exc)
            await heartbeats.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    async def health_loop(self, stop: asyncio.Event, nc: Client) -> None:
        """Publish the drift monitor's report on ``health.<site>`` every interval."""
        subject = subjects.health(self._site)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._cfg.health_interval_s)
            report = self._drift.report(time.time())
            degraded = report.status is HealthStatus.DEGRADED
            self._metrics.health_degraded.labels(self._site).set(int(degraded))
            if report.rolling_agreement is not None:
                self._metrics.drift_agreement.labels(self._site).set(report.rolling_agreement)
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
            self._site,
            allowance.limit,
            allowance.day,
        )
        event = {
            "type": "budget",
            "v": 1,
            "site": self._site,
            "worker": self._cfg.worker_id,
            "status": "exhausted",
            "day": allowance.day,
            "limit_usd": allowance.limit,
            "at": time.time(),
        }
        with contextlib.suppress(Exception):
            await nc.publish(subjects.health(self._site), orjson.dumps(event))
