"""The edge worker: frames in, a local answer or an escalation out, one final result each.

A frame's path (docs/architecture.md has the picture):

1. ``frames.<site>.<camera>`` (queue group: the site's workers share frames) or
   ``infer.<site>`` (request/reply) -> decode -> ``AdaptiveBatcher`` (bounded).
2. The batch loop runs the model in a thread pool, never on the event loop.
3. The decide loop asks ``EscalationPolicy`` per frame: publish the final result now,
   or store an ``Escalation`` in the site's JetStream stream and wait for the cloud.
4. The cloud's answer (read from the ``REPLIES`` stream by ``CloudLink``) or the
   frame's deadline, whichever comes first, makes the final result; ``FinalResults``
   lets the server enforce that a later one is dropped, even across restarts.
5. Drift: a ``ShadowSampler`` share of the frames kept as ``confident`` is escalated
   too, only to be compared. Their final result is the edge's, published (and
   claimed) at once; the cloud's answer, like that of every escalated frame, goes to
   the ``DriftMonitor``, whose report is published on ``health.<site>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import warnings
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from edge_worker.batcher import AdaptiveBatcher, BatchPolicy, LatencyModel
from edge_worker.budget import Allowance, BudgetLedger, escalation_cost
from edge_worker.cloudlink import CloudLink
from edge_worker.drift import DriftMonitor, HealthStatus, ShadowSampler
from edge_worker.finals import FinalResults
from edge_worker.intake import check_frame
from edge_worker.metrics import EdgeMetrics
from edge_worker.pending import PendingEscalations
from edge_worker.policy import Decision, EscalationPolicy, FrameFacts, RoundTripEstimator
from edge_worker.repeats import FrameIds, Joiner, Seen
from edge_worker.tags import TAG_HEADER, EscalationTags, site_tag_key
from pipeline.bundle import parse_trusted_keys
from pipeline.calibration import frame_confidence
from pipeline.config import Settings
from pipeline.costs import CostModel
from pipeline.digits import pixels_to_features
from pipeline.embedding import EmbeddingModel
from pipeline.heartbeat import (
    Health,
    Heartbeat,
    HeartbeatPublisher,
    LatencyWindow,
    ModelCounters,
    Tier,
)
from pipeline.model import OnnxModel
from pipeline.modelswap import ModelUpdater, bundle_cache
from pipeline.natsio import connect, ensure_site_streams, publish_dead_letter
from pipeline.sanitize import FaceBlur, FaceBlurOptions
from pipeline.thermal import (
    OffloadPressure,
    SimulatedThermal,
    raised_threshold,
    sheds,
    thermal_sensor,
)
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.errors import HybridfleetError, SchemaError
from schemas.jsonform import decode_frame_message, encode_result_for, header
from schemas.messages import (
    Escalation,
    Frame,
    InferenceResult,
    PrivacyClass,
    Reason,
    Source,
)

__all__ = ["EdgeWorker"]

log = logging.getLogger(__name__)

_STAGE = "edge"


@dataclass(slots=True)
class _Request:
    """A decoded frame on its way through the worker."""

    frame: Frame
    reply_to: str | None  # the caller's inbox for request/reply on infer.<site>
    accept: str | None = None  # the caller's Accept header (JSON or msgpack reply)


@dataclass(frozen=True, slots=True)
class _Shadow:
    """What the edge answered for a shadow-sampled frame, to compare with the cloud."""

    labels: tuple[int, ...]
    confidence: float


# Shadow samples awaiting their cloud answer; beyond this the oldest are forgotten
# (their answers then only count as late replies), so an outage cannot grow it.
_MAX_SHADOWS = 10_000
# A shadow sample is not urgent: the cloud may answer it long after the frame's deadline.
_SHADOW_DEADLINE_S = 300.0
_SHADOW_PRIORITY = 3
_EDGE_THEN_CLOUD = (Source.EDGE.value, Source.CLOUD.value)
# Escalations being built and stored at once; the decide loop waits beyond this.
_MAX_SENDING = 64


@dataclass(slots=True)
class _Waiting:
    """An escalated frame waiting for the cloud, with the edge answer to fall back on."""

    request: _Request
    edge_result: InferenceResult
    sent_at: float  # monotonic


class EdgeWorker:
    """One edge worker of one site. Use as ``async with EdgeWorker(settings) as w``.

    Lifecycle: ``start()`` connects and subscribes; ``drain()`` stops taking frames,
    finishes every accepted frame (waiting for cloud answers up to their deadlines)
    and disconnects; ``close()`` stops at once. Both are idempotent.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: OnnxModel | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.edge
        self.site = cfg.site
        self.model = model or OnnxModel.load(
            "edge", Path(cfg.model_manifest) if cfg.model_manifest else None
        )
        self.metrics = metrics or EdgeMetrics()
        self.metrics.model.info({"name": self.model.name, "version": self.model.version})
        self.policy = EscalationPolicy(cfg.default_threshold, routing=cfg.routing)
        self.round_trips = RoundTripEstimator(prior_s=cfg.cloud_round_trip_prior_ms / 1000)
        self._latency_target_s = cfg.latency_target_ms / 1000
        self._batcher: AdaptiveBatcher[_Request] = AdaptiveBatcher(
            BatchPolicy(
                max_batch_size=cfg.max_batch_size,
                latency_target_s=self._latency_target_s,
                latency_model=LatencyModel(),
            ),
            capacity=cfg.queue_capacity,
        )
        self._pending: PendingEscalations[_Waiting] = PendingEscalations()
        # Frame ids in flight and recently finished: a repeated id is never answered twice.
        self._ids: FrameIds[InferenceResult] = FrameIds(cfg.remember_frame_ids)
        self._tags: EscalationTags | None = None
        self.drift = DriftMonitor(site=self.site)
        self._sampler = ShadowSampler(cfg.shadow_rate, cfg.shadow_seed)
        self._shadows: dict[str, _Shadow] = {}  # insertion-ordered: oldest first
        self._allowance = Allowance(cfg.daily_cloud_budget_usd)
        self._prices = CostModel()
        self._ledger: BudgetLedger | None = None
        self.counters = ModelCounters(since=time.time())
        self._started_at = time.time()
        self._latencies = LatencyWindow()
        self.thermal = thermal_sensor(prefer_sysfs=cfg.thermal == "auto")
        self._temperature_c = self.thermal.read_c() or 0.0
        self._pressure = OffloadPressure(cfg.hot_c, cfg.critical_c)
        self.pressure = 0.0  # 0..1: how hard to lean on the cloud (heat, queue)
        self._busy_s = 0.0  # model time, for the simulated device's utilisation
        self._backlog = -1
        self._heartbeats: HeartbeatPublisher | None = None
        self._trusted_keys = parse_trusted_keys(cfg.trusted_keys)  # refused now, not later
        self._updater: ModelUpdater | None = None
        self._pending_changed = asyncio.Event()
        # Two batches may be in hand at once: one in the model, one being published.
        self._decided: asyncio.Queue[tuple[list[_Request], np.ndarray, OnnxModel] | None] = (
            asyncio.Queue(1)
        )
        self._executor = ThreadPoolExecutor(cfg.inference_threads, thread_name_prefix="edge-onnx")
        # Face detection on frames that leave whole: slow (docs/privacy.md), so it gets a
        # thread of its own and never holds up the model.
        self._face_blur = FaceBlur(FaceBlurOptions(detect_scale=0.5)) if cfg.face_blur else None
        self._sanitizer = ThreadPoolExecutor(1, thread_name_prefix="edge-sanitize")
        self._embedder = EmbeddingModel.load()
        self._reply_subject = subjects.replies(self.site, cfg.worker_id)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._finals: FinalResults | None = None
        self._link: CloudLink | None = None
        self._answers_done = asyncio.Event()
        self._inputs: list[Subscription] = []
        self._runner: asyncio.Task[None] | None = None
        self._draining = False
        self._drain_by: float | None = None  # Unix time: pending frames get answers by then
        self._decided_all = False  # set when the decide loop has handled its last batch
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, declare streams, subscribe, and start the worker's tasks."""
        if self._runner is not None:
            return
        cfg = self.settings.edge
        self._nc = await connect(self.settings.nats, f"hybridfleet-{cfg.worker_id}")
        self._js = self._nc.jetstream()
        await ensure_site_streams(self._js, self.site, self.settings.stream)
        self._tags = EscalationTags(self.site, await site_tag_key(self._js, self.site))
        self._finals = FinalResults(self._nc, self._js, self.site, cfg.escalation_publish_timeout_s)
        self._ledger = BudgetLedger(self._js, self.site)
        # Model bundles live where the fleet is run: the hub, if any.
        fleet_js = self._nc.jetstream(domain=cfg.cloud_domain) if cfg.cloud_domain else self._js
        if self._trusted_keys:
            self._updater = ModelUpdater(
                self._nc,
                fleet_js,
                tier="edge",
                site=self.site,
                worker=cfg.worker_id,
                trusted_keys=self._trusted_keys,
                cache_dir=bundle_cache(cfg.bundle_dir, self.site, cfg.worker_id),
                base=self.model,
                on_swap=self._swap_model,
                on_refused=lambda _: self.metrics.bundle_refusals.labels(self.site).inc(),
            )
        # The heartbeat record stays on the site's own server (a KV put does not cross
        # into another domain); the heartbeat subject reaches the hub over the leaf link.
        self._heartbeats = HeartbeatPublisher(
            self._nc,
            self._js,
            self.site,
            cfg.worker_id,
            self._snapshot,
            cfg.heartbeat_interval_s,
        )
        self._link = CloudLink(self._nc, cfg, self._on_answer)
        group = subjects.edge_queue_group(self.site)
        self._inputs = [
            await self._nc.subscribe(subjects.frames(self.site), queue=group, cb=self._on_frame),
            await self._nc.subscribe(subjects.infer(self.site), queue=group, cb=self._on_frame),
        ]
        await self._nc.flush()
        self._runner = asyncio.create_task(self._run(), name=f"edge-{cfg.worker_id}")
        log.info(
            "edge worker %s of site %s ready: model %s %s, frames on %s and %s (queue group "
            "%s), answers on %s, cloud %s",
            cfg.worker_id,
            self.site,
            self.model.name,
            self.model.version,
            subjects.frames(self.site),
            subjects.infer(self.site),
            group,
            self._reply_subject,
            f"domain {cfg.cloud_domain!r}" if cfg.cloud_domain else "on this server",
        )

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._batch_loop(), name="edge-batches")
            tasks.create_task(self._decide_loop(), name="edge-decide")
            tasks.create_task(self._deadline_loop(), name="edge-deadlines")
            assert self._link is not None
            tasks.create_task(self._link.run(self._answers_done), name="edge-answers")
            tasks.create_task(self._health_loop(), name="edge-health")
            tasks.create_task(self._status_loop(), name="edge-status")
            if self._updater is not None:
                tasks.create_task(self._updater.run(self._answers_done), name="edge-models")

    async def wait(self) -> None:
        """Return when the worker has stopped; raise what stopped it, if anything did."""
        if self._runner is not None:
            await self._runner

    async def drain(self) -> None:
        """Stop taking frames, finish every accepted one, then disconnect."""
        if self._closed or self._draining:
            return
        self._draining = True
        cfg = self.settings.edge
        queued, pending = len(self._batcher), len(self._pending)
        self._drain_by = time.time() + cfg.drain_timeout_s
        for sub in self._inputs:
            await sub.unsubscribe()
        self._batcher.close()
        self._pending_changed.set()
        if self._runner is not None:
            await self._runner
        await self.close()
        log.info(
            "edge worker %s of site %s drained: %d queued and %d escalated frames were "
            "waiting; every one has its final result",
            cfg.worker_id,
            self.site,
            queued,
            pending,
        )

    async def close(self) -> None:
        """Stop now: frames still queued get no result (core NATS is at-most-once)."""
        if self._closed:
            return
        self._closed = True
        self._batcher.close()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._nc is not None and not self._nc.is_closed:
            # Results are already published; flush them out, then close. (A NATS drain
            # would wait for the answers' pull subscription to time out first.)
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
            await self._nc.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._sanitizer.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> EdgeWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.drain()
        else:
            await self.close()

    def __del__(self) -> None:
        if self._runner is not None and not self._closed:
            warnings.warn(f"unclosed {self!r}: call drain() or close()", ResourceWarning, 2)

    # ------------------------------------------------------------------ input

    async def _on_frame(self, msg: Msg) -> None:
        self.metrics.frames_received.labels(self.site).inc()
        self.metrics.received_bytes.labels(self.site).inc(len(msg.data))
        try:
            frame = decode_frame_message(
                msg.data, msg.headers, max_bytes=self.settings.edge.max_message_bytes
            )
            check_frame(
                frame, msg.subject, self.site, time.time(), self.settings.edge.max_clock_skew_s
            )
        except SchemaError as exc:
            await self._dead_letter(msg.subject, msg.data, "schema", str(exc))
            return
        request = _Request(frame, msg.reply or None, header(msg.headers, "Accept"))
        seen, stored = self._ids.admit(frame.frame_id)
        if seen is not Seen.NEW:
            await self._repeat(request, msg, seen, stored)
            return
        self.counters.frames += 1
        if frame.privacy is PrivacyClass.LOCAL_ONLY and sheds(frame.priority, self.pressure):
            # Hot or overloaded, and this frame may not be offloaded: lowest priority first.
            self._count_shed()
            await self._finalize(request, self._shed_result(frame))
            return
        # The batcher works in monotonic time; it also caps this at the latency target.
        due = time.monotonic() + max(0.0, frame.deadline_at - time.time())
        admission = self._batcher.offer(request, priority=frame.priority, due=due)
        self.metrics.queue_depth.labels(self.site).set(len(self._batcher))
        if admission.shed is not None:
            self._count_shed()
            await self._finalize(admission.shed, self._shed_result(admission.shed.frame))

    def _count_shed(self) -> None:
        self.metrics.shed.labels(self.site).inc()
        self.counters.shed += 1

    async def _repeat(
        self, request: _Request, msg: Msg, seen: Seen, stored: InferenceResult | None
    ) -> None:
        """A frame id this worker has in flight or answered: never a second final result."""
        frame = request.frame
        self.metrics.repeated_frames.labels(self.site, seen.value).inc()
        if request.reply_to is None:
            await self._dead_letter(
                msg.subject,
                msg.data,
                "repeat",
                f"frame id {frame.frame_id!r} repeated while {seen.value.replace('_', ' ')}: "
                f"its one final result is on {subjects.results(self.site, frame.camera)}; "
                "a new frame needs a new id",
            )
        elif stored is not None:
            await self._reply(Joiner(request.reply_to, request.accept), stored)
        else:
            self._ids.join(frame.frame_id, Joiner(request.reply_to, request.accept))

    async def _reply(self, joiner: Joiner, result: InferenceResult) -> None:
        assert self._nc is not None
        reply, headers = encode_result_for(result, joiner.accept)
        await self._nc.publish(joiner.reply_to, reply, headers=headers)

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
        log.info("edge worker %s: %s -> %s", self.settings.edge.worker_id, self.model, model)
        self.model = model
        self.counters = ModelCounters(since=time.time())
        self.drift.reset()
        self.metrics.model.info({"name": model.name, "version": model.version})
        self.metrics.model_swaps.labels(self.site).inc()

    def _infer(self, model: OnnxModel, requests: list[_Request]) -> np.ndarray:
        """Runs in the thread pool: pixels of every region -> probabilities."""
        crops = [crop for r in requests for crop in r.frame.crops()]
        return model.predict_proba(pixels_to_features(crops))

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := await self._batcher.next_batch():
            self.metrics.queue_depth.labels(self.site).set(len(self._batcher))
            started = time.monotonic()
            model = self.model  # one model per batch, whatever a swap does meanwhile
            try:
                probabilities = await loop.run_in_executor(
                    self._executor, self._infer, model, batch
                )
            except HybridfleetError as exc:
                self.counters.errors += 1
                for request in batch:
                    self._ids.forget(request.frame.frame_id)
                    await self._dead_letter(
                        subjects.frames(self.site, request.frame.camera),
                        encode(request.frame),
                        "model",
                        f"edge model failed on the batch: {exc}",
                    )
                continue
            if self.settings.edge.inject_latency_ms:
                await asyncio.sleep(self.settings.edge.inject_latency_ms / 1000)
            elapsed = time.monotonic() - started
            self._busy_s += elapsed
            self._update_pressure()
            self._batcher.record_batch(len(batch), elapsed)
            self.metrics.batch_size.labels(self.site).observe(len(batch))
            self.metrics.inference_seconds.labels(self.site).observe(elapsed)
            await self._decided.put((batch, probabilities, model))
        await self._decided.put(None)

    # ------------------------------------------------------------------ decisions

    async def _decide_loop(self) -> None:
        # Escalations are sent by tasks of their own, so that a slow one (a whole frame
        # being face-blurred) never holds up the next batch's local answers; the
        # semaphore bounds how many are in hand, and the group waits for all of them.
        slots = asyncio.Semaphore(_MAX_SENDING)

        async def send(coro: Coroutine[Any, Any, None]) -> None:
            try:
                await coro
            finally:
                slots.release()

        async with asyncio.TaskGroup() as sending:
            while (item := await self._decided.get()) is not None:
                batch, probabilities, model = item
                row = 0
                for request in batch:
                    n = len(request.frame.regions)
                    scores = probabilities[row : row + n]
                    row += n
                    result, decision = self._decide(request.frame, scores, model)
                    if decision.escalate:
                        await slots.acquire()
                        sending.create_task(send(self._escalate(request, result, decision)))
                    elif self._is_shadow_sample(request.frame, decision):
                        # Claimed, so that the cloud's answer can never become final.
                        if await self._finalize(request, result, claim=True):
                            await slots.acquire()
                            sending.create_task(send(self._shadow_escalate(request.frame, result)))
                    else:
                        await self._finalize(request, result)
        # Nothing more can be escalated: let the deadline loop finish once all is answered.
        self._decided_all = True
        self._pending_changed.set()

    def _decide(
        self, frame: Frame, scores: np.ndarray, model: OnnxModel
    ) -> tuple[InferenceResult, Decision]:
        labels = tuple(int(i) for i in scores.argmax(axis=1))
        confidence = frame_confidence(scores, self.settings.edge.confidence_signal)
        assert self._link is not None
        threshold = self.policy.threshold_for(frame.threshold)
        if frame.privacy is not PrivacyClass.LOCAL_ONLY:
            # Under heat or load, frames that may leave lean on the cloud more.
            threshold = raised_threshold(
                threshold, self.pressure, self.settings.edge.threshold_raise
            )
        facts = FrameFacts(
            priority=frame.priority,
            confidence=confidence,
            threshold=threshold,
            privacy=frame.privacy,
            time_left_s=frame.deadline_at - time.time(),
            has_regions=bool(frame.regions),
            link_up=self._link.up,
            budget_left=self._allowance.allows(time.time()),
        )
        self.metrics.link_up.labels(self.site).set(int(self._link.up))
        decision = self.policy.decide(facts, self.round_trips.estimate())
        result = InferenceResult(
            frame_id=frame.frame_id,
            site=frame.site,
            camera=frame.camera,
            seq=frame.seq,
            labels=labels,
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            confidence=confidence,
            source=Source.EDGE,
            model=model.name,
            model_version=model.version,
            latency_ms=0.0,  # set when it becomes final
            reason=decision.reason,
            # The cloud was wanted and only money stood in the way.
            degraded=decision.reason is Reason.BUDGET,
        )
        return result, decision

    async def _outbound(
        self, frame: Frame, send: PrivacyClass, edge_result: InferenceResult
    ) -> Escalation:
        """What leaves the site for ``frame``: only what ``send`` allows, sanitised."""
        if send is PrivacyClass.FULL and self._face_blur is not None:
            # People must not leave the site: blur faces in a whole frame that does.
            report = await asyncio.get_running_loop().run_in_executor(
                self._sanitizer, self._face_blur.sanitize, frame.image
            )
            self.metrics.faces_blurred.labels(self.site).inc(len(report.faces))
            frame = replace(frame, image=report.image)
        embedding = None
        if send is PrivacyClass.EMBEDDING:
            # Only the site's embedding of each region leaves, never a pixel.
            features = pixels_to_features(frame.crops())
            embedding = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._embedder.embed, features
            )
        return Escalation.of_frame(
            frame,
            send,
            self._reply_subject,
            edge_result.labels,
            edge_result.confidence,
            embedding=embedding,
        )

    async def _charge(self, regions: int, sent_bytes: int) -> bool:
        """Pay for one escalation from the site's daily budget; False if it is used up."""
        allowance = self._allowance
        cost = escalation_cost(self._prices, regions, sent_bytes)
        if allowance.needs_block(cost):
            assert self._ledger is not None
            try:
                grant = await self._ledger.reserve(
                    allowance.day, max(allowance.block, cost), allowance.limit
                )
            except Exception as exc:  # the site's own server: rare, and only this block
                log.warning("could not reserve cloud budget: %s", exc)
                return False
            was_exhausted = allowance.exhausted
            allowance.granted(grant)
            if allowance.exhausted and not was_exhausted:
                await self._publish_budget_exhausted()
        if allowance.spend(cost):
            self.metrics.cloud_spend_usd.labels(self.site).inc(cost)
            return True
        return False

    async def _publish_budget_exhausted(self) -> None:
        log.warning(
            "site %s used up its cloud budget of $%.6g for %s: answering at the edge",
            self.site,
            self._allowance.limit,
            self._allowance.day,
        )
        event = {
            "type": "budget",
            "v": 1,
            "site": self.site,
            "worker": self.settings.edge.worker_id,
            "status": "exhausted",
            "day": self._allowance.day,
            "limit_usd": self._allowance.limit,
            "at": time.time(),
        }
        assert self._nc is not None
        with contextlib.suppress(Exception):
            await self._nc.publish(subjects.health(self.site), orjson.dumps(event))

    def _is_shadow_sample(self, frame: Frame, decision: Decision) -> bool:
        assert self._link is not None
        return (
            decision.reason is Reason.CONFIDENT
            and frame.privacy is not PrivacyClass.LOCAL_ONLY
            and self._link.up
            and self._sampler.decide(frame.frame_id)
        )

    async def _shadow_escalate(self, frame: Frame, edge_result: InferenceResult) -> None:
        """Send a kept frame to the cloud only to compare answers (drift monitoring)."""
        escalation = replace(
            await self._outbound(frame, frame.privacy, edge_result),
            priority=_SHADOW_PRIORITY,
            deadline_at=time.time() + _SHADOW_DEADLINE_S,
        )
        data = encode(escalation)
        if not await self._charge(len(frame.regions), len(data)):
            return
        self._shadows[frame.frame_id] = _Shadow(edge_result.labels, edge_result.confidence)
        while len(self._shadows) > _MAX_SHADOWS:
            del self._shadows[next(iter(self._shadows))]
        try:
            await self._store(frame, data)
        except Exception as exc:
            # Only a comparison is lost; the frame already has its final result.
            log.info("could not store shadow sample %s: %s", frame.frame_id, exc)
            self._shadows.pop(frame.frame_id, None)
            self.metrics.escalation_failures.labels(self.site).inc()
            return
        self.metrics.shadow_escalations.labels(self.site).inc()
        self.metrics.escalated_bytes.labels(self.site).inc(len(data))

    async def _store(self, frame: Frame, data: bytes) -> bool:
        """Store an escalation in the site's stream; raises if it was not stored.

        Returns False when the stream already had it (a repeat within its dedup window).
        """
        assert self._js is not None and self._tags is not None
        ack = await self._js.publish(
            subjects.escalations(frame.site, frame.camera),
            data,
            timeout=self.settings.edge.escalation_publish_timeout_s,
            # The frame id makes a retried publish a no-op within the dedup window; the
            # tag proves to whoever gets the answer that this site's edge asked.
            headers={"Nats-Msg-Id": frame.frame_id, TAG_HEADER: self._tags.tag(frame.frame_id)},
        )
        return not ack.duplicate

    async def _escalate(
        self, request: _Request, edge_result: InferenceResult, decision: Decision
    ) -> None:
        frame = request.frame
        escalation = await self._outbound(frame, decision.send, edge_result)
        data = encode(escalation)
        if not await self._charge(len(frame.regions), len(data)):
            await self._finalize(request, _fallback(edge_result, Reason.BUDGET))
            return
        if decision.awaits_cloud:
            # Registered before publishing: the cloud's answer can overtake our PubAck.
            waiting = _Waiting(request, edge_result, time.monotonic())
            self._pending.add(frame.frame_id, frame.deadline_at, waiting)
            self._pending_changed.set()
        try:
            stored = await self._store(frame, data)
        except Exception as exc:
            log.warning("could not store escalation of %s: %s", frame.frame_id, exc)
            self.metrics.escalation_failures.labels(self.site).inc()
            self.counters.errors += 1
            if self._pending.resolve(frame.frame_id) is not None or not decision.awaits_cloud:
                await self._finalize(
                    request, _fallback(edge_result, Reason.ESCALATION_FAILED), claim=True
                )
            return
        if not stored and await self._stored_final(frame.frame_id) is not None:
            # Escalated before by another worker or run, and answered: answer with that.
            if self._pending.resolve(frame.frame_id) is not None or not decision.awaits_cloud:
                await self._answered_elsewhere(request)
            return
        self.metrics.escalations.labels(self.site, decision.send.value).inc()
        self.counters.escalated += 1
        self.metrics.escalated_bytes.labels(self.site).inc(len(data))
        self.metrics.pending_escalations.labels(self.site).set(len(self._pending))
        if not decision.awaits_cloud:
            # Stored for the cloud to answer after the link returns; the edge answers now.
            await self._finalize(request, _fallback(edge_result, decision.reason), claim=True)

    # ------------------------------------------------------------------ answers

    async def _on_answer(self, msg: Msg) -> None:
        self.metrics.answer_bytes.labels(self.site).inc(len(msg.data))
        try:
            cloud = decode_result(msg.data, max_bytes=self.settings.edge.max_message_bytes)
            if cloud.site != self.site:
                raise SchemaError(f"result.site: {cloud.site!r} but this is site {self.site!r}")
        except SchemaError as exc:
            await self._dead_letter(msg.subject, msg.data, "schema", str(exc))
            await msg.term()
            return
        assert self._tags is not None
        if not self._tags.verify(cloud.frame_id, header(msg.headers, TAG_HEADER)):
            await self._dead_letter(
                msg.subject,
                msg.data,
                "forged",
                f"answer to frame {cloud.frame_id!r} refused: its escalation carries no valid "
                f"{TAG_HEADER} of this site's edge, so the site never accepted that frame",
            )
            await msg.term()
            return
        shadow = self._shadows.pop(cloud.frame_id, None)
        if shadow is not None:
            # Its final result is the edge's, claimed when it was published.
            self._compare(shadow.labels, shadow.confidence, cloud.labels, kept=True)
            await msg.ack()
            return
        waiting = self._pending.resolve(cloud.frame_id)
        request: _Request | None = None
        edge_labels = cloud.edge_labels
        if waiting is not None:
            self.metrics.pending_escalations.labels(self.site).set(len(self._pending))
            round_trip = time.monotonic() - waiting.sent_at
            self.round_trips.observe(round_trip)
            self.metrics.cloud_round_trip_seconds.labels(self.site).observe(round_trip)
            request, edge_labels = waiting.request, waiting.edge_result.labels
            self._compare(edge_labels, waiting.edge_result.confidence, cloud.labels, kept=False)
        final = replace(cloud, reason=Reason.CLOUD_ANSWER, degraded=False, edge_labels=edge_labels)
        # Without ``waiting`` the frame was escalated by an earlier run of this worker,
        # or its deadline passed: the claim decides whether this answer is final.
        if not await self._finalize(request, final, claim=True):
            self.metrics.late_replies.labels(self.site).inc()
        await msg.ack()

    def _compare(
        self,
        edge_labels: tuple[int, ...],
        edge_confidence: float,
        cloud_labels: tuple[int, ...],
        *,
        kept: bool,
    ) -> None:
        # A NaN confidence (a broken model output) is not a comparison the monitor takes.
        if not 0.0 <= edge_confidence <= 1.0:
            return
        self.drift.observe(edge_labels, edge_confidence, cloud_labels, kept, time.time())
        kind = "shadow" if kept else "escalated"
        self.metrics.compared.labels(self.site, kind).inc()
        self.counters.compared += 1
        if edge_labels == cloud_labels:
            self.metrics.agreed.labels(self.site, kind).inc()
            self.counters.agreed += 1

    async def _health_loop(self) -> None:
        """Publish the drift monitor's report on ``health.<site>`` every interval."""
        assert self._nc is not None
        interval = self.settings.edge.health_interval_s
        subject = subjects.health(self.site)
        while not self._answers_done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answers_done.wait(), interval)
            report = self.drift.report(time.time())
            degraded = report.status is HealthStatus.DEGRADED
            self.metrics.health_degraded.labels(self.site).set(int(degraded))
            if report.rolling_agreement is not None:
                self.metrics.drift_agreement.labels(self.site).set(report.rolling_agreement)
            if degraded:
                log.warning("edge model degraded: %s", "; ".join(report.reasons))
            try:
                await self._nc.publish(subject, report.to_json())
            except Exception as exc:  # a health report is advisory: never stop the worker
                log.info("could not publish health report: %s", exc)

    # ------------------------------------------------------------------ status

    def _update_pressure(self) -> None:
        cfg = self.settings.edge
        self.pressure = self._pressure.update(
            self._temperature_c, len(self._batcher), cfg.queue_capacity
        )
        self.metrics.offload_pressure.labels(self.site).set(self.pressure)

    async def _status_loop(self) -> None:
        """Every heartbeat interval: read heat and backlog, publish a heartbeat."""
        assert self._heartbeats is not None and self._js is not None
        interval = self.settings.edge.heartbeat_interval_s
        last, busy = time.monotonic(), self._busy_s
        stream = subjects.site_escalations_stream(self.site)
        while not self._answers_done.is_set():
            now = time.monotonic()
            if isinstance(self.thermal, SimulatedThermal):
                self.thermal.set_utilisation((self._busy_s - busy) / max(now - last, 1e-9))
            last, busy = now, self._busy_s
            reading = self.thermal.read_c()
            if reading is not None:
                self._temperature_c = reading
            self.metrics.temperature.labels(self.site).set(self._temperature_c)
            self._update_pressure()
            try:
                info = await self._js.stream_info(stream)
                self._backlog = info.state.messages
                self.metrics.site_backlog.labels(self.site).set(self._backlog)
            except Exception as exc:  # advisory figure: keep the last one
                log.debug("could not read the backlog of %s: %s", stream, exc)
            await self._heartbeats.publish_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answers_done.wait(), interval)

    def _snapshot(self) -> Heartbeat:
        c = self.counters
        assert self._link is not None
        return Heartbeat(
            site=self.site,
            worker=self.settings.edge.worker_id,
            tier=Tier.EDGE,
            model=self.model.name,
            model_version=self.model.version,
            at=time.time(),
            started_at=self._started_at,
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
            queue_depth=len(self._batcher),
            pending=len(self._pending),
            link_up=self._link.up,
            temperature_c=self._temperature_c,
            temperature_source=self.thermal.source,
            health=Health.DEGRADED if self.drift.alarmed else Health.HEALTHY,
            backlog=self._backlog,
        )

    async def _deadline_loop(self) -> None:
        while True:
            now = time.time()
            # Draining: whatever still waits for the cloud is answered by drain_by.
            cutoff = now if self._drain_by is None or now < self._drain_by else math.inf
            for _, waiting in self._pending.pop_expired(cutoff):
                await self._finalize(
                    waiting.request,
                    _fallback(waiting.edge_result, Reason.CLOUD_TIMEOUT),
                    claim=True,
                )
            self.metrics.pending_escalations.labels(self.site).set(len(self._pending))
            if self._decided_all and not self._pending:
                self._answers_done.set()
                return
            next_due = self._pending.next_deadline()
            if next_due is not None and self._drain_by is not None:
                next_due = min(next_due, self._drain_by)
            timeout = None if next_due is None else max(0.0, next_due - time.time())
            self._pending_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending_changed.wait(), timeout)

    async def _finalize(
        self, request: _Request | None, result: InferenceResult, *, claim: bool = False
    ) -> bool:
        """Publish the one final result of a frame; False if it already had one."""
        here = (Source.EDGE.value,) if result.source is Source.EDGE else _EDGE_THEN_CLOUD
        if request is not None:
            latency_ms = (time.time() - request.frame.captured_at) * 1000
            result = replace(result, latency_ms=latency_ms, path=request.frame.path + here)
        else:
            # A cloud answer for a frame this run never saw: where it came from is lost.
            result = replace(result, path=here)
        assert self._finals is not None
        published = await self._finals.publish(
            result,
            reply_to=request.reply_to if request else None,
            accept=request.accept if request else None,
            claim=claim,
        )
        if published:
            self.metrics.decisions.labels(self.site, result.reason.value).inc()
            self._latencies.observe(result.latency_ms)
            if result.source is Source.EDGE and result.reason is not Reason.SHED:
                self.counters.local += 1
            for joiner in self._ids.finish(result.frame_id, result):
                await self._reply(joiner, result)
        elif request is not None:
            await self._answered_elsewhere(request)
        return published

    async def _stored_final(self, frame_id: str) -> InferenceResult | None:
        """The claimed final result of ``frame_id`` in the site's finals stream, if any."""
        assert self._js is not None
        try:
            raw = await self._js.get_last_msg(
                subjects.finals_stream(self.site), subjects.finals(self.site, frame_id)
            )
            return decode_result(raw.data or b"")
        except Exception as exc:  # none (not claimed, or gone by max_age) or unreadable
            log.debug("no stored final result of %s: %r", frame_id, exc)
            return None

    async def _answered_elsewhere(self, request: _Request) -> None:
        """The claim was refused: another worker of the site, or an earlier run of this
        one, already gave this frame id its final result. Answer with that one."""
        frame_id = request.frame.frame_id
        stored = await self._stored_final(frame_id)
        joiners = self._ids.finish(frame_id, stored) if stored else self._ids.forget(frame_id)
        if request.reply_to:
            joiners.append(Joiner(request.reply_to, request.accept))
        self.metrics.repeated_frames.labels(self.site, Seen.FINISHED.value).inc()
        if stored is not None:
            for joiner in joiners:
                await self._reply(joiner, stored)
        if stored is None or request.reply_to is None:
            await self._dead_letter(
                subjects.frames(self.site, request.frame.camera),
                encode(request.frame),
                "repeat",
                f"frame id {frame_id!r} already had its final result from another worker of "
                f"site {self.site!r} or an earlier run of this one; a new frame needs a new id",
            )

    def _shed_result(self, frame: Frame) -> InferenceResult:
        return InferenceResult(
            frame_id=frame.frame_id,
            site=frame.site,
            camera=frame.camera,
            seq=frame.seq,
            labels=(),
            scores=np.zeros((0, self.model.n_classes), dtype=np.float32),
            confidence=0.0,
            source=Source.EDGE,
            model=self.model.name,
            model_version=self.model.version,
            latency_ms=0.0,
            reason=Reason.SHED,
            degraded=True,
        )


def _fallback(edge_result: InferenceResult, reason: Reason) -> InferenceResult:
    """The edge's own answer as the final one, marked degraded: the cloud was wanted."""
    return replace(edge_result, reason=reason, degraded=True, edge_labels=edge_result.labels)
