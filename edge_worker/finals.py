"""Publishing a frame's one final result.

A frame answered locally has one possible author, the worker that decided it. An
escalated frame has two: the deadline (edge answer, degraded) and the cloud's answer,
which may reach a different incarnation of the worker after a crash. For those the
final result is first *claimed* in the site's ``FINALS_<site>`` stream on a per-frame
subject with ``Nats-Expected-Last-Subject-Sequence: 0``: the server stores only the
first, and refuses every later claim, so at most one is published.
"""

from __future__ import annotations

import logging

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import subjects
from schemas.codec import encode
from schemas.jsonform import encode_result_for
from schemas.messages import InferenceResult

__all__ = ["FinalResults"]

log = logging.getLogger(__name__)

# JetStream errors meaning "this subject already has its message".
_ALREADY_CLAIMED = {10071, 10077}


class FinalResults:
    """Publishes final results on ``results.<site>.<camera>`` (and to a requester)."""

    def __init__(self, nc: Client, js: JetStreamContext, site: str, timeout_s: float) -> None:
        self._nc = nc
        self._js = js
        self._site = site
        self._timeout_s = timeout_s

    async def publish(
        self,
        result: InferenceResult,
        *,
        reply_to: str | None = None,
        accept: str | None = None,
        claim: bool = False,
    ) -> bool:
        """Publish ``result``; with ``claim``, only if no final result was claimed before.

        ``accept`` is the requester's ``Accept`` header: the reply to ``reply_to`` is
        JSON when it asks for it; ``results.*`` is always msgpack. Returns False when
        the frame already had its final result.
        """
        data = encode(result)
        if claim and not await self._claim(result.frame_id, data):
            return False
        await self._nc.publish(subjects.results(self._site, result.camera), data)
        if reply_to:
            reply, headers = encode_result_for(result, accept)
            await self._nc.publish(reply_to, reply, headers=headers)
        return True

    async def _claim(self, frame_id: str, data: bytes) -> bool:
        try:
            await self._js.publish(
                subjects.finals(self._site, frame_id),
                data,
                timeout=self._timeout_s,
                headers={"Nats-Expected-Last-Subject-Sequence": "0"},
            )
        except APIError as exc:
            if exc.err_code in _ALREADY_CLAIMED:
                return False
            log.error("claim of %s refused (%s): publishing unclaimed", frame_id, exc)
        except Exception as exc:
            # The site's own server did not answer: a result now, at the small risk of
            # a second one, beats no result at all.
            log.error("claim of %s failed (%s): publishing unclaimed", frame_id, exc)
        return True
