"""Publishing frames and counting results, for ``bench.roofline``.

* ``Ids`` stamps a run-unique number into each published copy of a pooled message;
* ``Results`` counts the results as they come (shed apart) and, when asked, the
  latency of each answered frame from its publish;
* ``Guard`` pauses an open-loop publisher while too many frames have no result;
* ``publish`` sends frames evenly at a rate (or as fast as it can), bounded in count
  and time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.roofline_workloads import ID_PREFIX, PLACEHOLDER

__all__ = ["Guard", "Ids", "Results", "publish"]

_SHED: Final = b"\xa6reason\xa4shed"  # msgpack of the key "reason" and the value "shed"


class Ids:
    """Frame numbers, unique in the run (the worker refuses a repeated id)."""

    def __init__(self) -> None:
        self.next = 0

    def stamp(self, data: bytes) -> tuple[int, bytes]:
        at = data.find(PLACEHOLDER, 0, 256)
        if at < 0:
            raise ValueError("no frame id placeholder in the first 256 bytes of the message")
        number = self.next
        self.next += 1
        view = memoryview(data)
        return number, b"".join((view[:at], b"%016d" % number, view[at + len(PLACEHOLDER) :]))


@dataclass
class Results:
    """Counts results (shed apart); with ``sent_at``, the latency of each answered one."""

    count: int = 0
    answered: int = 0
    shed: int = 0
    last_answered_at: float = 0.0
    sent_at: dict[int, float] | None = None
    latencies: list[float] = field(default_factory=list)
    wake_at: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_msg(self, msg: Msg) -> None:
        now = time.perf_counter()
        data = msg.data
        self.count += 1
        shed = _SHED in data
        if shed:
            self.shed += 1
        else:
            self.answered += 1
            self.last_answered_at = now
        if self.sent_at is not None:
            at = data.find(ID_PREFIX, 0, 128) + len(ID_PREFIX)
            sent = self.sent_at.pop(int(data[at : at + 16]), None)
            if sent is not None and not shed:
                self.latencies.append(now - sent)
        if self.count >= self.wake_at:
            self.event.set()

    async def wait_for(self, count: int, quiet_s: float) -> bool:
        """Until ``count`` results in all; False once none came for ``quiet_s``."""
        while self.count < count:
            self.wake_at = count
            self.event.clear()
            seen = self.count
            try:
                await asyncio.wait_for(self.event.wait(), quiet_s)
            except TimeoutError:
                if self.count == seen:
                    return False
        return True


@dataclass
class Guard:
    """Pauses an open-loop publisher while ``limit`` frames have no result yet."""

    results: Results
    base: int  # results.count when publishing started
    limit: int
    quiet_s: float
    pauses: int = 0
    paused_s: float = 0.0
    stalled: bool = False

    async def wait(self, sent: int) -> bool:
        """False if the worker stalled (no result for quiet_s)."""
        if sent - (self.results.count - self.base) < self.limit:
            return True
        self.pauses += 1
        started = time.perf_counter()
        resume_at = self.base + sent - self.limit + max(1, self.limit // 8)
        ok = await self.results.wait_for(resume_at, self.quiet_s)
        self.paused_s += time.perf_counter() - started
        self.stalled = not ok
        return ok


async def publish(
    nc: Client,
    pool: Sequence[tuple[str, bytes]],
    ids: Ids,
    count: int,
    rate: float,
    time_limit_s: float,
    sent_at: dict[int, float] | None = None,
    guard: Guard | None = None,
) -> tuple[int, float, float]:
    """Publish up to ``count`` frames evenly at ``rate``/s (inf: as fast as possible),
    for at most ``time_limit_s``, pausing while ``guard`` says so; (frames sent, start,
    end of publishing)."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    sent = 0
    while sent < count:
        now = time.perf_counter()
        if now >= deadline:
            break
        due = count if math.isinf(rate) else min(count, 1 + int((now - t0) * rate))
        for _ in range(min(due - sent, 32)):
            if guard is not None and not await guard.wait(sent):
                break
            subject, data = pool[sent % len(pool)]
            number, message = ids.stamp(data)
            if sent_at is not None:
                sent_at[number] = time.perf_counter()
            await nc.publish(subject, message)
            sent += 1
        if sent >= count or (guard is not None and guard.stalled):
            break
        if sent < due:
            await asyncio.sleep(0)  # let results in between bursts
        else:
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
    await nc.flush()
    return sent, t0, time.perf_counter()
