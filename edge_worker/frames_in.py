"""Frames into an edge worker: from NATS to its queue, or straight to a final result.

Two ways in, chosen by ``edge.intake`` (docs/reliability.md, "Slow consumers"):

* ``stream``: frames are pulled from the site's bounded stream ``FRAMES_<site>``, never
  more than the worker asked for (edge_worker/framepull.py); what the stream discards
  before any worker of the site pulled it is counted once per site
  (``hybridfleet_edge_dropped_frames_total{place="site_stream"}``).
* ``subscription`` (the default): frames are pushed to a subscription in the site's
  queue group, whose client-side pending limits (``edge.intake_pending_*``) drop and
  count what the worker cannot read in time (place ``intake``). Only the worker's own
  buffer is bounded there: a worker whose event loop reads slower than the socket
  brings lets the backlog grow in the server, which cuts it off at 64 MiB and loses it
  uncounted.

``infer.<site>`` requests come through a core queue-group subscription either way: a
requester waits for its reply, so it cannot outrun the worker unseen.

Each frame, whichever way it came, is decoded and checked (``intake.check_frame``),
its id looked up (``repeats``), shed when the edge is hot (``decision``) and queued
(``batcher``, bounded; a full queue sheds with a ``shed`` result). So a frame that
reached the site gets a final result, or is counted as dropped with its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext

from edge_worker import results
from edge_worker.batcher import AdaptiveBatcher
from edge_worker.decision import shed_before_model
from edge_worker.finals import DeadLetterFn, FinalResults
from edge_worker.framepull import FramePuller
from edge_worker.intake import Request, check_frame
from edge_worker.metrics import EdgeMetrics
from edge_worker.repeats import FrameIds, Seen
from edge_worker.telemetry import Telemetry
from pipeline.config import EdgeSettings
from pipeline.inference.analysis import Analyser
from schemas import subjects
from schemas.errors import SchemaError
from schemas.jsonform import decode_frame_message, header
from schemas.messages import InferenceResult

__all__ = ["FrameIntake"]

log = logging.getLogger(__name__)

_LOG_EVERY_S = 10.0


class FrameIntake:
    """The way frames enter one edge worker: ``open``, ``spawn``, ``stop_taking``."""

    def __init__(
        self,
        cfg: EdgeSettings,
        *,
        batcher: AdaptiveBatcher[Request],
        ids: FrameIds[InferenceResult],
        telemetry: Telemetry,
        metrics: EdgeMetrics,
        analyser: Callable[[], Analyser],
        dead_letter: DeadLetterFn,
    ) -> None:
        self._cfg = cfg
        self._site = cfg.site
        self._batcher = batcher
        self._ids = ids
        self._telemetry = telemetry
        self._metrics = metrics
        self._analyser = analyser
        self._dead_letter = dead_letter
        self._finals: FinalResults | None = None
        self._subs: list[Subscription] = []
        self.puller: FramePuller | None = None
        if cfg.intake == "stream":
            self.puller = FramePuller(cfg, room=self._room, handle=self._pulled, metrics=metrics)
        self._drop_logged_at = -math.inf
        # Bound once: three label lookups (a lock each) per frame otherwise.
        self._received = metrics.frames_received.labels(self._site)
        self._received_bytes = metrics.received_bytes.labels(self._site)
        self._queue_depth = metrics.queue_depth.labels(self._site)

    async def open(self, nc: Client, js: JetStreamContext, finals: FinalResults) -> None:
        """Start taking frames: declare and bind the stream, or subscribe."""
        self._finals = finals
        group = subjects.edge_queue_group(self._site)
        inputs = [subjects.infer(self._site)]
        if self.puller is not None:
            await self.puller.open(nc, js)
        else:
            inputs.insert(0, subjects.frames(self._site))
            await self._warn_of_a_stream(js)
        # A frame the worker cannot read in time is dropped here, and counted, before
        # the server would cut the worker off (docs/reliability.md).
        self._subs = [
            await nc.subscribe(
                subject,
                queue=group,
                cb=self._pushed,
                pending_msgs_limit=self._cfg.intake_pending_frames,
                pending_bytes_limit=self._cfg.intake_pending_bytes,
            )
            for subject in inputs
        ]

    async def _warn_of_a_stream(self, js: JetStreamContext) -> None:
        """A site stream left from the stream intake keeps taking the site's frames, in
        memory, and a stream-intake worker of the site would answer each frame a second
        time: say so (every worker of a site must use the same intake)."""
        name = subjects.frames_stream(self._site)
        with contextlib.suppress(Exception):  # no stream (NotFoundError), or cannot tell
            await js.stream_info(name)
            log.warning(
                "edge worker %s takes frames by subscription (edge.intake), but stream %s "
                "also takes them: give every edge worker of site %s the same edge.intake, "
                "and delete the stream if none uses it (nats stream rm %s)",
                self._cfg.worker_id,
                name,
                self._site,
                name,
            )

    def spawn(self, tasks: asyncio.TaskGroup) -> None:
        if self.puller is not None:
            tasks.create_task(self.puller.run(), name="edge-frames")

    async def stop_taking(self) -> None:
        """Stop taking frames; what was already received is still handled."""
        if self.puller is not None:
            await self.puller.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # type: ignore[no-untyped-call]  # nats-py; keeps what it has

    @property
    def sources(self) -> str:
        """Where frames come from, for the worker's ready line."""
        group = subjects.edge_queue_group(self._site)
        infer = f"{subjects.infer(self._site)} (queue group {group})"
        if self.puller is not None:
            return f"frames from {self.puller.source}, requests on {infer}"
        return f"frames on {subjects.frames(self._site)} and requests on {infer}"

    def _room(self) -> int:
        return self._cfg.queue_capacity - len(self._batcher)

    # ------------------------------------------------------------------ one frame

    async def _pushed(self, msg: Msg) -> None:
        await self.on_message(msg, msg.reply or None)

    async def _pulled(self, msg: Msg) -> None:
        # A pulled frame's reply subject is JetStream's, not a requester's.
        await self.on_message(msg, None)

    async def on_message(self, msg: Msg, reply_to: str | None) -> None:
        """One frame message, answered to ``reply_to`` too when it is a request."""
        cfg = self._cfg
        self._received.inc()
        self._received_bytes.inc(len(msg.data))
        if cfg.inject_intake_latency_ms:
            await asyncio.sleep(cfg.inject_intake_latency_ms / 1000)
        try:
            frame = decode_frame_message(msg.data, msg.headers, max_bytes=cfg.max_message_bytes)
            check_frame(frame, msg.subject, self._site, time.time(), cfg.max_clock_skew_s)
        except SchemaError as exc:
            await self._dead_letter(msg.subject, msg.data, "schema", str(exc))
            return
        request = Request(frame, reply_to, header(msg.headers, "Accept"))
        finals = self._finals
        assert finals is not None
        seen, stored = self._ids.admit(frame.frame_id)
        if seen is not Seen.NEW:
            await finals.repeat(request, msg.subject, msg.data, seen, stored)
            return
        self._telemetry.counters.frames += 1
        if shed_before_model(frame.priority, frame.privacy, self._telemetry.pressure):
            self._count_shed()
            await finals.publish(request, results.shed(frame, self._analyser()))
            return
        # The batcher works in monotonic time; it also caps this at the latency target.
        due = time.monotonic() + max(0.0, frame.deadline_at - time.time())
        admission = self._batcher.offer(request, priority=frame.priority, due=due)
        self._queue_depth.set(len(self._batcher))
        if admission.shed is not None:
            self._count_shed()
            victim = admission.shed.frame
            await finals.publish(admission.shed, results.shed(victim, self._analyser()))

    def _count_shed(self) -> None:
        self._metrics.shed.labels(self._site).inc()
        self._telemetry.counters.shed += 1

    def dropped(self, exc: SlowConsumerError) -> None:
        """A message dropped unread: a subscription's buffer was full. Counted (place
        ``intake``); logged every 10 s."""
        self._metrics.dropped_frames.labels(self._site, "intake").inc()
        now = time.monotonic()
        if now - self._drop_logged_at >= _LOG_EVERY_S:
            self._drop_logged_at = now
            log.warning(
                "edge worker %s cannot read frames as fast as they come (%s): dropping at "
                'intake, counted in hybridfleet_edge_dropped_frames_total{place="intake"}',
                self._cfg.worker_id,
                exc.subject,
            )
