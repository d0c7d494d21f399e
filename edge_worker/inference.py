"""Where batches meet the model: the batch loop, off the event loop.

Batches leave the ``AdaptiveBatcher`` and run in a thread pool (features, then the
model); each batch runs on the one model it started with, whatever a swap does
meanwhile. An answered batch goes to the decide loop through a queue of one, so at
most two batches are in hand: one in the model, one being decided.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import KW_ONLY, dataclass, field

import numpy as np

from edge_worker.batcher import AdaptiveBatcher
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.telemetry import Telemetry
from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel
from schemas.errors import HybridfleetError

__all__ = ["AnsweredBatch", "BatchRunner", "infer"]


@dataclass(frozen=True, slots=True)
class AnsweredBatch:
    """A batch the model answered: per region its features and probabilities."""

    requests: list[Request]
    features: np.ndarray
    probabilities: np.ndarray
    model: OnnxModel


def infer(model: OnnxModel, requests: list[Request]) -> tuple[np.ndarray, np.ndarray]:
    """Runs in the thread pool: pixels of every region -> features, probabilities."""
    features = pixels_to_features([crop for r in requests for crop in r.frame.crops()])
    return features, model.predict_proba(features)


@dataclass(eq=False)
class BatchRunner:
    """Runs every batch of ``batcher`` through the current model into ``answered``."""

    batcher: AdaptiveBatcher[Request]
    executor: Executor
    model: Callable[[], OnnxModel]
    telemetry: Telemetry
    metrics: EdgeMetrics
    site: str
    _: KW_ONLY
    on_failure: Callable[[list[Request], HybridfleetError], Awaitable[None]]
    inject_latency_s: float = 0.0
    answered: asyncio.Queue[AnsweredBatch | None] = field(
        default_factory=lambda: asyncio.Queue(1), init=False
    )

    async def run(self) -> None:
        """Until the batcher is closed and empty; then put None."""
        loop = asyncio.get_running_loop()
        while batch := await self.batcher.next_batch():
            self.metrics.queue_depth.labels(self.site).set(len(self.batcher))
            started = time.monotonic()
            model = self.model()  # one model per batch, whatever a swap does meanwhile
            try:
                features, probabilities = await loop.run_in_executor(
                    self.executor, infer, model, batch
                )
            except HybridfleetError as exc:
                await self.on_failure(batch, exc)
                continue
            if self.inject_latency_s:
                await asyncio.sleep(self.inject_latency_s)
            elapsed = time.monotonic() - started
            self.telemetry.busy_s += elapsed
            self.telemetry.update_pressure()
            self.batcher.record_batch(len(batch), elapsed)
            self.metrics.batch_size.labels(self.site).observe(len(batch))
            self.metrics.inference_seconds.labels(self.site).observe(elapsed)
            await self.answered.put(AnsweredBatch(batch, features, probabilities, model))
        await self.answered.put(None)
