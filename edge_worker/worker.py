"""The edge worker: frames in, a local answer or an escalation out, one final result each.

A frame's walk (docs/architecture.md has the picture), one module per step:

1. ``frames.<site>.<camera>`` (a subscription in the site's queue group, or pulled from
   the site's bounded stream ``FRAMES_<site>``: ``framepull``) or ``infer.<site>``
   (request/reply), taken in by ``frames_in``: decoded and checked (``intake``), its id
   looked up (``repeats``), shed when hot (``decision.shed_before_model``), queued
   (``batcher``, bounded).
2. The batch loop runs the model in a thread pool, never on the event loop.
3. The decide loop (``deciding``) gathers the site's state and asks ``decision``
   once per frame.
4. A local answer is published (``finals``); an escalation is built and stored
   (``outbound``) and waits in ``pending`` for the cloud's answer (read by
   ``cloudlink``) or its deadline, whichever comes first (``finals`` claims it).
5. ``telemetry`` measures heat, load and health; the drift monitor compares answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client
from nats.js import JetStreamContext

from edge_worker.batcher import AdaptiveBatcher, BatchPolicy
from edge_worker.budget import Allowance, BudgetLedger
from edge_worker.cloudlink import CloudLink
from edge_worker.deciding import Decider
from edge_worker.drift import DriftMonitor
from edge_worker.escalations import Escalations
from edge_worker.estimates import LatencyModel
from edge_worker.finals import FinalResults
from edge_worker.frames_in import FrameIntake
from edge_worker.inference import BatchRunner
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.models import edge_analyser
from edge_worker.outbound import Outbound
from edge_worker.repeats import FrameIds
from edge_worker.sanitize import FaceBlur, FaceBlurOptions
from edge_worker.tags import EscalationTags, site_tag_key
from edge_worker.telemetry import Telemetry
from edge_worker.thermal import ThermalSensor, thermal_sensor
from edge_worker.tracks import LineTracks
from pipeline.config import Settings
from pipeline.fleet.heartbeat import HeartbeatPublisher, ModelCounters
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.embedding import EmbeddingModel
from pipeline.inference.model import OnnxModel
from pipeline.messaging.natsio import connect, ensure_site_streams, publish_dead_letter
from pipeline.release.modelswap import ModelUpdater, bundle_cache
from pipeline.release.signing import parse_trusted_keys
from pipeline.service import Service
from schemas import subjects
from schemas.codec import encode
from schemas.errors import HybridfleetError
from schemas.heartbeat import Heartbeat
from schemas.messages import InferenceResult, Source

__all__ = ["EdgeWorker"]

log = logging.getLogger(__name__)

_STAGE = "edge"


class EdgeWorker(Service):
    """One edge worker of one site: ``async with EdgeWorker.from_settings(s) as w``.

    ``drain()`` stops taking frames and finishes every accepted one (waiting for cloud
    answers up to their deadlines, at most ``edge.drain_timeout_s``); ``close()``
    stops at once (frames still queued get no result: core NATS is at-most-once).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        analyser: Analyser,
        embedder: EmbeddingModel,
        thermal: ThermalSensor,
        face_blur: FaceBlur | None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.edge
        self.site = cfg.site
        self.analyser = analyser
        self.metrics = metrics or EdgeMetrics()
        self.metrics.model.info({"name": analyser.name, "version": analyser.version})
        self._batcher: AdaptiveBatcher[Request] = AdaptiveBatcher(
            BatchPolicy(
                max_batch_size=cfg.max_batch_size,
                latency_target_s=cfg.latency_target_ms / 1000,
                latency_model=LatencyModel(),
            ),
            capacity=cfg.queue_capacity,
        )
        self._ids: FrameIds[InferenceResult] = FrameIds(cfg.remember_frame_ids)
        self.drift = DriftMonitor(site=self.site)
        self.telemetry = Telemetry(cfg, thermal, self.drift, self.metrics, self._batcher.__len__)
        self._trusted_keys = parse_trusted_keys(cfg.trusted_keys)  # refused now, not later
        # Threads start on first use; the model's pool and, for face detection on frames
        # that leave whole (slow, docs/privacy.md), one of its own.
        # One thread per batch in flight, and one so that escalations' crops are cut and
        # encoded while every batch is in the model.
        self._executor = ThreadPoolExecutor(cfg.threads + 1, thread_name_prefix="edge-onnx")
        self._sanitizer = ThreadPoolExecutor(1, thread_name_prefix="edge-sanitize")
        self._reply_subject = subjects.replies(self.site, cfg.worker_id)
        tracks = LineTracks(self.site, self.metrics) if cfg.track_lines else None
        self._escalations = Escalations(
            cfg,
            outbound=Outbound(
                reply_subject=self._reply_subject,
                publish_timeout_s=cfg.escalation_publish_timeout_s,
                face_blur=face_blur,
                embedder=embedder,
                sanitizer=self._sanitizer,
                executor=self._executor,
                metrics=self.metrics,
                jpeg_quality=cfg.crop_jpeg_quality,
            ),
            drift=self.drift,
            metrics=self.metrics,
            counters=lambda: self.telemetry.counters,
            dead_letter=self._dead_letter,
            tracks=tracks,
        )
        self._decider = Decider(
            cfg,
            escalations=self._escalations,
            tracks=tracks,
            telemetry=self.telemetry,
            metrics=self.metrics,
            on_budget_exhausted=self._budget_exhausted,
        )
        self._batches = BatchRunner(
            self._batcher,
            self._executor,
            lambda: self.analyser,
            self.telemetry,
            self.metrics,
            self.site,
            on_failure=self._model_failed,
            inject_latency_s=cfg.inject_latency_ms / 1000,
            concurrency=cfg.threads,
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._finals: FinalResults | None = None
        self._tags: EscalationTags | None = None
        self._link: CloudLink | None = None
        self._heartbeats: HeartbeatPublisher | None = None
        self._updater: ModelUpdater | None = None
        self._intake = FrameIntake(
            cfg,
            batcher=self._batcher,
            ids=self._ids,
            telemetry=self.telemetry,
            metrics=self.metrics,
            analyser=lambda: self.analyser,
            dead_letter=self._dead_letter,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, model: OnnxModel | None = None) -> EdgeWorker:
        """The worker with its real parts: models from the manifest, the thermal sensor.

        ``edge.models`` names the manifest roles the edge runs (docs/models.md), run as
        ``edge.providers``, ``intra_op_threads`` and ``max_batch`` say; by default it is
        the region classifier of role ``edge`` (or ``model``), on ``intra_op_threads``.
        """
        cfg = settings.edge
        return cls(
            settings,
            analyser=edge_analyser(cfg, model=model),
            embedder=EmbeddingModel.load(),
            thermal=thermal_sensor(prefer_sysfs=cfg.thermal == "auto"),
            face_blur=FaceBlur(FaceBlurOptions(detect_scale=0.5)) if cfg.face_blur else None,
        )

    @property
    def name(self) -> str:
        return f"edge-{self.settings.edge.worker_id}"

    @property
    def pressure(self) -> float:
        return self.telemetry.pressure

    @property
    def thermal(self) -> ThermalSensor:
        return self.telemetry.thermal

    @property
    def counters(self) -> ModelCounters:
        """What the running model did since it started."""
        return self.telemetry.counters

    def _heartbeat(self) -> Heartbeat:
        assert self._link is not None
        return self.telemetry.heartbeat(
            self.analyser, len(self._escalations.pending), link_up=self._link.up
        )

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        cfg = self.settings.edge
        self._nc = nc = await connect(
            self.settings.nats,
            f"hybridfleet-{cfg.worker_id}",
            on_slow_consumer=self._intake.dropped,
        )
        self._js = js = nc.jetstream()
        await ensure_site_streams(js, self.site, self.settings.stream)
        self._tags = EscalationTags(self.site, await site_tag_key(js, self.site))
        self._escalations.outbound.bind(js, self._tags)
        self._finals = FinalResults(
            nc,
            js,
            self.site,
            cfg.escalation_publish_timeout_s,
            ids=self._ids,
            metrics=self.metrics,
            dead_letter=self._dead_letter,
            on_final=self.telemetry.on_final,
        )
        self._escalations.bind(self._finals, self._tags)
        if self._trusted_keys and isinstance(self.analyser, RegionClassifier):
            # Signed bundles roll out region classifiers (docs/model-bundles.md).
            self._updater = ModelUpdater(
                nc,
                # Model bundles live where the fleet is run: the hub, if any.
                nc.jetstream(domain=cfg.cloud_domain) if cfg.cloud_domain else js,
                tier="edge",
                site=self.site,
                worker=cfg.worker_id,
                trusted_keys=self._trusted_keys,
                cache_dir=bundle_cache(cfg.bundle_dir, self.site, cfg.worker_id),
                base=self.analyser.model,
                on_swap=self._swap_model,
                on_refused=lambda _: self.metrics.bundle_refusals.labels(self.site).inc(),
                intra_op_threads=cfg.intra_op_threads or None,
            )
        # The heartbeat record stays on the site's own server (a KV put does not cross
        # into another domain); the heartbeat subject reaches the hub over the leaf link.
        self._heartbeats = HeartbeatPublisher(
            nc, js, self.site, cfg.worker_id, self._heartbeat, cfg.heartbeat_interval_s
        )
        self._link = CloudLink(nc, cfg, self._escalations.on_answer)
        self._decider.bind(self._finals, self._link, BudgetLedger(js, self.site))
        await self._intake.open(nc, js, self._finals)
        await nc.flush()
        log.info(
            "edge worker %s of site %s ready: model %s %s, %s, answers on %s, cloud %s",
            cfg.worker_id,
            self.site,
            self.analyser.name,
            self.analyser.version,
            self._intake.sources,
            self._reply_subject,
            f"domain {cfg.cloud_domain!r}" if cfg.cloud_domain else "on this server",
        )

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        assert self._link is not None and self._nc is not None and self._js is not None
        assert self._heartbeats is not None
        done = self._escalations.done
        self._intake.spawn(tasks)
        tasks.create_task(self._batches.run(), name="edge-batches")
        tasks.create_task(self._decider.run(self._batches.answered), name="edge-decide")
        tasks.create_task(self._escalations.deadline_loop(), name="edge-deadlines")
        tasks.create_task(self._link.run(done), name="edge-answers")
        tasks.create_task(self.telemetry.health_loop(done, self._nc), name="edge-health")
        tasks.create_task(
            self.telemetry.status_loop(done, self._js, self._heartbeats), name="edge-status"
        )
        if self._updater is not None:
            tasks.create_task(self._updater.run(done), name="edge-models")

    async def _stop_taking(self) -> None:
        cfg = self.settings.edge
        log.info(
            "edge worker %s of site %s draining: %d frames queued, %d waiting for the cloud "
            "(answered within %g s)",
            cfg.worker_id,
            self.site,
            len(self._batcher),
            len(self._escalations.pending),
            cfg.drain_timeout_s,
        )
        self._escalations.answer_by(time.time() + cfg.drain_timeout_s)
        await self._intake.stop_taking()  # first: no more frames pulled or received
        self._batcher.close()

    async def _release(self) -> None:
        self._batcher.close()
        if self._nc is not None and not self._nc.is_closed:
            # Results are already published; flush them out, then close. (A NATS drain
            # would wait for the answers' pull subscription to time out first.)
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
            await self._nc.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._sanitizer.shutdown(wait=True, cancel_futures=True)
        if self._draining:
            log.info("edge worker %s drained", self.settings.edge.worker_id)

    # ------------------------------------------------------------------ dead letters

    async def _dead_letter(self, subject: str, data: bytes, kind: str, reason: str) -> None:
        log.warning("dead letter from %s: %s", subject, reason)
        self.metrics.dead_letters.labels(self.site, kind).inc()
        self.counters.dead_letters += 1
        assert self._js is not None
        await publish_dead_letter(
            self._js, stage=_STAGE, site=self.site, subject=subject, reason=reason, data=data
        )

    # ------------------------------------------------------------------ model

    def _swap_model(self, model: OnnxModel) -> None:
        """Run ``model`` from the next batch on; its counters and drift start afresh."""
        log.info("edge worker %s: %s -> %s", self.settings.edge.worker_id, self.analyser, model)
        self.analyser = RegionClassifier(model, Source.EDGE, self.settings.edge.confidence_signal)
        self.telemetry.counters = ModelCounters(since=time.time())
        self.drift.reset()
        self.metrics.model.info({"name": model.name, "version": model.version})
        self.metrics.model_swaps.labels(self.site).inc()

    async def _model_failed(self, batch: list[Request], exc: HybridfleetError, kind: str) -> None:
        """Frames refused after intake: a batch the model failed on (``model``), or a
        frame whose image did not decode (``schema``)."""
        self.counters.errors += 1
        why = f"edge model failed on the batch: {exc}" if kind == "model" else str(exc)
        for request in batch:
            self._ids.forget(request.frame.frame_id)
            await self._dead_letter(
                subjects.frames(self.site, request.frame.camera), encode(request.frame), kind, why
            )

    # ------------------------------------------------------------------ telemetry

    async def _budget_exhausted(self, allowance: Allowance) -> None:
        assert self._nc is not None
        await self.telemetry.budget_exhausted(self._nc, allowance)
