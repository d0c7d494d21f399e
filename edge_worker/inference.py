"""Where batches meet the model: the batch loop, off the event loop.

Batches leave the ``AdaptiveBatcher`` and run in a thread pool (decoding, then the
tier's analyser: preprocessing, the model, decoding its outputs), up to
``edge.inference_threads`` at once; each batch runs on the one analyser it started
with, whatever a swap does meanwhile. A frame whose image cannot be decoded, or whose
regions reach outside it, is refused alone. An answered batch goes to the decide loop
through a queue of one, so a batch in the model waits there for the one being decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from edge_worker.batcher import AdaptiveBatcher
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.telemetry import Telemetry
from pipeline.inference.analysis import Analyser, Analysis, Look
from pipeline.inference.images import decode, to_rgb
from schemas.errors import HybridfleetError, ModelError, SchemaError
from schemas.fields import check_inside
from schemas.messages import Frame

__all__ = ["Answered", "AnsweredBatch", "BatchRunner", "infer", "pixels_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answered:
    """One frame the analyser answered: its request, decoded pixels and analysis."""

    request: Request
    image: np.ndarray
    analysis: Analysis


@dataclass(frozen=True, slots=True)
class AnsweredBatch:
    """A batch the analyser answered, and the frames of it that were refused."""

    answered: list[Answered]
    refused: list[tuple[Request, SchemaError]]
    analyser: Analyser


def pixels_of(frame: Frame) -> np.ndarray:
    """``frame``'s image decoded (grey, or RGB), its regions checked against it."""
    image = decode(frame.image)  # an encoded image decodes to RGB (or grey)
    if isinstance(frame.image, np.ndarray):
        image = to_rgb(image, frame.colour)
    check_inside("frame.regions", frame.regions, image)
    return image


def infer(analyser: Analyser, requests: Sequence[Request]) -> AnsweredBatch:
    """Runs in the thread pool: decode each frame, then analyse those that decoded."""
    decoded: list[tuple[Request, np.ndarray]] = []
    refused: list[tuple[Request, SchemaError]] = []
    for request in requests:
        try:
            decoded.append((request, pixels_of(request.frame)))
        except SchemaError as exc:
            refused.append((request, exc))
    looks = [Look(image, r.frame.regions, r.frame.threshold) for r, image in decoded]
    analyses = analyser.analyse(looks) if looks else []
    answered = [
        Answered(request, image, analysis)
        for (request, image), analysis in zip(decoded, analyses, strict=True)
    ]
    return AnsweredBatch(answered, refused, analyser)


@dataclass(eq=False)
class BatchRunner:
    """Runs every batch of ``batcher`` through the current analyser into ``answered``."""

    batcher: AdaptiveBatcher[Request]
    executor: Executor
    analyser: Callable[[], Analyser]
    telemetry: Telemetry
    metrics: EdgeMetrics
    site: str
    _: KW_ONLY
    on_failure: Callable[[list[Request], HybridfleetError, str], Awaitable[None]]
    inject_latency_s: float = 0.0
    concurrency: int = 1
    answered: asyncio.Queue[AnsweredBatch | None] = field(
        default_factory=lambda: asyncio.Queue(1), init=False
    )

    async def run(self) -> None:
        """Until the batcher is closed and empty; then put None.

        Up to ``concurrency`` batches run at once (``edge.inference_threads``): while
        one decodes its JPEGs or runs the model, the next can, on another core.
        """
        slots = asyncio.Semaphore(self.concurrency)
        async with asyncio.TaskGroup() as running:
            while True:
                await slots.acquire()
                batch = await self.batcher.next_batch()
                if not batch:
                    slots.release()
                    break
                running.create_task(self._run_one(batch, slots))
        await self.answered.put(None)

    async def _run_one(self, batch: list[Request], slots: asyncio.Semaphore) -> None:
        try:
            loop = asyncio.get_running_loop()
            self.metrics.queue_depth.labels(self.site).set(len(self.batcher))
            started = time.monotonic()
            analyser = self.analyser()  # one per batch, whatever a swap does meanwhile
            try:
                done = await loop.run_in_executor(self.executor, infer, analyser, batch)
            except HybridfleetError as exc:
                await self.on_failure(batch, exc, "model")
                return
            except Exception as exc:  # a bug in a model's code path: the worker stays up
                log.exception("edge analyser %s failed on a batch", analyser.name)
                await self.on_failure(batch, ModelError(f"{type(exc).__name__}: {exc}"), "model")
                return
            for request, refusal in done.refused:
                await self.on_failure([request], refusal, "schema")
            if self.inject_latency_s:
                await asyncio.sleep(self.inject_latency_s)
            elapsed = time.monotonic() - started
            self.telemetry.busy_s += elapsed / self.concurrency
            self.telemetry.update_pressure()
            self.batcher.record_batch(len(batch), elapsed)
            self.metrics.batch_size.labels(self.site).observe(len(batch))
            self.metrics.inference_seconds.labels(self.site).observe(elapsed)
            await self.answered.put(done)
        finally:
            slots.release()
