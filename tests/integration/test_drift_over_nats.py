"""Drift monitoring through the real pipeline: shadow samples, cloud answers, health events.

Frames go in chunks; after each chunk the test waits until every frame has its final
result and every shadow sample its cloud answer, so "flagged within N frames" counts
frames, not wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.health import HealthStatus
from edge_worker.worker import EdgeWorker
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.config import Settings
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Reason
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

RATE_HZ = 25.0
CHUNK = 25
ONSET = 300  # frames before the drift starts
# The unit test of the monitor (tests/unit/test_drift.py) flags brightness 0.3 within
# 53..213 frames of onset at a 20% shadow rate; 25% here, and room for the sample.
WITHIN = 400


def _settings(settings: Settings) -> Settings:
    edge = replace(settings.edge, shadow_rate=0.25, health_interval_s=0.1)
    return replace(settings, edge=edge)


async def _run(
    settings: Settings, nc: Client, frames: int, **drift: Any
) -> tuple[int | None, list[dict[str, Any]], EdgeWorker]:
    """Publish ``frames`` frames in chunks; the frame count at the first degraded report."""
    options = CameraOptions(
        cameras=1,
        rate_hz=RATE_HZ,
        seed=3,
        deadline_ms=10_000,
        priority_mix=(0.0, 1.0, 0.0),
        privacy_mix=(0.0, 1.0, 0.0),
        **drift,
    )
    camera = CameraSimulator(options)
    reports: list[dict[str, Any]] = []
    results = 0

    async def on_health(msg: Msg) -> None:
        reports.append(orjson.loads(msg.data))

    async def on_result(msg: Msg) -> None:
        nonlocal results
        results += 1

    def reached(count: int) -> Callable[[], bool]:
        return lambda: results >= count

    await nc.subscribe(subjects.health("site1"), cb=on_health)
    await nc.subscribe(subjects.results("site1"), cb=on_result)
    flagged_at = None
    async with (
        CloudWorker.from_settings(settings) as _cloud,
        EdgeWorker.from_settings(settings) as edge,
    ):
        m = edge.metrics
        for start in range(0, frames, CHUNK):
            for seq in range(start, start + CHUNK):
                frame, _ = camera.make_frame("cam1", seq, time.time())
                await nc.publish(subjects.frames("site1", "cam1"), encode(frame))
            await wait_until(reached(start + CHUNK), 30, "a result per frame")
            await wait_until(
                lambda: (
                    m.value("hybridfleet_edge_shadow_escalations_total", site="site1")
                    == m.value("hybridfleet_edge_drift_compared_total", site="site1", kind="shadow")
                ),
                30,
                "every shadow sample's cloud answer",
            )
            if flagged_at is None and edge.drift.report(time.time()).status == "degraded":
                flagged_at = start + CHUNK
        await nc.flush()
        await wait_until(lambda: len(reports) >= 2, 10, "health reports")
    return flagged_at, reports, edge


async def test_quiet_without_drift(settings: Settings, nc: Client) -> None:
    flagged_at, reports, edge = await _run(_settings(settings), nc, 1000)
    assert flagged_at is None, f"false alarm after {flagged_at} clean frames"
    assert all(r["status"] == HealthStatus.HEALTHY for r in reports)
    last = reports[-1]
    assert last["type"] == "health" and last["site"] == "site1"
    # Shadow samples did reach the cloud and came back agreeing.
    shadows = edge.metrics.value(
        "hybridfleet_edge_drift_compared_total", site="site1", kind="shadow"
    )
    assert shadows >= 100
    assert last["kept_accuracy_estimate"] is not None and last["kept_accuracy_estimate"] > 0.95
    # Shadow samples never become the final answer: every kept frame stays confident.
    cloud_finals = edge.metrics.value(
        "hybridfleet_edge_decisions_total", site="site1", reason=Reason.CLOUD_ANSWER.value
    )
    escalated = edge.metrics.value(
        "hybridfleet_edge_escalations_total", site="site1", privacy="crop"
    )
    assert cloud_finals == escalated
    assert edge.metrics.value("hybridfleet_edge_late_cloud_replies_total", site="site1") == 0


async def test_flags_injected_brightness_drift(settings: Settings, nc: Client) -> None:
    flagged_at, reports, _ = await _run(
        _settings(settings),
        nc,
        ONSET + WITHIN,
        drift="brightness",
        drift_strength=0.3,
        drift_after_s=ONSET / RATE_HZ,
    )
    assert flagged_at is not None, f"drift not flagged within {WITHIN} frames of onset"
    assert flagged_at > ONSET, "flagged before the drift started"
    degraded = [r for r in reports if r["status"] == HealthStatus.DEGRADED]
    assert degraded, "no degraded health event was published on health.site1"
    assert degraded[0]["recommendation"] in ("raise_threshold", "retrain")
    assert degraded[0]["reasons"]
