"""Frames pulled from the site's stream ``FRAMES_<site>``: never more than the worker asked for.

With ``edge.intake = "stream"`` the cameras' frames land in the site's bounded memory
stream (pipeline/messaging/natsio.py, ``ensure_frames_stream``) and the site's edge
workers pull them through one shared durable consumer: queue-group semantics, each
frame to one worker. The server sends a worker only what it asked for,
one request at a time, each of at most ``edge.intake_pending_frames`` frames and
``edge.intake_pending_bytes`` bytes, so nothing waits in the server's buffer for the
worker's connection, where at 64 MiB the server would cut the worker off and lose the
backlog uncounted. When the site reads slower than its cameras send, the backlog waits
in the stream, which keeps the newest and discards the oldest; those are counted once
per site (edge_worker/discards.py).

A request asks for the room left in the worker's queue (``edge.queue_capacity`` less
what is queued), so a worker with room takes more of the site's frames than a busy
one; but never for less than a batch (``edge.max_batch_size``): a worker whose queue is
full still reads, and its queue sheds by priority with a ``shed`` result (never a
priority-1 frame while it can hold it), where the stream would discard the oldest,
whatever their priority, with no result. So the stream discards only what the worker
cannot even read: a reader slower than the cameras (an event loop at its limit).

One pull request is open at a time, and its frames are handed to the worker as they
arrive (no waiting for the batch to fill), so a frame is not delayed by pulling. A
request lives ``_EXPIRES_S``: a draining worker stops asking and waits at most that long
for its last request to end, handling every frame it brings. A request whose end is
never heard of (the connection dropped) is given up ``_GRACE_S`` after it expired; one
answered with "no responders" or "consumer deleted", or cut by a reconnect (the site's
server restarted and lost its memory stream, or an operator removed it), makes the
worker declare the stream and its consumer again.

The frame buffer is not a queue that must deliver: the consumer does not wait for acks
and never redelivers, so frames on their way to a worker when its connection drops, and
frames a worker pulled and could not answer (it crashed), are lost, as with core NATS.
A frame's worth is its deadline; redelivering it after a crash would answer it late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from edge_worker.discards import DiscardLedger
from edge_worker.metrics import EdgeMetrics
from pipeline.config import EdgeSettings
from pipeline.messaging.natsio import ensure_frames_stream
from schemas import subjects
from schemas.limits import NATS_MAX_PAYLOAD

__all__ = ["FramePuller"]

log = logging.getLogger(__name__)

_EXPIRES_S = 0.5  # a pull request's life; also how long a drain waits for the last one
_GRACE_S = 1.0  # no word of a request this long after it expired: it is gone
_TICK_S = 0.1  # how often a worker waiting for a request looks at its connection
_RETRY_S = (0.05, 2.0)  # the first and longest waits before declaring the stream again
_ACK_PREFIX = "$JS.ACK."
_WARN_EVERY_S = 10.0


class FramePuller:
    """Pulls one worker's share of ``FRAMES_<site>``; ``run`` is its task."""

    def __init__(
        self,
        cfg: EdgeSettings,
        *,
        room: Callable[[], int],
        handle: Callable[[Msg], Awaitable[None]],
        metrics: EdgeMetrics,
    ) -> None:
        self._cfg = cfg
        self._room = room
        self._handle = handle
        self._stream = subjects.frames_stream(cfg.site)
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{subjects.FRAMES_CONSUMER}"
        self.ledger = DiscardLedger(cfg.site, metrics)
        self._backlog = metrics.intake_backlog.labels(cfg.site)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        # The open request: its number, frames still to come, whether it ended and how.
        self._request = 0
        self._remaining = 0
        self._got = 0
        self._ended = asyncio.Event()
        self._end: tuple[str, str] = ("", "")
        self._progress = 0  # frames and statuses received, all requests
        self._alone = False  # the next request asks for one frame of any size
        self._broken = False  # the stream or its consumer must be declared again
        self._stopping = False
        self._finished = asyncio.Event()
        self._warned_at = -math.inf

    async def open(self, nc: Client, js: JetStreamContext) -> None:
        """Declare the stream and its consumer, and listen for what is pulled."""
        self._nc, self._js = nc, js
        info = await ensure_frames_stream(js, self._cfg.site, self._cfg)
        # The site's mark of counted discards lives in the bucket edge_worker/tags.py made.
        self.ledger.bind(await js.key_value(subjects.SITE_BUCKET), info)
        self._inbox = nc.new_inbox()
        largest = max(self._cfg.intake_pending_bytes, NATS_MAX_PAYLOAD)
        # Beyond one request's worth: the client must never drop a pulled frame (the
        # consumer counts it delivered, so it would vanish uncounted).
        self._sub = await nc.subscribe(
            f"{self._inbox}.*",
            cb=self._on_message,
            pending_msgs_limit=2 * self._cfg.intake_pending_frames + 64,
            pending_bytes_limit=2 * largest + (1 << 20),
        )

    @property
    def source(self) -> str:
        return f"stream {self._stream} (consumer {subjects.FRAMES_CONSUMER})"

    async def run(self) -> None:
        """Pull until ``stop``: one request at a time, sized by the room left."""
        retry = _RETRY_S[0]
        try:
            while not self._stopping:
                if self._broken or self.ledger.stale:
                    if await self._rebind():
                        retry = _RETRY_S[0]
                    else:
                        await asyncio.sleep(retry)
                        retry = min(2 * retry, _RETRY_S[1])
                    continue
                want = max(self._room(), self._cfg.max_batch_size)
                await self._pull(1 if self._alone else min(want, self._cfg.intake_pending_frames))
                await self.ledger.claim()
        finally:
            self._finished.set()

    async def stop(self) -> None:
        """Stop asking for frames; return once the last request ended and its frames were
        handed over, and what was seen discarded is claimed."""
        self._stopping = True
        # The last request ends within _EXPIRES_S, or is given up _GRACE_S after its last
        # frame; its frames are handed over one by one, which may take a while. The
        # bound only keeps a loop that never started from holding the drain forever.
        bound = _EXPIRES_S + _GRACE_S + max(1.0, self._cfg.drain_timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), bound)
        await self.ledger.claim(force=True)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    # ------------------------------------------------------------------ pulling

    async def _pull(self, batch: int) -> None:
        """Ask for ``batch`` frames and wait until the request ends (every frame it
        brought handed over), expires, or is given up as lost."""
        assert self._nc is not None
        self._request += 1
        self._remaining, self._got = batch, 0
        self._end = ("", "")
        self._ended.clear()
        request: dict[str, int] = {"batch": batch, "expires": int(_EXPIRES_S * 1e9)}
        if not self._alone:
            request["max_bytes"] = self._cfg.intake_pending_bytes
        try:
            await self._nc.publish(
                self._next, json.dumps(request).encode(), reply=f"{self._inbox}.{self._request}"
            )
        except Exception as exc:  # closed or reconnecting with a full buffer
            self._warn(f"cannot ask for frames: {exc}")
            await asyncio.sleep(_RETRY_S[0])
            return
        reconnects, progress = self._nc.stats["reconnects"], self._progress
        given_up_at = time.monotonic() + _EXPIRES_S + _GRACE_S
        while not self._ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), _TICK_S)
            if self._ended.is_set():
                break
            if self._nc.stats["reconnects"] != reconnects:
                # The request died with the connection, and the server may be a new one
                # that lost the memory stream: declare it again now, not after a timeout.
                self._broken = True
                return
            if self._progress != progress:
                progress = self._progress
                given_up_at = time.monotonic() + _EXPIRES_S + _GRACE_S
            elif time.monotonic() > given_up_at:
                return  # no word of it
        self._after(*self._end)

    def _after(self, status: str, description: str) -> None:
        """What the way a request ended says about the next one."""
        if self._alone and self._got:
            self._alone = False
        if status in ("", "404", "408"):  # filled, nothing more, or expired: all normal
            return
        lowered = description.lower()
        if status == "409" and "maxbytes" in lowered:
            # A frame larger than intake_pending_bytes is next: pull it alone.
            self._alone = self._got == 0
        elif status == "503" or (status == "409" and "deleted" in lowered):
            self._broken = True  # no stream or consumer any more
            self._warn(f"{self._stream} answered {status} {description.strip()}: declaring it")
        else:
            self._warn(f"a pull from {self._stream} ended with {status} {description.strip()}")

    async def _on_message(self, msg: Msg) -> None:
        """A pulled frame (handed over, in order) or the end of a request."""
        if msg.reply.startswith(_ACK_PREFIX):
            self._progress += 1
            try:
                metadata = msg.metadata
                self.ledger.observe(metadata.sequence.stream, metadata.sequence.consumer)
                self._backlog.set(metadata.num_pending)
            except Exception as exc:  # not JetStream's metadata: handled all the same
                log.debug("frame without JetStream metadata (%s): %s", msg.reply, exc)
            self._remaining -= 1
            self._got += 1
            try:
                await self._handle(msg)
            finally:
                if self._remaining <= 0:
                    self._ended.set()
            return
        if msg.subject != f"{self._inbox}.{self._request}":
            return  # the end of a request already given up
        self._progress += 1
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == "100":  # an idle heartbeat
            return
        self._end = (status, headers.get("Description", ""))
        self._ended.set()

    async def _rebind(self) -> bool:
        """Declare the stream and its consumer again (or read the consumer's info); True
        if done."""
        assert self._js is not None
        try:
            if self._broken:
                info = await ensure_frames_stream(self._js, self._cfg.site, self._cfg)
            else:
                try:
                    info = await self._js.consumer_info(self._stream, subjects.FRAMES_CONSUMER)
                except NotFoundError:
                    self._broken = True
                    return False
            self.ledger.bind(await self._js.key_value(subjects.SITE_BUCKET), info)
        except Exception as exc:  # the server is not back yet
            self._warn(f"cannot declare {self._stream} yet: {exc}")
            return False
        if self._broken:
            log.info("edge worker %s pulls from %s again", self._cfg.worker_id, self._stream)
        self._broken = False
        return True

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("edge worker %s: %s", self._cfg.worker_id, what)
