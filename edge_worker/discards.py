"""Frames the site's stream discarded unread, counted exactly once across the site.

``FRAMES_<site>`` keeps the newest frames (discard old, edge_worker/framepull.py). Its
consumer ``edge-workers``, shared by the site's edge workers, delivers frames in stream
order, each at most once (no acks, so no redeliveries), from the start sequence kept
in its config. So every stream sequence from the start on was either delivered once or
discarded before any worker pulled it, whatever discarded it (the bytes, count, age or
per-camera limit), and after the delivery of stream sequence ``s`` as the consumer's
``c``-th, the frames discarded unread so far number ``s - c - (start - 1)``. That count
only grows, and is read from each pulled frame's metadata: no API call.

Each worker of a site sees the same count grow, so none may simply add what it saw:
two workers would count the same discards. The site's mark, how many are counted, is
kept in KV ``HF_SITE`` under ``<site>.frames-discarded`` with the consumer's creation
time (a consumer made again, as after a restart of the site's server, which loses a
memory stream, starts a new count). A worker that saw more adds the difference to its
own ``hybridfleet_edge_dropped_frames_total{place="site_stream"}`` only if its
compare-and-set of the mark succeeds. Summed over the site's workers, each discarded
frame is counted once, at most ``interval_s`` (and one pull) after it was seen; what a
worker saw and did not claim before it died is claimed by the next worker that sees it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from edge_worker.metrics import EdgeMetrics

__all__ = ["DiscardLedger", "Epoch"]

log = logging.getLogger(__name__)

PLACE = "site_stream"
_LOG_EVERY_S = 10.0
_TRIES = 5


@dataclass(frozen=True, slots=True)
class Epoch:
    """One incarnation of the site's consumer: made at ``created_us`` (Unix
    microseconds), delivering from stream sequence ``start``."""

    created_us: int
    start: int

    @classmethod
    def of(cls, info: api.ConsumerInfo) -> Epoch:
        created = info.created
        start = info.config.opt_start_seq or 1
        return cls(round(created.timestamp() * 1e6) if created else 0, start)


class DiscardLedger:
    """What one worker saw discarded, and its claims on the site's mark."""

    def __init__(
        self,
        site: str,
        metrics: EdgeMetrics,
        *,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._site = site
        self._metrics = metrics
        self._key = f"{site}.frames-discarded"
        self._interval_s = interval_s
        self._clock = clock
        self._kv: KeyValue | None = None
        self._epoch: Epoch | None = None
        self._seen = 0  # discarded so far in this epoch, as far as this worker knows
        self._marked = 0  # the site's mark the last time this worker read it
        self._last_consumer_seq = 0
        self._stale = False
        self._tried_at = -math.inf
        self._unlogged = 0
        self._logged_at = -math.inf
        self.counted = 0  # what this worker claimed, all epochs

    @property
    def stale(self) -> bool:
        """True when the consumer was made again since ``bind``: read its info again."""
        return self._stale

    @property
    def seen(self) -> int:
        return self._seen

    def bind(self, kv: KeyValue | None, info: api.ConsumerInfo) -> None:
        """Count against the consumer ``info`` describes (a new epoch starts from 0)."""
        self._kv = kv
        epoch = Epoch.of(info)
        if epoch != self._epoch:
            self._epoch = epoch
            self._seen = self._marked = 0
            self._last_consumer_seq = 0
        self._stale = False

    def observe(self, stream_seq: int, consumer_seq: int) -> None:
        """A frame was delivered: stream sequence ``stream_seq``, ``consumer_seq``-th."""
        if self._epoch is None or self._stale:
            return
        if consumer_seq <= self._last_consumer_seq:
            # Each delivery has a consumer sequence of its own, growing: the consumer
            # was made again behind this worker's back.
            self._stale = True
            return
        self._last_consumer_seq = consumer_seq
        discarded = stream_seq - consumer_seq - (self._epoch.start - 1)
        if discarded > self._seen:
            self._seen = discarded

    async def claim(self, *, force: bool = False) -> int:
        """Count what this worker saw beyond the site's mark; how many it counted.

        At most once per ``interval_s`` unless ``force``. Never raises: a mark that
        cannot be read or written now is claimed later, by this worker or another.
        """
        kv, epoch = self._kv, self._epoch
        if kv is None or epoch is None or self._stale or self._seen <= self._marked:
            return 0
        now = self._clock()
        if not force and now - self._tried_at < self._interval_s:
            return 0
        self._tried_at = now
        try:
            for _ in range(_TRIES):
                claimed = await self._try(kv, epoch)
                if claimed is not None:
                    return claimed
        except Exception as exc:  # the site's server is unreachable or restarting
            log.debug("cannot claim discarded frames of site %s now: %s", self._site, exc)
        return 0

    async def _try(self, kv: KeyValue, epoch: Epoch) -> int | None:
        """One compare-and-set of the mark; None when another worker moved it first."""
        revision: int | None = None
        mark = 0
        try:
            entry = await kv.get(self._key)
        except KeyNotFoundError:
            entry = None
        if entry is not None:
            revision = entry.revision
            created, value = _parse(entry.value)
            if created > epoch.created_us:  # a newer consumer exists: this one is gone
                self._stale = True
                return 0
            if created == epoch.created_us:
                mark = value
        seen = self._seen
        if seen <= mark:
            self._marked = mark
            return 0
        record = f"{epoch.created_us} {seen}".encode()
        try:
            if revision is None:
                await kv.create(self._key, record)
            else:
                await kv.update(self._key, record, last=revision)
        except KeyWrongLastSequenceError:
            return None
        self._marked = seen
        self._count(seen - mark)
        return seen - mark

    def _count(self, n: int) -> None:
        self.counted += n
        self._metrics.dropped_frames.labels(self._site, PLACE).inc(n)
        self._unlogged += n
        now = self._clock()
        if now - self._logged_at >= _LOG_EVERY_S:
            log.warning(
                "site %s: %d frames discarded unread by its stream since the last report "
                "(%d in all): the site's edge workers take frames slower than the cameras "
                'send them; counted in hybridfleet_edge_dropped_frames_total{place="%s"}',
                self._site,
                self._unlogged,
                self._seen,
                PLACE,
            )
            self._logged_at = now
            self._unlogged = 0


def _parse(value: bytes | None) -> tuple[int, int]:
    """``(created_us, discarded)`` of a mark; ``(0, 0)`` (the oldest) if unreadable."""
    try:
        created, discarded = (value or b"").split()
        return int(created), int(discarded)
    except ValueError:
        return 0, 0
