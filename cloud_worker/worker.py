"""The cloud worker: batch-fetch escalations, run the heavy model, reply, then ack.

Every cloud worker binds the same durable pull consumer, so adding one adds capacity
and a worker that dies leaves its unacked escalations to be redelivered to another
after ``ack_wait``. An escalation is acked only after its answer was flushed to the
server: a crash between the two means a repeat answer (the edge drops repeats),
never a lost one. What is done with each fetched batch is ``answering``'s; this
module is the worker's lifecycle, its fetch loops, model swaps and heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from cloud_worker.answering import Answering
from cloud_worker.metrics import CloudMetrics
from cloud_worker.models import cloud_analyser
from pipeline.config import Settings
from pipeline.fleet.heartbeat import HeartbeatPublisher, ModelCounters
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.calibration import DEFAULT_SIGNAL
from pipeline.inference.model import OnnxModel
from pipeline.messaging.natsio import connect, ensure_cloud_streams
from pipeline.release.modelswap import ModelUpdater, bundle_cache
from pipeline.release.signing import parse_trusted_keys
from pipeline.service import Service
from schemas import subjects
from schemas.heartbeat import Health, Heartbeat, TemperatureSource, Tier
from schemas.messages import Source

__all__ = ["CLOUD_SITE", "CloudWorker"]

CLOUD_SITE = subjects.CLOUD_SITE

log = logging.getLogger(__name__)


class CloudWorker(Service):
    """One cloud worker: ``async with CloudWorker.from_settings(settings) as w``.

    ``drain()`` stops fetching, finishes and acks the batch in hand, and disconnects;
    ``close()`` stops at once, leaving unacked escalations to be redelivered.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        analyser: Analyser,
        embedding_model: OnnxModel,
        metrics: CloudMetrics | None = None,
    ) -> None:
        self.settings = settings
        cfg = settings.cloud
        self.analyser = analyser
        # Escalations that carry only an embedding are answered by the model trained
        # on embeddings (models/manifest.json role "cloud-embed").
        self.embedding_model = RegionClassifier(embedding_model, Source.CLOUD, DEFAULT_SIGNAL)
        self.metrics = metrics or CloudMetrics()
        self.metrics.model.info({"name": analyser.name, "version": analyser.version})
        # A batch in flight holds a thread while its model runs.
        self._executor = ThreadPoolExecutor(
            max(cfg.threads, cfg.batches_in_flight), thread_name_prefix="cloud-onnx"
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._stopping = asyncio.Event()
        self.counters = ModelCounters(since=time.time())
        self._started_at = time.time()
        self._heartbeats: HeartbeatPublisher | None = None
        self._answering = Answering(
            cfg,
            analyser=lambda: self.analyser,
            embedding_model=self.embedding_model,
            counters=lambda: self.counters,
            executor=self._executor,
            metrics=self.metrics,
            stopping=self._stopping,
        )
        self._trusted_keys = parse_trusted_keys(cfg.trusted_keys)  # refused now, not later
        self._updater: ModelUpdater | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, model: OnnxModel | None = None) -> CloudWorker:
        """The worker with its models loaded from the manifest: ``cloud.models`` (run as
        ``cloud.providers``, ``intra_op_threads`` and ``max_batch`` say), or the region
        classifier of role ``cloud`` (or ``model``), on ``intra_op_threads``."""
        return cls(
            settings,
            analyser=cloud_analyser(settings.cloud, model=model),
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
        self._answering.bind(self._js)
        if self._trusted_keys and isinstance(self.analyser, RegionClassifier):
            # Signed bundles roll out region classifiers (docs/model-bundles.md).
            self._updater = ModelUpdater(
                self._nc,
                self._js,
                tier="cloud",
                site=CLOUD_SITE,
                worker=cfg.worker_id,
                trusted_keys=self._trusted_keys,
                cache_dir=bundle_cache(cfg.bundle_dir, CLOUD_SITE, cfg.worker_id),
                base=self.analyser.model,
                on_swap=self._swap_model,
                on_refused=lambda _: self.metrics.bundle_refusals.inc(),
                intra_op_threads=cfg.intra_op_threads or None,
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
            self.analyser.name,
            self.analyser.version,
            self.embedding_model.name,
            self.embedding_model.version,
            subjects.ESCALATIONS_STREAM,
            subjects.CLOUD_CONSUMER,
            cfg.sites,
        )

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        answering = self._answering
        tasks.create_task(
            self._consume(
                subjects.CLOUD_CONSUMER,
                subjects.ESCALATIONS_STREAM,
                answering.handle,
                in_flight=self.settings.cloud.batches_in_flight,
            ),
            name="cloud-escalations",
        )
        tasks.create_task(
            self._consume(
                subjects.ADVISORY_CONSUMER, subjects.ADVISORIES_STREAM, answering.on_advisories
            ),
            name="cloud-advisories",
        )
        tasks.create_task(answering.keep_parked_alive(), name="cloud-parked")
        assert self._heartbeats is not None
        tasks.create_task(self._heartbeats.run(self._stopping), name="cloud-heartbeats")
        if self._updater is not None:
            tasks.create_task(self._updater.run(self._stopping), name="cloud-models")

    def _swap_model(self, model: OnnxModel) -> None:
        """Answer with ``model`` from the next batch on; its counters start afresh."""
        log.info("cloud worker %s: %s -> %s", self.settings.cloud.worker_id, self.analyser, model)
        self.analyser = RegionClassifier(model, Source.CLOUD, DEFAULT_SIGNAL)
        self.counters = ModelCounters(since=time.time())
        self.metrics.model.info({"name": model.name, "version": model.version})
        self.metrics.model_swaps.inc()

    def _snapshot(self) -> Heartbeat:
        c = self.counters
        return Heartbeat(
            site=CLOUD_SITE,
            worker=self.settings.cloud.worker_id,
            tier=Tier.CLOUD,
            model=self.analyser.name,
            model_version=self.analyser.version,
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
        self,
        consumer: str,
        stream: str,
        handle: Callable[[list[Msg]], Awaitable[None]],
        *,
        in_flight: int = 1,
    ) -> None:
        """Fetch batches from a durable consumer until stopped, surviving server restarts.

        Up to ``in_flight`` fetched batches are handled at once; the next is fetched as
        soon as one of them is done (one: fetch, handle, fetch again). A batch that
        raises stops the worker, as a failure of the loop itself would.
        """
        assert self._js is not None
        cfg = self.settings.cloud
        subscription = None
        slots = asyncio.Semaphore(in_flight)

        async def handled(messages: list[Msg]) -> None:
            try:
                await handle(messages)
            finally:
                slots.release()

        # Leaving the group waits for the batches in hand.
        async with asyncio.TaskGroup() as batches:
            while not self._stopping.is_set():
                await slots.acquire()
                if self._stopping.is_set():
                    slots.release()
                    break
                try:
                    if subscription is None:
                        subscription = await self._js.pull_subscribe_bind(
                            durable=consumer, stream=stream
                        )
                    messages = await subscription.fetch(
                        cfg.fetch_batch, timeout=cfg.fetch_timeout_s
                    )
                except TimeoutError:  # nats.errors.TimeoutError is one too
                    # Nothing new (normal when the queue is empty): parked work may be due.
                    slots.release()
                    await handle([])
                    continue
                except Exception as exc:
                    # A restarted server or a new stream leader can leave a pull
                    # subscription dead: start a new one.
                    slots.release()
                    log.warning("fetching from %s failed: %r; retrying", stream, exc)
                    subscription = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 0.5)
                    continue
                batches.create_task(handled(messages))
        # Draining: what is parked is answered now, not left to be redelivered.
        await handle([])

    async def _stop_taking(self) -> None:
        """Stop fetching; the batch in hand and the parked escalations are answered."""
        log.info(
            "cloud worker %s draining: the batch in hand and %d parked escalations",
            self.settings.cloud.worker_id,
            len(self._answering.parked),
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
