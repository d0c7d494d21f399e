"""The edge worker's link to the cloud: its answers, and whether the cloud is reachable.

Answers are stored by the cloud in the ``REPLIES`` stream and read here through a
durable consumer of this worker's own (``edge-<site>-<worker>``), across the leaf link
when the cloud is another JetStream domain. The answers therefore wait out a WAN
outage or an edge restart.

Over a WAN every pull request costs a round trip, so this keeps two pull requests
waiting at the server at all times (as the newer NATS clients' ``consume`` does): an
answer is pushed down the link the moment it is stored. Each request asks the server
for idle heartbeats; heartbeats or answers prove the link is up, and their absence for
three heartbeat intervals proves it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from pipeline.config import EdgeSettings
from schemas import subjects

__all__ = ["CloudLink"]

log = logging.getLogger(__name__)

_BATCH = 64  # answers one pull request may carry
_EXPIRES_S = 5.0  # a pull request's life at the server
_HEARTBEAT_S = 0.5  # idle heartbeat the server sends while a request waits
_DOWN_AFTER_S = 3 * _HEARTBEAT_S
_RETRY_S = 0.5


class CloudLink:
    """Runs ``on_answer`` for each stored cloud answer; ``up`` says if the cloud is reachable.

    ``on_answer`` must ack or term the message it is given.
    """

    def __init__(
        self,
        nc: Client,
        settings: EdgeSettings,
        on_answer: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self._nc = nc
        self._domain = settings.cloud_domain or None
        self._js = nc.jetstream(domain=self._domain)
        self._site = settings.site
        self._worker = settings.worker_id
        self._consumer = subjects.reply_consumer(settings.site, settings.worker_id)
        api_prefix = f"$JS.{self._domain}.API" if self._domain else "$JS.API"
        self._next_subject = (
            f"{api_prefix}.CONSUMER.MSG.NEXT.{subjects.REPLIES_STREAM}.{self._consumer}"
        )
        self._on_answer = on_answer
        self._up = True  # optimistic until the server says otherwise
        self.changed_at = time.monotonic()

    @property
    def up(self) -> bool:
        return self._up

    def _set(self, up: bool) -> None:
        if up != self._up:
            log.warning("link to the cloud is %s", "up" if up else "DOWN")
            self._up = up
            self.changed_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        """Receive answers until ``stop`` is set."""
        while not stop.is_set():
            try:
                # Not past a stop: with the cloud unreachable the request would hold a
                # drain for its whole 5 s timeout.
                if not await _unless_stopped(stop, self._ensure_consumer()):
                    return
            except Exception as exc:
                # No JetStream of the cloud's domain answers (the link is down), or its
                # streams are not there yet (the cloud has never started).
                self._set(False)
                log.debug("cloud unreachable: %r", exc)
                await _sleep_unless(stop, _RETRY_S)
                continue
            await self._consume(stop)

    async def _ensure_consumer(self) -> None:
        await self._js.add_consumer(
            subjects.REPLIES_STREAM,
            api.ConsumerConfig(
                durable_name=self._consumer,
                filter_subject=subjects.replies(self._site, self._worker),
                ack_policy=api.AckPolicy.EXPLICIT,
                # Short: an answer pushed into a pull request that died with the link
                # comes back this soon.
                ack_wait=5.0,
                max_deliver=-1,
            ),
        )

    async def _consume(self, stop: asyncio.Event) -> None:
        """Pull with two requests outstanding until the link fails or ``stop`` is set."""
        inbox = self._nc.new_inbox()
        sub = await self._nc.subscribe(inbox)
        # Answers still owed by each outstanding request, oldest first: the server
        # fills and expires requests in the order they arrived.
        owed: deque[int] = deque()
        request = orjson.dumps(
            {
                "batch": _BATCH,
                "expires": int(_EXPIRES_S * 1e9),
                "idle_heartbeat": int(_HEARTBEAT_S * 1e9),
            }
        )
        try:
            while not stop.is_set():
                while len(owed) < 2:
                    await self._nc.publish(self._next_subject, request, reply=inbox)
                    owed.append(_BATCH)
                try:
                    msg = await sub.next_msg(timeout=_DOWN_AFTER_S)
                except TimeoutError:  # nats.errors.TimeoutError is one too
                    self._set(False)  # not even a heartbeat: the link is down
                    return
                status = msg.headers.get("Status") if msg.headers else None
                if status is None:
                    self._set(True)
                    owed[0] -= 1
                    if owed[0] == 0:
                        owed.popleft()
                    await self._on_answer(msg)
                elif status == "100":
                    self._set(True)  # idle heartbeat
                elif status == "408":
                    owed.popleft()  # the oldest request expired; send another
                    self._set(True)
                else:
                    # 409 (consumer deleted, leader changed, ...) or 404: start over.
                    log.info("answers pull ended: %s %s", status, msg.headers)
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work`` until it ends (True; what it raised is raised) or ``stop`` is set
    first (False; ``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled: neither may outlive this call
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
