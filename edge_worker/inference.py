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
from dataclasses import dataclass

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


class BatchRunner:
    """Runs every batch of ``batcher`` through the current model into ``answered``."""

    def __init__(
        self,
        batcher: AdaptiveBatcher[Request],
        executor: Executor,
        model: Callable[[], OnnxModel],
        telemetry: Telemetry,
        metrics: EdgeMetrics,
        site: str,
        *,
        on_failure: Callable[[list[Request], HybridfleetError], Awaitable[None]],
        inject_latency_s: float = 0.0,
    ) -> None:
        self._batcher = batcher
        self._executor = executor
        self._model = model
        self._telemetry = telemetry
        self._metrics = metrics
        self._site = site
        self._on_failure = on_failure
        self._inject_latency_s = inject_latency_s
        self.answered: asyncio.Queue[AnsweredBatch | None] = asyncio.Queue(1)

    async def run(self) -> None:
        """Until the batcher is closed and empty; then put None."""
        loop = asyncio.get_running_loop()
        while batch := await self._batcher.next_batch():
            self._metrics.queue_depth.labels(self._site).set(len(self._batcher))
            started = time.monotonic()
            model = self._model()  # one model per batch, whatever a swap does meanwhile
            try:
                features, probabilities = await loop.run_in_executor(
                    self._executor, infer, model, batch
                )
            except HybridfleetError as exc:
                await self._on_failure(batch, exc)
                continue
            if self._inject_latency_s:
                await asyncio.sleep(self._inject_latency_s)
            elapsed = time.monotonic() - started
            self._telemetry.busy_s += elapsed
            self._telemetry.update_pressure()
            self._batcher.record_batch(len(batch), elapsed)
            self._metrics.batch_size.labels(self._site).observe(len(batch))
            self._metrics.inference_seconds.labels(self._site).observe(elapsed)
            await self.answered.put(AnsweredBatch(batch, features, probabilities, model))
        await self.answered.put(None)
