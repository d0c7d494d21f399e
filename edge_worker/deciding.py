"""The decide loop: each answered frame's facts and the site's state, one decision each.

For every frame of an answered batch (edge_worker/inference.py) the loop gathers what
the decision table (edge_worker/decision.py) reads: the frame's confidence and time
left, whether the cloud is reachable, whether the site's budget pays for it, the
pressure, the shadow sample. A text reader's lines first pass their tracks
(``tracks``): a label the cloud has read already is not asked about again. A local
answer is then published (``finals``); an escalation or a shadow sample is sent
(``escalations``) by a task of its own, so that a slow one (a whole frame being
face-blurred) never holds up the next batch's local answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from edge_worker import results
from edge_worker.budget import Allowance, BudgetLedger, SiteBudget
from edge_worker.cloudlink import CloudLink
from edge_worker.decision import Decision, EscalationPolicy, FrameFacts
from edge_worker.drift import ShadowSampler
from edge_worker.escalations import Escalations
from edge_worker.finals import FinalResults
from edge_worker.inference import Answered, AnsweredBatch
from edge_worker.metrics import EdgeMetrics
from edge_worker.outbound import can_send, size_bound
from edge_worker.telemetry import Telemetry
from edge_worker.tracks import LineTracks
from pipeline.config import EdgeSettings
from pipeline.inference.analysis import Analyser
from pipeline.inference.chain import first_ranked
from pipeline.planning.costs import CostModel
from schemas.limits import MAX_REGIONS
from schemas.messages import InferenceResult, PrivacyClass

__all__ = ["Decider"]

# Escalations being built and stored at once; the decide loop waits beyond this.
_MAX_SENDING = 64


class Decider:
    """Decides every answered frame of one edge worker. ``bind`` it once connected."""

    def __init__(
        self,
        cfg: EdgeSettings,
        *,
        escalations: Escalations,
        tracks: LineTracks | None,
        telemetry: Telemetry,
        metrics: EdgeMetrics,
        on_budget_exhausted: Callable[[Allowance], Awaitable[None]],
    ) -> None:
        self._cfg = cfg
        self._site = cfg.site
        self.policy = EscalationPolicy(cfg.default_threshold, cfg.routing, cfg.threshold_raise)
        self._sampler = ShadowSampler(cfg.shadow_rate, cfg.shadow_seed)
        self._budget = SiteBudget(
            Allowance(cfg.daily_cloud_budget_usd), CostModel(), on_budget_exhausted
        )
        self._escalations = escalations
        self._tracks = tracks if cfg.routing == "hybrid" else None
        self._telemetry = telemetry
        self._metrics = metrics
        self._finals: FinalResults | None = None
        self._link: CloudLink | None = None

    def bind(self, finals: FinalResults, link: CloudLink, ledger: BudgetLedger) -> None:
        self._finals, self._link = finals, link
        self._budget.bind(ledger)

    async def run(self, answered: asyncio.Queue[AnsweredBatch | None]) -> None:
        """Until the batch loop puts None; then nothing more can be escalated."""
        # The semaphore bounds how many escalations are in hand, and the group waits
        # for all of them.
        slots = asyncio.Semaphore(_MAX_SENDING)

        async def send(coro: Coroutine[Any, Any, None]) -> None:
            try:
                await coro
            finally:
                slots.release()

        assert self._finals is not None
        async with asyncio.TaskGroup() as sending:
            while (batch := await answered.get()) is not None:
                for answered_one in batch.answered:
                    one = self._asking(answered_one)
                    if self._tracks is not None:
                        one = self._tracks.apply(one)
                    request = one.request
                    result, decision, cost = await self._decide(one, batch.analyser)
                    if self._tracks is not None and not (decision.escalate or decision.shadow):
                        self._tracks.unanswered(request.frame.frame_id)
                    if decision.escalate or decision.shadow:
                        self._budget.spend(cost)
                        self._metrics.cloud_spend_usd.labels(self._site).inc(cost)
                    if decision.escalate:
                        await slots.acquire()
                        escalate = self._escalations.escalate(one, result, decision)
                        sending.create_task(send(escalate))
                    elif decision.shadow:
                        # Claimed, so that the cloud's answer can never become final.
                        if await self._finals.publish(request, result, claim=True):
                            await slots.acquire()
                            shadow = self._escalations.shadow(one, result)
                            sending.create_task(send(shadow))
                    else:
                        await self._finals.publish(request, result)
        # Nothing more can be escalated: let the deadline loop finish once all is answered.
        self._escalations.finish()

    def _asking(self, one: Answered) -> Answered:
        """What a declared chain's frame asks the cloud about: what it is unsure of, or,
        with routing ``cloud_only`` (the baseline), every item it found."""
        analysis = one.analysis
        if analysis.threshold is None or self.policy.routing != "cloud_only":
            return one
        items = [(d.box, d.score) for d in analysis.detections]
        items += [(x.box, x.confidence) for x in analysis.lines]
        # As many as an escalation carries (the wire's limit), the least certain first.
        every = tuple(box for box, _ in first_ranked(items, MAX_REGIONS, lambda item: item[1]))
        return replace(one, analysis=replace(analysis, asks=every, has_regions=bool(every)))

    async def _decide(
        self, one: Answered, analyser: Analyser
    ) -> tuple[InferenceResult, Decision, float]:
        """Gather the frame's facts and the site's state; the one decision (decision.py)."""
        frame, analysis = one.request.frame, one.analysis
        assert self._link is not None
        asks = analysis.asks
        # What cannot be sent in the form the frame's privacy allows stays at the site.
        privacy = frame.privacy if can_send(one, frame.privacy) else PrivacyClass.LOCAL_ONLY
        may_leave = privacy is not PrivacyClass.LOCAL_ONLY and bool(asks)
        cost = 0.0
        if may_leave:
            bound = size_bound(one, privacy, self._escalations.outbound.embedder.dim)
            cost = self._budget.cost(len(asks), bound)
        now = time.time()
        # A declared chain judged its items itself: with nothing to ask about, a frame
        # is certain, whatever a raised threshold says (pressure does not widen a band).
        own = analysis.threshold
        chain = own is not None
        facts = FrameFacts(
            priority=frame.priority,
            confidence=1.0 if chain and not asks else analysis.confidence,
            threshold=self.policy.threshold_for(frame.threshold) if own is None else own,
            privacy=privacy,
            time_left_s=frame.deadline_at - now,
            has_regions=analysis.has_regions,
            link_up=self._link.up,
            budget_left=not may_leave or await self._budget.affords(cost, now),
            pressure=self._telemetry.pressure,
            # A shadow sample asks the cloud about the same items as an escalation.
            shadow_sampled=bool(asks) and self._sampler.decide(frame.frame_id),
        )
        self._metrics.link_up.labels(self._site).set(int(self._link.up))
        decision = self.policy.decide(facts, self._escalations.round_trips.estimate())
        return results.decided(frame, analysis, analyser, decision), decision, cost
