"""Poisson load on one batcher, run as ``EdgeWorker`` runs it with one inference thread.

Everything runs in this process: an asyncio loop offers frames to a batcher, one
batch loop awaits ``next_batch()``, runs ``pixels_to_features`` and the model in a
one-thread ``ThreadPoolExecutor`` (one batch in the model at a time), and feeds
``record_batch``. ``measure_slice`` measures one fresh batcher over a warm-up and a
window, ``summarise`` turns slices into a point's figures, ``measure_capacity`` finds
the loads' 100%. The harness of ``bench.batching``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from bench.batchers import FIXED_MAX_SAFETY_S, MAX_BATCH, QUEUE_CAPACITY, Batcher, FixedMax
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.inference.digits import pixels_to_features
from pipeline.inference.model import OnnxModel

__all__ = [
    "Infer",
    "Slice",
    "make_crops",
    "measure_capacity",
    "measure_raw_capacity",
    "measure_slice",
    "summarise",
]

TICK_S: Final = 0.001  # the arrival generator's shortest sleep
# Frames that arrived in the window but are not done this long after it are unfinished.
MAX_TAIL_S: Final = 3.0
PRIORITY: Final = 2  # all frames alike: the adaptive batcher's shedding rule then rejects too
FRAME_DEADLINE_S: Final = 3600.0  # far out: only the policy's own target bounds its waits


@dataclass(slots=True, eq=False)
class _Job:
    arrival: float  # scheduled Poisson arrival, monotonic seconds
    crop: np.ndarray
    done: float = math.nan
    shed: bool = False


@dataclass(slots=True)
class _Batches:
    starts: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class Infer:
    """The worker's ``_infer`` on 32x32 crops: features, then the model (in the pool)."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model

    def __call__(self, jobs: Sequence[_Job]) -> np.ndarray:
        return self.model.predict_proba(pixels_to_features([j.crop for j in jobs]))


async def _serve(
    batcher: Batcher[_Job], executor: ThreadPoolExecutor, infer: Infer, batches: _Batches
) -> None:
    """The batch loop with ``inference_threads = 1``: one batch in the model at a time."""
    loop = asyncio.get_running_loop()
    while batch := await batcher.next_batch():
        started = time.monotonic()
        await loop.run_in_executor(executor, infer, batch)
        finished = time.monotonic()
        batcher.record_batch(len(batch), finished - started)
        batches.starts.append(started)
        batches.sizes.append(len(batch))
        batches.seconds.append(finished - started)
        for job in batch:
            job.done = finished


async def _offer_poisson(
    batcher: Batcher[_Job],
    rate: float,
    crops: Sequence[np.ndarray],
    rng: np.random.Generator,
    window: tuple[float, float],
    jobs: list[_Job],
) -> None:
    """Poisson arrivals at ``rate``/s until every frame of ``window`` is done or shed.

    Each arrival is offered at its scheduled time, or as soon after as the loop gets
    to it (frames due within the same ``TICK_S`` are offered together, as frames read
    from one socket buffer would be); its latency counts from the scheduled time, so
    neither the tick nor loop lag is hidden.
    """
    start, end = window
    t = time.monotonic()
    in_window: list[_Job] = []
    settled = 0  # in_window[:settled] are done or shed (every batcher here is FIFO)
    while True:
        now = time.monotonic()
        if now >= end:
            while settled < len(in_window) and (
                in_window[settled].shed or not math.isnan(in_window[settled].done)
            ):
                settled += 1
            if settled == len(in_window) or now >= end + MAX_TAIL_S:
                return
        while t <= now:
            job = _Job(t, crops[len(jobs) % len(crops)])
            jobs.append(job)
            if start <= t < end:
                in_window.append(job)
            admission = batcher.offer(job, priority=PRIORITY, due=t + FRAME_DEADLINE_S)
            if admission.shed is not None:
                admission.shed.shed = True
            t += float(rng.exponential(1.0 / rate))
        # Never a shorter sleep than a tick: uvloop's timers have 1 ms resolution, and a
        # loop that spins holds the GIL the model thread needs between its C calls.
        await asyncio.sleep(max(TICK_S, t - time.monotonic()))


@dataclass(slots=True)
class Slice:
    """What one fresh batcher did in one measured window."""

    window_s: float
    latencies: np.ndarray  # seconds, frames of the window that completed
    frames: int  # arrived in the window
    shed: int
    unfinished: int
    completed_in_window: int  # completions inside the window, whenever they arrived
    batch_sizes: list[int]  # batches started inside the window
    busy_s: float  # model time of those batches


async def measure_slice(
    make: Callable[[], Batcher[Any]],
    infer: Infer,
    crops: Sequence[np.ndarray],
    rate: float,
    *,
    warmup_s: float,
    window_s: float,
    seed: int,
) -> Slice:
    """Offer Poisson load at ``rate`` to a fresh batcher: warm-up, then a window."""
    batcher = make()
    batches = _Batches()
    jobs: list[_Job] = []
    rng = np.random.default_rng(seed)
    with ThreadPoolExecutor(1, thread_name_prefix="bench-onnx") as executor:
        server = asyncio.create_task(_serve(batcher, executor, infer, batches))
        start = time.monotonic() + warmup_s
        end = start + window_s
        try:
            await _offer_poisson(batcher, rate, crops, rng, (start, end), jobs)
        finally:
            batcher.close()
            await server
    window = [j for j in jobs if start <= j.arrival < end]
    latencies = np.array([j.done - j.arrival for j in window if not math.isnan(j.done)])
    shed = sum(j.shed for j in window)
    started = list(zip(batches.starts, batches.sizes, batches.seconds, strict=True))
    return Slice(
        window_s=window_s,
        latencies=latencies,
        frames=len(window),
        shed=shed,
        unfinished=len(window) - shed - len(latencies),
        completed_in_window=sum(1 for j in jobs if not j.shed and start <= j.done < end),
        batch_sizes=[n for at, n, _ in started if start <= at < end],
        busy_s=sum(sec for at, _, sec in started if start <= at < end),
    )


def summarise(slices: Sequence[Slice], target_s: float) -> dict[str, Any]:
    """The figures of one (load, policy) point over its slices."""
    seconds = sum(s.window_s for s in slices)
    latencies = np.concatenate([s.latencies for s in slices])
    sizes = [n for s in slices for n in s.batch_sizes]
    frames = sum(s.frames for s in slices)
    shed = sum(s.shed for s in slices)
    unfinished = sum(s.unfinished for s in slices)
    late = int((latencies > target_s).sum())

    def ms(q: float) -> float:
        return float(np.quantile(latencies, q) * 1000) if len(latencies) else math.nan

    return {
        "offered_per_s": frames / seconds,
        "throughput_per_s": sum(s.completed_in_window for s in slices) / seconds,
        "p50_ms": ms(0.50),
        "p95_ms": ms(0.95),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
        "mean_batch": float(np.mean(sizes)) if sizes else math.nan,
        "batches": len(sizes),
        "model_busy": sum(s.busy_s for s in slices) / seconds,
        "frames": frames,
        "completed": len(latencies),
        "shed": shed,
        "unfinished": unfinished,
        "missed": late + shed + unfinished,
        "missed_share": (late + shed + unfinished) / frames if frames else math.nan,
        "measured_s": seconds,
    }


def measure_raw_capacity(infer: Infer, crops: Sequence[np.ndarray], seconds: float) -> float:
    """Frames/s of back-to-back full batches through the executor, no batcher, no loop."""
    batch = [_Job(0.0, crops[i % len(crops)]) for i in range(MAX_BATCH)]
    with ThreadPoolExecutor(1, thread_name_prefix="bench-onnx") as executor:
        for _ in range(5):
            executor.submit(infer, batch).result()  # first calls allocate
        count = 0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            executor.submit(infer, batch).result()
            count += 1
    return count * MAX_BATCH / elapsed


async def measure_capacity(infer: Infer, crops: Sequence[np.ndarray], seconds: float) -> float:
    """Frames/s through this harness at the max batch size: the loads' 100%.

    A batcher that only hands out full batches is kept at least two batches deep, so
    the model never waits for frames; unlike the raw figure, this includes what the
    event loop spends on offering frames and on the batch loop.
    """
    batcher: FixedMax[_Job] = FixedMax(MAX_BATCH, QUEUE_CAPACITY, FIXED_MAX_SAFETY_S)
    batches = _Batches()
    with ThreadPoolExecutor(1, thread_name_prefix="bench-onnx") as executor:
        server = asyncio.create_task(_serve(batcher, executor, infer, batches))
        start = time.monotonic() + 0.3  # warm-up
        end = start + seconds
        n = 0
        try:
            while time.monotonic() < end:
                while len(batcher) < 2 * MAX_BATCH:
                    batcher.offer(_Job(time.monotonic(), crops[n % len(crops)]), priority=2, due=0)
                    n += 1
                await asyncio.sleep(TICK_S)
        finally:
            batcher.close()
            await server
    done = [
        size
        for at, size, sec in zip(batches.starts, batches.sizes, batches.seconds, strict=True)
        if start <= at + sec < end
    ]
    return sum(done) / seconds


def make_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """32x32 uint8 crops of held-out digits, as the camera simulator draws them."""
    camera = CameraSimulator(CameraOptions(cameras=1, width=64, height=48, seed=seed))
    return [camera.make_frame("cam1", i, 0.0)[0].crops()[0].copy() for i in range(count)]
