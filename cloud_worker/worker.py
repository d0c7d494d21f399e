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
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from cloud_worker.metrics import CloudMetrics
from pipeline.config import Settings
from pipeline.digits import pixels_to_features
from pipeline.model import OnnxModel
from pipeline.natsio import connect, ensure_cloud_consumer, ensure_streams, publish_dead_letter
from schemas import subjects
from schemas.codec import decode_escalation, encode
from schemas.errors import HybridfleetError, SchemaError
from schemas.messages import Escalation, InferenceResult, Reason, Source

__all__ = ["CloudWorker"]

log = logging.getLogger(__name__)

_STAGE = "cloud"


@dataclass(slots=True)
class _Job:
    msg: Msg
    escalation: Escalation


class CloudWorker:
    """One cloud worker. Use as ``async with CloudWorker(settings) as w``.

    ``drain()`` stops fetching, finishes and acks the batch in hand, and disconnects;
    ``close()`` stops at once, leaving unacked escalations to be redelivered.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: OnnxModel | None = None,
        metrics: CloudMetrics | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.cloud
        self.model = model or OnnxModel.load(
            "cloud", Path(cfg.model_manifest) if cfg.model_manifest else None
        )
        self.metrics = metrics or CloudMetrics()
        self.metrics.model.info({"name": self.model.name, "version": self.model.version})
        self._executor = ThreadPoolExecutor(cfg.inference_threads, thread_name_prefix="cloud-onnx")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        """Connect, declare the stream and the shared consumer, and start fetching."""
        if self._runner is not None:
            return
        cfg = self.settings.cloud
        self._nc = await connect(self.settings.nats, f"hybridfleet-{cfg.worker_id}")
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, self.settings.stream)
        await ensure_cloud_consumer(self._js, cfg)
        self._runner = asyncio.create_task(self._run(), name=f"cloud-{cfg.worker_id}")
        log.info(
            "cloud worker %s running %s %s", cfg.worker_id, self.model.name, self.model.version
        )

    async def _run(self) -> None:
        assert self._js is not None
        cfg = self.settings.cloud
        subscription = await self._js.pull_subscribe(
            subjects.escalations(),
            durable=subjects.CLOUD_CONSUMER,
            stream=subjects.ESCALATIONS_STREAM,
        )
        while not self._stopping.is_set():
            try:
                messages = await subscription.fetch(cfg.fetch_batch, timeout=cfg.fetch_timeout_s)
            except NatsTimeoutError:
                continue  # nothing to do: normal when the queue is empty
            await self._handle(messages)

    async def wait(self) -> None:
        """Return when the worker has stopped; raise what stopped it, if anything did."""
        if self._runner is not None:
            await self._runner

    async def drain(self) -> None:
        """Finish and ack the batch in hand, then disconnect."""
        if self._closed:
            return
        self._stopping.set()
        if self._runner is not None:
            await self._runner
        await self.close()

    async def close(self) -> None:
        """Stop now. Unacked escalations are redelivered to another worker later."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> CloudWorker:
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

    # ------------------------------------------------------------------ work

    async def _handle(self, messages: list[Msg]) -> None:
        jobs: list[_Job] = []
        for msg in messages:
            self.metrics.escalations.inc()
            if msg.metadata.num_delivered > 1:
                self.metrics.redelivered.inc()
            site = _site_of(msg.subject)
            try:
                escalation = decode_escalation(
                    msg.data, max_bytes=self.settings.cloud.max_message_bytes
                )
                _check_addressing(escalation, msg.subject)
            except SchemaError as exc:
                await self._reject(msg, site, "schema", str(exc))
                continue
            jobs.append(_Job(msg, escalation))
        if not jobs:
            return
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(self._executor, self._infer, jobs)
        except HybridfleetError as exc:
            # Possibly a passing fault: let the server redeliver, up to max_deliver.
            log.error("cloud model failed on a batch of %d: %s", len(jobs), exc)
            for job in jobs:
                await job.msg.nak(delay=1.0)
            return
        if self.settings.cloud.inject_latency_ms:
            await asyncio.sleep(self.settings.cloud.inject_latency_ms / 1000)
        self.metrics.batch_size.observe(len(jobs))
        self.metrics.inference_seconds.observe(time.monotonic() - started)
        assert self._nc is not None
        row = 0
        for job in jobs:
            n = len(job.escalation.regions)
            await self._nc.publish(
                job.escalation.reply_to,
                encode(self._answer(job.escalation, probabilities[row : row + n])),
            )
            row += n
        # Acks go out only once the answers have reached the server.
        await self._nc.flush()
        for job in jobs:
            await job.msg.ack()
            self.metrics.answered.labels(job.escalation.site).inc()

    def _infer(self, jobs: list[_Job]) -> np.ndarray:
        """Runs in the thread pool."""
        crops = [crop for job in jobs for crop in job.escalation.region_pixels()]
        return self.model.predict_proba(pixels_to_features(crops))

    def _answer(self, escalation: Escalation, scores: np.ndarray) -> InferenceResult:
        labels = tuple(int(i) for i in scores.argmax(axis=1))
        return InferenceResult(
            frame_id=escalation.frame_id,
            site=escalation.site,
            camera=escalation.camera,
            seq=escalation.seq,
            labels=labels,
            scores=np.ascontiguousarray(scores, dtype=np.float32),
            confidence=float(scores.max(axis=1).min()) if labels else 1.0,
            source=Source.CLOUD,
            model=self.model.name,
            model_version=self.model.version,
            latency_ms=(time.time() - escalation.captured_at) * 1000,
            reason=Reason.CLOUD_ANSWER,
            edge_labels=escalation.edge_labels,
        )

    async def _reject(self, msg: Msg, site: str, kind: str, reason: str) -> None:
        """Dead-letter a message and terminate it, so it is never redelivered."""
        log.warning("dead letter from %s: %s", msg.subject, reason)
        self.metrics.dead_letters.labels(site, kind).inc()
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
