"""Answering fetched escalations: check, park or batch, run the model, store, then ack.

An escalation that fails its checks is dead-lettered and terminated; an expired one
is dropped when ``cloud.expired_escalations`` says so; a non-urgent one may be parked
to wait for company (cloud_worker/deferral.py). The rest run in batches, one model per
batch, in the worker's thread pool; a batch that fails is retried job by job, so that
a poison escalation is naked (and after ``max_deliver`` dead-lettered) without the
others. Each answer is stored in ``REPLIES`` before its escalation is acked, never the
other way, and the server is told that a long batch, and what is parked, is still in
progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import KW_ONLY, dataclass, field
from functools import partial

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cloud_worker.deferral import Parking
from cloud_worker.jobs import (
    Job,
    answer,
    check_addressing,
    check_embedding,
    embedding_analyses,
    pixel_analyses,
    site_of,
)
from cloud_worker.metrics import CloudMetrics
from pipeline.config import CloudSettings
from pipeline.fleet.heartbeat import ModelCounters
from pipeline.inference.analysis import Analyser, Analysis, RegionClassifier
from pipeline.messaging.natsio import publish_dead_letter
from schemas import subjects
from schemas.codec import decode_escalation, encode
from schemas.errors import ModelError, SchemaError

__all__ = ["Answering"]

# The cloud worker's log, whichever of its modules writes the line.
log = logging.getLogger("cloud_worker.worker")

_STAGE = "cloud"

# jobs -> the answer per job (runs in the thread pool)
_Run = Callable[[list[Job]], list[Analysis]]


@dataclass(eq=False)
class Answering:
    """The escalations one cloud worker fetched, until answered. ``bind`` it once connected.

    ``analyser`` gives the one in use now and ``counters`` its counters: both change
    when the model is swapped. Escalations that carry only an embedding are answered
    by ``embedding_model``.
    """

    cfg: CloudSettings
    _: KW_ONLY
    analyser: Callable[[], Analyser]
    embedding_model: RegionClassifier
    counters: Callable[[], ModelCounters]
    executor: Executor
    metrics: CloudMetrics
    stopping: asyncio.Event
    parked: Parking[Job] = field(init=False)
    js: JetStreamContext | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.parked = Parking(self.cfg.defer_batch, self.cfg.defer_max_s)

    def bind(self, js: JetStreamContext) -> None:
        self.js = js

    async def handle(self, messages: list[Msg]) -> None:
        """Answer a fetched batch (and what is parked, once due); [] when nothing came."""
        cfg = self.cfg
        jobs: list[Job] = []
        now = time.time()
        for msg in messages:
            self.metrics.escalations.inc()
            self.counters().frames += 1
            if msg.metadata.num_delivered > 1:
                self.metrics.redelivered.inc()
            try:
                escalation = decode_escalation(msg.data, max_bytes=cfg.max_message_bytes)
                check_addressing(escalation, msg.subject)
                check_embedding(escalation, self.embedding_model.model.spec.n_features)
            except SchemaError as exc:
                await self._reject(msg, "schema", str(exc))
                continue
            if cfg.expired_escalations == "drop" and escalation.deadline_at < time.time():
                self.metrics.expired_dropped.inc()
                await msg.ack()
                continue
            if self.parked.deferrable(escalation.priority, escalation.deadline_at - now):
                # Waits for company: a bigger batch costs less per escalation.
                self.parked.park(Job(msg, escalation), time.monotonic())
                self.metrics.deferred.inc()
                continue
            jobs.append(Job(msg, escalation))
        if messages or self.parked:
            jobs.extend(self.parked.take(time.monotonic(), draining=self.stopping.is_set()))
        if not jobs:
            return
        # One analyser per group, whatever a swap does meanwhile: pixels go to the
        # tier's analyser, embeddings (privacy "embedding") to the classifier trained
        # on them.
        pixels = [j for j in jobs if j.escalation.embedding is None]
        embeddings = [j for j in jobs if j.escalation.embedding is not None]
        analyser = self.analyser()
        groups: list[tuple[Analyser, list[Job], _Run]] = [
            group
            for group in (
                (analyser, pixels, partial(pixel_analyses, analyser)),
                (
                    self.embedding_model,
                    embeddings,
                    partial(embedding_analyses, self.embedding_model),
                ),
            )
            if group[1]
        ]
        async with self._keep_alive(jobs):
            answers = [(one, await self._run_model(group, run)) for one, group, run in groups]
            if cfg.inject_latency_ms:
                await asyncio.sleep(cfg.inject_latency_ms / 1000)
        for one, answered in answers:
            await self._reply(answered, one)

    async def _run_model(self, jobs: list[Job], run: _Run) -> list[tuple[Job, Analysis]]:
        """The answer per job. A batch that fails is retried job by job, so that a poison
        escalation is naked (and after max_deliver dead-lettered) without the others."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            analyses = await loop.run_in_executor(self.executor, self._infer, jobs, run)
        except Exception as exc:  # a model error, or a bug in its path: the worker stays up
            if len(jobs) > 1:
                log.warning("cloud model failed on a batch of %d (%s): one by one", len(jobs), exc)
                out = []
                for job in jobs:
                    out.extend(await self._run_model([job], run))
                return out
            log.error("cloud model failed on %s: %s", jobs[0].escalation.frame_id, exc)
            self.metrics.model_failures.inc()
            self.counters().errors += 1
            await jobs[0].msg.nak(delay=1.0)
            return []
        self.metrics.batch_size.observe(len(jobs))
        self.metrics.inference_seconds.observe(time.monotonic() - started)
        return list(zip(jobs, analyses, strict=True))

    def _infer(self, jobs: list[Job], run: _Run) -> list[Analysis]:
        """Runs in the thread pool: the group's answer, job by job."""
        prefix = self.cfg.inject_failure_prefix
        if prefix and any(job.escalation.frame_id.startswith(prefix) for job in jobs):
            raise ModelError(f"injected failure for frame ids starting with {prefix!r}")
        return run(jobs)

    async def _reply(self, answered: list[tuple[Job, Analysis]], analyser: Analyser) -> None:
        """Store every answer in REPLIES, then ack its escalation (never the other way)."""
        assert self.js is not None
        js = self.js

        async def one(job: Job, analysis: Analysis) -> None:
            try:
                data = encode(answer(job.escalation, analysis, analyser))
            except SchemaError as exc:  # e.g. more items than a result may carry
                await self._reject(job.msg, "model", f"the cloud's answer cannot be sent: {exc}")
                return
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
            self.counters().local += 1

        await asyncio.gather(*(one(job, analysis) for job, analysis in answered))

    async def keep_parked_alive(self) -> None:
        """Parked escalations stay this worker's: in progress every ack_wait/3."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.cfg.ack_wait_s / 3)
            for job in self.parked:
                with contextlib.suppress(Exception):
                    await job.msg.in_progress()

    @contextlib.asynccontextmanager
    async def _keep_alive(self, jobs: list[Job]) -> AsyncIterator[None]:
        """While a batch runs, tell the server every ack_wait/3 that it is in progress,
        so a long batch is not redelivered to another worker meanwhile."""

        async def tick() -> None:
            while True:
                await asyncio.sleep(self.cfg.ack_wait_s / 3)
                for job in jobs:
                    await job.msg.in_progress()

        ticker = asyncio.create_task(tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def on_advisories(self, advisories: list[Msg]) -> None:
        """An escalation used up its deliveries: dead-letter it with its original bytes."""
        assert self.js is not None
        for advisory in advisories:
            try:
                event = orjson.loads(advisory.data)
                seq, deliveries = int(event["stream_seq"]), int(event["deliveries"])
                original = await self.js.get_msg(subjects.ESCALATIONS_STREAM, seq)
            except Exception as exc:  # malformed, or the message is gone (max_age)
                log.error("max-deliveries advisory not handled: %r", exc)
                await advisory.ack()
                continue
            subject = original.subject or "unknown"
            await self._dead_letter(
                subject,
                original.data or b"",
                "max_deliveries",
                f"failed in the cloud {deliveries} times (max_deliver); the cloud "
                "worker's log has each error",
            )
            # A work-queue stream would otherwise keep it until max_age.
            with contextlib.suppress(Exception):
                await self.js.delete_msg(subjects.ESCALATIONS_STREAM, seq)
            await advisory.ack()

    async def _reject(self, msg: Msg, kind: str, reason: str) -> None:
        """Dead-letter a message and terminate it, so it is never redelivered."""
        log.warning("dead letter from %s: %s", msg.subject, reason)
        await self._dead_letter(msg.subject, msg.data, kind, reason)
        await msg.term()

    async def _dead_letter(self, subject: str, data: bytes, kind: str, reason: str) -> None:
        """Store a dead letter from ``subject``'s site and count it."""
        site = site_of(subject)
        self.metrics.dead_letters.labels(site, kind).inc()
        self.counters().dead_letters += 1
        assert self.js is not None
        await publish_dead_letter(
            self.js, stage=_STAGE, site=site, subject=subject, reason=reason, data=data
        )
