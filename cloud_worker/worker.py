"""The cloud worker: batch-fetch escalations, run the heavy model, reply, then ack.

Every cloud worker binds the same durable pull consumer, so adding one adds capacity
and a worker that dies leaves its unacked escalations to be redelivered to another
after ``ack_wait``. An escalation is acked only after its answer was flushed to the
server: a crash between the two means a repeat answer (the edge drops repeats),
never a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cloud_worker.deferral import Parking
from cloud_worker.metrics import CloudMetrics
from pipeline.config import Settings
from pipeline.fleet.heartbeat import HeartbeatPublisher, ModelCounters
from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel
from pipeline.messaging.natsio import connect, ensure_cloud_streams, publish_dead_letter
from pipeline.release.bundle import parse_trusted_keys
from pipeline.release.modelswap import ModelUpdater, bundle_cache
from pipeline.service import Service
from schemas import subjects
from schemas.codec import decode_escalation, encode
from schemas.errors import HybridfleetError, ModelError, SchemaError
from schemas.heartbeat import Health, Heartbeat, TemperatureSource, Tier
from schemas.messages import Escalation, InferenceResult, Reason, Source

__all__ = ["CLOUD_SITE", "CloudWorker"]

CLOUD_SITE = subjects.CLOUD_SITE

log = logging.getLogger(__name__)

_STAGE = "cloud"


@dataclass(slots=True)
class _Job:
    msg: Msg
    escalation: Escalation




def _embedding_rows(escalation: Escalation) -> np.ndarray:
    """The embedding as (rows, width): a single vector is one row."""
    assert escalation.embedding is not None
    embedding = escalation.embedding
    return embedding.reshape(1, -1) if embedding.ndim == 1 else embedding


class CloudWorker(Service):
    """One cloud worker: ``async with CloudWorker.from_settings(settings) as w``.

    ``drain()`` stops fetching, finishes and acks the batch in hand, and disconnects;
    ``close()`` stops at once, leaving unacked escalations to be redelivered.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: OnnxModel,
        embedding_model: OnnxModel,
        metrics: CloudMetrics | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.cloud
        self.model = model
        # Escalations that carry only an embedding are answered by the model trained
        # on embeddings (models/manifest.json role "cloud-embed").
        self.embedding_model = embedding_model
        self.metrics = metrics or CloudMetrics()
        self.metrics.model.info({"name": self.model.name, "version": self.model.version})
        self._executor = ThreadPoolExecutor(cfg.inference_threads, thread_name_prefix="cloud-onnx")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stopping = asyncio.Event()
        self.counters = ModelCounters(since=time.time())
        self._started_at = time.time()
        self._heartbeats: HeartbeatPublisher | None = None
        self._parked: Parking[_Job] = Parking(cfg.defer_batch, cfg.defer_max_s)
        self._trusted_keys = parse_trusted_keys(cfg.trusted_keys)  # refused now, not later
        self._updater: ModelUpdater | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, model: OnnxModel | None = None) -> CloudWorker:
        """The worker with its models loaded from the manifest."""
        manifest = Path(settings.cloud.model_manifest) if settings.cloud.model_manifest else None
        return cls(
            settings,
            model=model or OnnxModel.load("cloud", manifest),
            embedding_model=OnnxModel.load("cloud-embed"),
        )

    @property
    def name(self) -> str:
        return f"cloud-{self.settings.cloud.worker_id}"

    async def _open(self) -> None:
        """Connect, declare the cloud's streams and consumers."""
        cfg = self.settings.cloud
        self._nc = await connect(self.settings.nats, f"hybridfleet-{cfg.worker_id}")
        self._js = self._nc.jetstream()
        await ensure_cloud_streams(self._js, self.settings.stream, cfg)
        if self._trusted_keys:
            self._updater = ModelUpdater(
                self._nc,
                self._js,
                tier="cloud",
                site=CLOUD_SITE,
                worker=cfg.worker_id,
                trusted_keys=self._trusted_keys,
                cache_dir=bundle_cache(cfg.bundle_dir, CLOUD_SITE, cfg.worker_id),
                base=self.model,
                on_swap=self._swap_model,
                on_refused=lambda _: self.metrics.bundle_refusals.inc(),
            )
        self._heartbeats = HeartbeatPublisher(
            self._nc,
            self._js,
            CLOUD_SITE,
            cfg.worker_id,
            self._snapshot,
            cfg.heartbeat_interval_s,
        )
        log.info(
            "cloud worker %s ready: model %s %s (embeddings: %s %s), escalations from stream "
            "%s (consumer %s) for sites %s",
            cfg.worker_id,
            self.model.name,
            self.model.version,
            self.embedding_model.name,
            self.embedding_model.version,
            subjects.ESCALATIONS_STREAM,
            subjects.CLOUD_CONSUMER,
            cfg.sites,
        )

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        tasks.create_task(
            self._consume(subjects.CLOUD_CONSUMER, subjects.ESCALATIONS_STREAM, self._handle),
            name="cloud-escalations",
        )
        tasks.create_task(
            self._consume(
                subjects.ADVISORY_CONSUMER, subjects.ADVISORIES_STREAM, self._on_advisories
            ),
            name="cloud-advisories",
        )
        tasks.create_task(self._keep_parked_alive(), name="cloud-parked")
        assert self._heartbeats is not None
        tasks.create_task(self._heartbeats.run(self._stopping), name="cloud-heartbeats")
        if self._updater is not None:
            tasks.create_task(self._updater.run(self._stopping), name="cloud-models")

    def _swap_model(self, model: OnnxModel) -> None:
        """Answer with ``model`` from the next batch on; its counters start afresh."""
        log.info("cloud worker %s: %s -> %s", self.settings.cloud.worker_id, self.model, model)
        self.model = model
        self.counters = ModelCounters(since=time.time())
        self.metrics.model.info({"name": model.name, "version": model.version})
        self.metrics.model_swaps.inc()

    def _snapshot(self) -> Heartbeat:
        c = self.counters
        return Heartbeat(
            site=CLOUD_SITE,
            worker=self.settings.cloud.worker_id,
            tier=Tier.CLOUD,
            model=self.model.name,
            model_version=self.model.version,
            at=time.time(),
            started_at=self._started_at,
            model_since=c.since,
            frames=c.frames,
            local=c.local,
            escalated=0,
            shed=0,
            dead_letters=c.dead_letters,
            errors=c.errors,
            compared=0,
            agreed=0,
            latency_p95_ms=0.0,
            queue_depth=0,
            pending=0,
            link_up=True,
            temperature_c=0.0,
            temperature_source=TemperatureSource.SIMULATED,
            health=Health.HEALTHY,
            backlog=-1,
        )

    async def _consume(
        self, consumer: str, stream: str, handle: Callable[[list[Msg]], Awaitable[None]]
    ) -> None:
        """Fetch batches from a durable consumer until stopped, surviving server restarts."""
        assert self._js is not None
        cfg = self.settings.cloud
        subscription = None
        while not self._stopping.is_set():
            try:
                if subscription is None:
                    subscription = await self._js.pull_subscribe_bind(
                        durable=consumer, stream=stream
                    )
                messages = await subscription.fetch(cfg.fetch_batch, timeout=cfg.fetch_timeout_s)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                # Nothing new (normal when the queue is empty): parked work may be due.
                await handle([])
                continue
            except Exception as exc:
                # A restarted server or a new stream leader can leave a pull subscription
                # dead: start a new one.
                log.warning("fetching from %s failed: %r; retrying", stream, exc)
                subscription = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.5)
                continue
            await handle(messages)
        # Draining: what is parked is answered now, not left to be redelivered.
        await handle([])

    async def _stop_taking(self) -> None:
        """Stop fetching; the batch in hand and the parked escalations are answered."""
        log.info(
            "cloud worker %s draining: the batch in hand and %d parked escalations",
            self.settings.cloud.worker_id,
            len(self._parked),
        )
        self._stopping.set()

    async def _release(self) -> None:
        """Unacked escalations are redelivered to another worker later."""
        self._stopping.set()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._draining:
            log.info("cloud worker %s drained", self.settings.cloud.worker_id)

    # ------------------------------------------------------------------ work

    async def _handle(self, messages: list[Msg]) -> None:
        cfg = self.settings.cloud
        jobs: list[_Job] = []
        now = time.time()
        for msg in messages:
            self.metrics.escalations.inc()
            self.counters.frames += 1
            if msg.metadata.num_delivered > 1:
                self.metrics.redelivered.inc()
            site = _site_of(msg.subject)
            try:
                escalation = decode_escalation(msg.data, max_bytes=cfg.max_message_bytes)
                _check_addressing(escalation, msg.subject)
                self._check_embedding(escalation)
            except SchemaError as exc:
                await self._reject(msg, site, "schema", str(exc))
                continue
            if cfg.expired_escalations == "drop" and escalation.deadline_at < time.time():
                self.metrics.expired_dropped.inc()
                await msg.ack()
                continue
            if self._parked.deferrable(escalation.priority, escalation.deadline_at - now):
                # Waits for company: a bigger batch costs less per escalation.
                self._parked.park(_Job(msg, escalation), time.monotonic())
                self.metrics.deferred.inc()
                continue
            jobs.append(_Job(msg, escalation))
        if messages or self._parked:
            jobs.extend(self._parked.take(time.monotonic(), draining=self._stopping.is_set()))
        if not jobs:
            return
        # One model per group, whatever a swap does meanwhile: pixels go to the
        # classifier, embeddings (privacy "embedding") to the one trained on them.
        groups = [
            (model, group)
            for model, group in (
                (self.model, [j for j in jobs if j.escalation.embedding is None]),
                (self.embedding_model, [j for j in jobs if j.escalation.embedding is not None]),
            )
            if group
        ]
        async with self._keep_alive(jobs):
            answers = [(model, await self._run_model(group, model)) for model, group in groups]
            if cfg.inject_latency_ms:
                await asyncio.sleep(cfg.inject_latency_ms / 1000)
        for model, answered in answers:
            await self._reply(answered, model)

    async def _run_model(self, jobs: list[_Job], model: OnnxModel) -> list[tuple[_Job, np.ndarray]]:
        """Scores per job. A batch that fails is retried job by job, so that a poison
        escalation is naked (and after max_deliver dead-lettered) without the others."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            probabilities = await loop.run_in_executor(self._executor, self._infer, model, jobs)
        except HybridfleetError as exc:
            if len(jobs) > 1:
                log.warning("cloud model failed on a batch of %d (%s): one by one", len(jobs), exc)
                out = []
                for job in jobs:
                    out.extend(await self._run_model([job], model))
                return out
            log.error("cloud model failed on %s: %s", jobs[0].escalation.frame_id, exc)
            self.metrics.model_failures.inc()
            self.counters.errors += 1
            await jobs[0].msg.nak(delay=1.0)
            return []
        self.metrics.batch_size.observe(len(jobs))
        self.metrics.inference_seconds.observe(time.monotonic() - started)
        out, row = [], 0
        for job in jobs:
            n = len(job.escalation.regions)
            out.append((job, probabilities[row : row + n]))
            row += n
        return out

    async def _reply(self, answered: list[tuple[_Job, np.ndarray]], model: OnnxModel) -> None:
        """Store every answer in REPLIES, then ack its escalation (never the other way)."""
        assert self._js is not None
        js = self._js

        async def one(job: _Job, scores: np.ndarray) -> None:
            data = encode(self._answer(job.escalation, scores, model))
            # The msg id dedups a repeat answer after a crash between storing it and the
            # ack; the edge's tag goes back with the answer (edge_worker/tags.py).
            headers = {"Nats-Msg-Id": f"answer-{job.escalation.frame_id}"}
            tag = job.msg.headers.get(subjects.EDGE_TAG_HEADER) if job.msg.headers else None
            if tag is not None:
                headers[subjects.EDGE_TAG_HEADER] = tag
            try:
                await js.publish(job.escalation.reply_to, data, timeout=5.0, headers=headers)
            except Exception as exc:
                log.warning("could not store answer of %s: %s", job.escalation.frame_id, exc)
                await job.msg.nak(delay=1.0)
                return
            await job.msg.ack()
            self.metrics.answered.labels(job.escalation.site).inc()
            self.counters.local += 1

        await asyncio.gather(*(one(job, scores) for job, scores in answered))

    async def _keep_parked_alive(self) -> None:
        """Parked escalations stay this worker's: in progress every ack_wait/3."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.cloud.ack_wait_s / 3)
            for job in self._parked:
                with contextlib.suppress(Exception):
                    await job.msg.in_progress()

    @contextlib.asynccontextmanager
    async def _keep_alive(self, jobs: list[_Job]) -> AsyncIterator[None]:
        """While a batch runs, tell the server every ack_wait/3 that it is in progress,
        so a long batch is not redelivered to another worker meanwhile."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(self.settings.cloud.ack_wait_s / 3)
                for job in jobs:
                    await job.msg.in_progress()

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _on_advisories(self, advisories: list[Msg]) -> None:
        """An escalation used up its deliveries: dead-letter it with its original bytes."""
        assert self._js is not None
        for advisory in advisories:
            try:
                event = orjson.loads(advisory.data)
                seq, deliveries = int(event["stream_seq"]), int(event["deliveries"])
                original = await self._js.get_msg(subjects.ESCALATIONS_STREAM, seq)
            except Exception as exc:  # malformed, or the message is gone (max_age)
                log.error("max-deliveries advisory not handled: %r", exc)
                await advisory.ack()
                continue
            subject = original.subject or "unknown"
            site = _site_of(subject)
            self.metrics.dead_letters.labels(site, "max_deliveries").inc()
            self.counters.dead_letters += 1
            await publish_dead_letter(
                self._js,
                stage=_STAGE,
                site=site,
                subject=subject,
                reason=f"failed in the cloud {deliveries} times (max_deliver); the cloud "
                "worker's log has each error",
                data=original.data or b"",
            )
            # A work-queue stream would otherwise keep it until max_age.
            with contextlib.suppress(Exception):
                await self._js.delete_msg(subjects.ESCALATIONS_STREAM, seq)
            await advisory.ack()

    def _infer(self, model: OnnxModel, jobs: list[_Job]) -> np.ndarray:
        """Runs in the thread pool: one row of features per region of every job."""
        prefix = self.settings.cloud.inject_failure_prefix
        if prefix and any(job.escalation.frame_id.startswith(prefix) for job in jobs):
            raise ModelError(f"injected failure for frame ids starting with {prefix!r}")
        if model is self.embedding_model:
            rows = [_embedding_rows(job.escalation) for job in jobs]
            return model.predict_proba(np.concatenate(rows).astype(np.float32, copy=False))
        crops = [crop for job in jobs for crop in job.escalation.region_pixels()]
        return model.predict_proba(pixels_to_features(crops))

    def _check_embedding(self, escalation: Escalation) -> None:
        """An embedding must be one row per region, as wide as the model's input."""
        if escalation.embedding is None:
            return
        rows, width = _embedding_rows(escalation).shape
        wanted = self.embedding_model.spec.n_features
        if rows != len(escalation.regions) or width != wanted:
            raise SchemaError(
                f"escalation.embedding: shape {list(escalation.embedding.shape)} but "
                f"{len(escalation.regions)} regions of {wanted} values each are needed"
            )

    def _answer(
        self, escalation: Escalation, scores: np.ndarray, model: OnnxModel
    ) -> InferenceResult:
        labels = tuple(int(i) for i in scores.argmax(axis=1))
        return InferenceResult(
            frame_id=escalation.frame_id,
            site=escalation.site,
            camera=escalation.camera,
            seq=escalation.seq,
            labels=labels,
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            confidence=min(1.0, float(scores.max(axis=1).min())) if labels else 1.0,
            source=Source.CLOUD,
            model=model.name,
            model_version=model.version,
            # Never negative, whatever the clocks of edge and cloud say.
            latency_ms=max(0.0, (time.time() - escalation.captured_at) * 1000),
            reason=Reason.CLOUD_ANSWER,
            edge_labels=escalation.edge_labels,
        )

    async def _reject(self, msg: Msg, site: str, kind: str, reason: str) -> None:
        """Dead-letter a message and terminate it, so it is never redelivered."""
        log.warning("dead letter from %s: %s", msg.subject, reason)
        self.metrics.dead_letters.labels(site, kind).inc()
        self.counters.dead_letters += 1
        assert self._js is not None
        await publish_dead_letter(
            self._js, stage=_STAGE, site=site, subject=msg.subject, reason=reason, data=msg.data
        )
        await msg.term()


def _site_of(subject: str) -> str:
    tokens = subject.split(".")
    return tokens[1] if len(tokens) == 3 else "unknown"


def _check_addressing(escalation: Escalation, subject: str) -> None:
    # An escalation speaks only for the site of its subject, and its answer may only go
    # to that site's reply subjects: a crafted reply_to cannot reach another site.
    site = _site_of(subject)
    if escalation.site != site:
        raise SchemaError(f"escalation.site: {escalation.site!r} but it came on {subject!r}")
    if not escalation.reply_to.startswith(f"replies.{site}."):
        raise SchemaError(
            f"escalation.reply_to: {escalation.reply_to!r} is not a reply subject of site {site!r}"
        )
