"""The escalated path: frames sent to the cloud, waited for, and answered.

An escalated frame waits in ``pending`` for the cloud's answer (read from ``REPLIES``
by ``CloudLink``) or its deadline, whichever comes first; either makes its final
result, claimed (edge_worker/finals.py) so that only one is ever published. An answer
whose escalation this site's edge did not make (no valid tag, edge_worker/tags.py) is
refused. Shadow samples (drift monitoring) are sent the same way, with the edge's
answer already final; their cloud answer is only compared. While the worker drains,
``drain_by`` caps every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from nats.aio.msg import Msg

from edge_worker import results
from edge_worker.decision import Decision
from edge_worker.drift import DriftMonitor
from edge_worker.finals import DeadLetterFn, FinalResults
from edge_worker.inference import Answered
from edge_worker.intake import Request
from edge_worker.metrics import EdgeMetrics
from edge_worker.outbound import Outbound
from edge_worker.pending import PendingEscalations
from edge_worker.roundtrip import RoundTripEstimator
from edge_worker.tags import TAG_HEADER, EscalationTags
from edge_worker.tracks import LineTracks
from pipeline.config import EdgeSettings
from pipeline.fleet.heartbeat import ModelCounters
from pipeline.inference.agreement import agrees, comparable
from schemas.codec import decode_result, encode
from schemas.errors import SchemaError
from schemas.jsonform import header
from schemas.limits import MAX_DEADLINE_S, MAX_UNIX_TIME
from schemas.messages import InferenceResult, Reason

__all__ = ["Escalations"]

log = logging.getLogger(__name__)

# Shadow samples awaiting their cloud answer; beyond this the oldest are forgotten
# (their answers then only count as late replies), so an outage cannot grow it.
_MAX_SHADOWS = 10_000
# A shadow sample is not urgent: the cloud may answer it long after the frame's deadline.
_SHADOW_DEADLINE_S = 300.0
_SHADOW_PRIORITY = 3


@dataclass(slots=True)
class _Waiting:
    """An escalated frame waiting for the cloud, with the edge answer to fall back on."""

    request: Request
    edge_result: InferenceResult
    sent_at: float  # monotonic


class Escalations:
    """The escalations of one edge worker, from sending to their final result."""

    def __init__(
        self,
        cfg: EdgeSettings,
        *,
        outbound: Outbound,
        drift: DriftMonitor,
        metrics: EdgeMetrics,
        counters: Callable[[], ModelCounters],
        dead_letter: DeadLetterFn,
        tracks: LineTracks | None = None,
    ) -> None:
        self._cfg = cfg
        self._tracks = tracks
        self.site = cfg.site
        self.outbound = outbound
        self.drift = drift
        self.metrics = metrics
        self._counters = counters
        self._dead_letter = dead_letter
        self.round_trips = RoundTripEstimator(prior_s=cfg.cloud_round_trip_prior_ms / 1000)
        self.pending: PendingEscalations[_Waiting] = PendingEscalations()
        # The edge's answer of each shadow sample; insertion-ordered: oldest first.
        self._shadows: dict[str, InferenceResult] = {}
        self._changed = asyncio.Event()
        self._finals: FinalResults | None = None
        self._tags: EscalationTags | None = None
        self.drain_by: float | None = None  # Unix time: whatever waits is answered by then
        self.all_sent = False  # nothing more will be escalated
        self.done = asyncio.Event()  # all sent, and every one answered

    def bind(self, finals: FinalResults, tags: EscalationTags) -> None:
        self._finals, self._tags = finals, tags

    def finish(self) -> None:
        """Nothing more will be escalated: ``done`` is set once every one is answered."""
        self.all_sent = True
        self._changed.set()

    def answer_by(self, at: float) -> None:
        """Draining: whatever still waits for the cloud at Unix time ``at`` is answered then."""
        self.drain_by = at
        self._changed.set()

    async def escalate(
        self, one: Answered, edge_result: InferenceResult, decision: Decision
    ) -> None:
        request = one.request
        frame = request.frame
        assert self._finals is not None
        try:
            escalation = await self.outbound.build(
                one, decision.send, edge_result.labels, edge_result.confidence
            )
            data = encode(escalation)
        except Exception as exc:  # never stored: the edge's answer is final
            log.warning("could not build the escalation of %s: %s", frame.frame_id, exc)
            self.metrics.escalation_failures.labels(self.site).inc()
            self._unanswered(frame.frame_id)
            failed = results.fallback(edge_result, Reason.ESCALATION_FAILED)
            await self._finals.publish(request, failed, claim=True)
            return
        if decision.awaits_cloud:
            # Registered before publishing: the cloud's answer can overtake our PubAck.
            self.pending.add(
                frame.frame_id, frame.deadline_at, _Waiting(request, edge_result, time.monotonic())
            )
            self._changed.set()
        try:
            stored = await self.outbound.store(frame, data)
        except Exception as exc:
            log.warning("could not store escalation of %s: %s", frame.frame_id, exc)
            self.metrics.escalation_failures.labels(self.site).inc()
            self._unanswered(frame.frame_id)
            self._counters().errors += 1
            if self.pending.resolve(frame.frame_id) is not None or not decision.awaits_cloud:
                failed = results.fallback(edge_result, Reason.ESCALATION_FAILED)
                await self._finals.publish(request, failed, claim=True)
            return
        final = None if stored else await self._finals.stored(frame.frame_id)
        if final is not None:
            # Escalated before by another worker or run, and answered: answer with that.
            self._answered(final)
            if self.pending.resolve(frame.frame_id) is not None or not decision.awaits_cloud:
                await self._finals.answered_elsewhere(request, final)
            return
        self.metrics.escalations.labels(self.site, decision.send.value).inc()
        self._counters().escalated += 1
        self.metrics.escalated_bytes.labels(self.site).inc(len(data))
        self.metrics.escalated_crops.labels(self.site).inc(len(escalation.crops))
        self.metrics.pending_escalations.labels(self.site).set(len(self.pending))
        if not decision.awaits_cloud:
            # Stored for the cloud to answer after the link returns; the edge answers now.
            kept = results.fallback(edge_result, decision.reason)
            await self._finals.publish(request, kept, claim=True)

    async def shadow(self, one: Answered, edge_result: InferenceResult) -> None:
        """Send a kept frame to the cloud only to compare answers (drift monitoring)."""
        frame = one.request.frame
        escalation = replace(
            await self.outbound.build(
                one, frame.privacy, edge_result.labels, edge_result.confidence
            ),
            priority=_SHADOW_PRIORITY,
            # Not urgent, but within what the wire accepts of this frame's capture time.
            deadline_at=min(
                max(time.time(), frame.captured_at) + _SHADOW_DEADLINE_S,
                frame.captured_at + MAX_DEADLINE_S,
                MAX_UNIX_TIME,
            ),
        )
        data = encode(escalation)
        self._shadows[frame.frame_id] = edge_result
        while len(self._shadows) > _MAX_SHADOWS:
            del self._shadows[next(iter(self._shadows))]
        try:
            await self.outbound.store(frame, data)
        except Exception as exc:
            # Only a comparison is lost; the frame already has its final result.
            log.info("could not store shadow sample %s: %s", frame.frame_id, exc)
            self._shadows.pop(frame.frame_id, None)
            self.metrics.escalation_failures.labels(self.site).inc()
            return
        self.metrics.shadow_escalations.labels(self.site).inc()
        self.metrics.escalated_bytes.labels(self.site).inc(len(data))

    async def on_answer(self, msg: Msg) -> None:
        self.metrics.answer_bytes.labels(self.site).inc(len(msg.data))
        try:
            cloud = decode_result(msg.data, max_bytes=self._cfg.max_message_bytes)
            if cloud.site != self.site:
                raise SchemaError(f"result.site: {cloud.site!r} but this is site {self.site!r}")
        except SchemaError as exc:
            await self._dead_letter(msg.subject, msg.data, "schema", str(exc))
            await msg.term()
            return
        assert self._tags is not None and self._finals is not None
        if not self._tags.verify(cloud.frame_id, header(msg.headers, TAG_HEADER)):
            await self._dead_letter(
                msg.subject,
                msg.data,
                "forged",
                f"answer to frame {cloud.frame_id!r} refused: its escalation carries no valid "
                f"{TAG_HEADER} of this site's edge, so the site never accepted that frame",
            )
            await msg.term()
            return
        self._answered(cloud)
        shadow = self._shadows.pop(cloud.frame_id, None)
        if shadow is not None:
            # Its final result is the edge's, claimed when it was published.
            self._compare(shadow, cloud, kept=True)
            await msg.ack()
            return
        waiting = self.pending.resolve(cloud.frame_id)
        request: Request | None = None
        edge_labels, edge_result = cloud.edge_labels, None
        if waiting is not None:
            self.metrics.pending_escalations.labels(self.site).set(len(self.pending))
            round_trip = time.monotonic() - waiting.sent_at
            self.round_trips.observe(round_trip)
            self.metrics.cloud_round_trip_seconds.labels(self.site).observe(round_trip)
            request, edge_result = waiting.request, waiting.edge_result
            edge_labels = edge_result.labels
            self._compare(edge_result, cloud, kept=False)
        # Without ``waiting`` the frame was escalated by an earlier run of this worker,
        # or its deadline passed: the claim decides whether this answer is final.
        final = results.from_cloud(cloud, edge_labels, edge_result)
        if not await self._finals.publish(request, final, claim=True):
            self.metrics.late_replies.labels(self.site).inc()
        await msg.ack()

    def _answered(self, cloud: InferenceResult) -> None:
        if self._tracks is not None:
            self._tracks.answered(cloud.frame_id, cloud)

    def _unanswered(self, frame_id: str) -> None:
        if self._tracks is not None:
            self._tracks.unanswered(frame_id)

    def _compare(self, edge: InferenceResult, cloud: InferenceResult, *, kept: bool) -> None:
        """Count whether the edge's answer agrees with the cloud's (labels, boxes or
        text: ``pipeline.inference.agreement``), for drift and the canary's tallies."""
        # A NaN confidence (a broken model output) is not a comparison the monitor takes.
        if not 0.0 <= edge.confidence <= 1.0:
            return
        if not comparable(edge, cloud):
            return
        agreed = agrees(edge, cloud)
        self.drift.observe_agreement(agreed, edge.confidence, kept, time.time())
        kind = "shadow" if kept else "escalated"
        self.metrics.compared.labels(self.site, kind).inc()
        self._counters().compared += 1
        if agreed:
            self.metrics.agreed.labels(self.site, kind).inc()
            self._counters().agreed += 1

    async def deadline_loop(self) -> None:
        assert self._finals is not None
        while True:
            now = time.time()
            # Draining: whatever still waits for the cloud is answered by drain_by.
            cutoff = now if self.drain_by is None or now < self.drain_by else math.inf
            for frame_id, waiting in self.pending.pop_expired(cutoff):
                self._unanswered(frame_id)
                timeout = results.fallback(waiting.edge_result, Reason.CLOUD_TIMEOUT)
                await self._finals.publish(waiting.request, timeout, claim=True)
            self.metrics.pending_escalations.labels(self.site).set(len(self.pending))
            if self.all_sent and not self.pending:
                self.done.set()
                return
            next_due = self.pending.next_deadline()
            if next_due is not None and self.drain_by is not None:
                next_due = min(next_due, self.drain_by)
            timeout_s = None if next_due is None else max(0.0, next_due - time.time())
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout_s)
