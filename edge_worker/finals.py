"""Where results leave: each frame's one final result, and what a repeated id gets.

A frame answered locally has one possible author, the worker that decided it. An
escalated frame has two: the deadline (edge answer, degraded) and the cloud's answer,
which may reach a different incarnation of the worker after a crash. For those the
final result is first *claimed* in the site's ``FINALS_<site>`` stream on a per-frame
subject with ``Nats-Expected-Last-Subject-Sequence: 0``: the server stores only the
first, and refuses every later claim, so at most one is published. A refused claim
means another worker of the site (or an earlier run) answered the frame id: the
requester gets that stored answer.

Repeated frame ids (edge_worker/repeats.py) are answered here too: a requester that
joined a frame in flight gets its final result when it is published, a requester of a
finished frame the stored one, and a camera's repeat becomes a dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from edge_worker import results
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.repeats import FrameIds, Joiner, Seen
from schemas import subjects
from schemas.codec import decode_result, encode
from schemas.jsonform import encode_result_for
from schemas.messages import InferenceResult

__all__ = ["DeadLetterFn", "FinalResults"]

log = logging.getLogger(__name__)

# JetStream errors meaning "this subject already has its message".
_ALREADY_CLAIMED = {10071, 10077}

# (subject, original bytes, kind, reason): stores a dead letter and counts it.
DeadLetterFn = Callable[[str, bytes, str, str], Awaitable[None]]


@dataclass(eq=False)
class FinalResults:
    """Publishes final results on ``results.<site>.<camera>`` and to requesters."""

    nc: Client
    js: JetStreamContext
    site: str
    timeout_s: float
    _: KW_ONLY
    ids: FrameIds[InferenceResult]
    metrics: EdgeMetrics
    dead_letter: DeadLetterFn
    on_final: Callable[[InferenceResult], None]

    async def publish(
        self, request: Request | None, result: InferenceResult, *, claim: bool = False
    ) -> bool:
        """Publish ``result`` as the final one; with ``claim``, only if none was claimed.

        ``request`` is the frame's (None for a cloud answer to a frame this run never
        saw). ``results.*`` is always msgpack; the requester's reply is JSON when its
        ``Accept`` asks for it. Returns False when the frame already had its final result.
        """
        result = results.final(result, request)
        data = encode(result)
        if claim and not await self._claim(result.frame_id, data):
            if request is not None:
                await self.answered_elsewhere(request, await self.stored(result.frame_id))
            return False
        await self.nc.publish(subjects.results(self.site, result.camera), data)
        if request is not None and request.reply_to:
            await self.reply(Joiner(request.reply_to, request.accept), result)
        self.on_final(result)
        for joiner in self.ids.finish(result.frame_id, result):
            await self.reply(joiner, result)
        return True

    async def reply(self, joiner: Joiner, result: InferenceResult) -> None:
        reply, headers = encode_result_for(result, joiner.accept)
        await self.nc.publish(joiner.reply_to, reply, headers=headers)

    async def repeat(
        self,
        request: Request,
        subject: str,
        data: bytes,
        seen: Seen,
        stored: InferenceResult | None,
    ) -> None:
        """A frame id in flight or answered here: never a second final result."""
        frame = request.frame
        self.metrics.repeated_frames.labels(self.site, seen.value).inc()
        if request.reply_to is None:
            await self.dead_letter(
                subject,
                data,
                "repeat",
                f"frame id {frame.frame_id!r} repeated while {seen.value.replace('_', ' ')}: "
                f"its one final result is on {subjects.results(self.site, frame.camera)}; "
                "a new frame needs a new id",
            )
        elif stored is not None:
            await self.reply(Joiner(request.reply_to, request.accept), stored)
        else:
            self.ids.join(frame.frame_id, Joiner(request.reply_to, request.accept))

    async def stored(self, frame_id: str) -> InferenceResult | None:
        """The claimed final result of ``frame_id`` in the site's finals stream, if any."""
        try:
            raw = await self.js.get_last_msg(
                subjects.finals_stream(self.site), subjects.finals(self.site, frame_id)
            )
            return decode_result(raw.data or b"")
        except Exception as exc:  # none (not claimed, or gone by max_age) or unreadable
            log.debug("no stored final result of %s: %r", frame_id, exc)
            return None

    async def answered_elsewhere(self, request: Request, stored: InferenceResult | None) -> None:
        """Another worker of the site, or an earlier run of this one, already gave this
        frame id its final result (``stored``, None when it cannot be read): answer with
        that one."""
        frame_id = request.frame.frame_id
        joiners = self.ids.finish(frame_id, stored) if stored else self.ids.forget(frame_id)
        if request.reply_to:
            joiners.append(Joiner(request.reply_to, request.accept))
        self.metrics.repeated_frames.labels(self.site, Seen.FINISHED.value).inc()
        if stored is not None:
            for joiner in joiners:
                await self.reply(joiner, stored)
        if stored is None or request.reply_to is None:
            await self.dead_letter(
                subjects.frames(self.site, request.frame.camera),
                encode(request.frame),
                "repeat",
                f"frame id {frame_id!r} already had its final result from another worker of "
                f"site {self.site!r} or an earlier run of this one; a new frame needs a new id",
            )

    async def _claim(self, frame_id: str, data: bytes) -> bool:
        try:
            await self.js.publish(
                subjects.finals(self.site, frame_id),
                data,
                timeout=self.timeout_s,
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
