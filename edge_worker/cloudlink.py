"""The edge worker's link to the cloud: its answers, and whether the cloud is reachable.

Answers are stored by the cloud in the ``REPLIES`` stream and read here through a
durable pull consumer of this worker's own (``edge-<site>-<worker>``), across the
leaf link when the cloud is another JetStream domain. The answers therefore wait out
a WAN outage or an edge restart. A fetch that the cloud side answers, even with
"nothing new", proves the link is up; a fetch that cannot reach it proves it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import NotFoundError, ServiceUnavailableError

from pipeline.config import EdgeSettings
from schemas import subjects

__all__ = ["CloudLink"]

log = logging.getLogger(__name__)

_FETCH_BATCH = 64
_FETCH_TIMEOUT_S = 0.5
_RETRY_S = 0.5


class CloudLink:
    """Runs ``on_answer`` for each stored cloud answer; ``up`` says if the cloud is reachable.

    ``on_answer`` must ack, nak or term the message it is given.
    """

    def __init__(
        self,
        nc: Client,
        settings: EdgeSettings,
        on_answer: Callable[[Msg], Awaitable[None]],
    ) -> None:
        self._js = nc.jetstream(domain=settings.cloud_domain or None)
        self._site = settings.site
        self._worker = settings.worker_id
        self._on_answer = on_answer
        self._up = True  # optimistic until a fetch says otherwise
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
        """Fetch and hand over answers until ``stop`` is set."""
        subscription = None
        while not stop.is_set():
            try:
                if subscription is None:
                    subscription = await self._js.pull_subscribe(
                        subjects.replies(self._site, self._worker),
                        durable=subjects.reply_consumer(self._site, self._worker),
                        stream=subjects.REPLIES_STREAM,
                        config=api.ConsumerConfig(ack_wait=30.0, max_deliver=-1),
                    )
                messages = await subscription.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT_S)
            except TimeoutError:  # nats.errors.TimeoutError is one too
                self._set(True)  # the cloud side answered: nothing new
                continue
            except (ServiceUnavailableError, NoRespondersError, NotFoundError) as exc:
                # No JetStream of the cloud's domain can be reached (or its streams are
                # not there yet: the cloud has never started).
                self._set(False)
                log.debug("cloud unreachable: %r", exc)
                subscription = None
                await _sleep_unless(stop, _RETRY_S)
                continue
            except Exception as exc:  # disconnected, reconnecting, ...: same as down
                self._set(False)
                log.debug("fetching answers failed: %r", exc)
                await _sleep_unless(stop, _RETRY_S)
                continue
            self._set(True)
            for msg in messages:
                await self._on_answer(msg)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
