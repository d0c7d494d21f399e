"""The daily cloud budget through the real pipeline: spend capped, then ``budget``."""

from __future__ import annotations

import time
from dataclasses import replace

import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.budget import BUDGET_BUCKET, escalation_cost, utc_day
from edge_worker.worker import EdgeWorker
from pipeline.config import Settings
from pipeline.planning.costs import CostModel
from schemas import subjects
from schemas.codec import encode
from schemas.messages import PrivacyClass, Reason
from tests.helpers import make_frames, wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration


async def test_budget_caps_spend_then_answers_at_the_edge(settings: Settings, nc: Client) -> None:
    # About 20 escalations' worth (crops of ~1 kB): every uncertain frame wants the cloud.
    per_escalation = escalation_cost(CostModel(), 1, 1200)
    limit = 20 * per_escalation
    edge = replace(
        settings.edge, default_threshold=1.0, daily_cloud_budget_usd=limit, shadow_rate=0.0
    )
    settings = replace(settings, edge=edge)
    frames = make_frames(150, deadline_ms=10_000, priority=2, privacy=PrivacyClass.CROP)
    events: list[dict[str, object]] = []

    async def on_health(msg: Msg) -> None:
        events.append(orjson.loads(msg.data))

    results = await collect(nc, subjects.results("site1"))
    await nc.subscribe(subjects.health("site1"), cb=on_health)
    async with CloudWorker.from_settings(settings), EdgeWorker.from_settings(settings) as worker:
        for frame, _ in frames:
            await nc.publish(subjects.frames("site1", frame.camera), encode(frame))
        await wait_until(lambda: len(results) >= len(frames), 30, "a result per frame")
        spent = worker.metrics.value("hybridfleet_edge_cloud_spend_usd_total", site="site1")
    reasons = [r.reason for r in results]
    answered = reasons.count(Reason.CLOUD_ANSWER)
    over_budget = reasons.count(Reason.BUDGET)
    assert answered >= 10, "the budget paid for escalations before it ran out"
    assert over_budget > 0, "frames past the cap are answered at the edge"
    # Every uncertain frame is one or the other (float32 saturation keeps a few confident).
    assert answered + over_budget + reasons.count(Reason.CONFIDENT) == len(frames)
    assert all(r.degraded and r.labels for r in results if r.reason is Reason.BUDGET)
    assert 0 < spent <= limit
    # Each cloud answer was paid for: no more answers than the cap could buy.
    assert answered <= limit / escalation_cost(CostModel(), 1, 0)
    budget_events = [e for e in events if e.get("type") == "budget"]
    assert len(budget_events) == 1 and budget_events[0]["status"] == "exhausted"
    # The site ledger in KV never granted more than the limit.
    kv = await nc.jetstream().key_value(BUDGET_BUCKET)
    entry = await kv.get(f"site1.{utc_day(time.time())}")
    assert entry.value is not None and float(entry.value.decode()) <= limit
