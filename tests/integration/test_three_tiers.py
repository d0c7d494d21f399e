"""Three tiers through real workers: device (in the camera), edge, cloud.

Every frame ends with exactly one final result, and the result names the tier and
the model that produced it and the path the frame took.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from nats.aio.client import Client

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.config import Settings
from schemas import subjects
from schemas.messages import Reason, Source
from tests.helpers import wait_until
from tests.integration.feeds import collect

pytestmark = pytest.mark.integration

PATHS = {
    Source.DEVICE: ("device",),
    Source.EDGE: ("device", "edge"),
    Source.CLOUD: ("device", "edge", "cloud"),
}


async def test_every_frame_one_result_naming_its_tier_and_path(
    settings: Settings, nc: Client
) -> None:
    options = CameraOptions(
        cameras=2,
        rate_hz=50.0,
        seconds=4.0,
        width=160,
        height=120,
        scene="static",
        device=True,
        deadline_ms=5_000,
    )
    results = await collect(nc, subjects.results("site1"))
    camera = CameraSimulator(options)
    async with (
        CloudWorker.from_settings(settings) as cloud,
        EdgeWorker.from_settings(settings) as edge,
    ):
        published = await camera.run(nc)
        await wait_until(lambda: len(results) >= len(published), 30, "a result per frame")
    by_frame = Counter(r.frame_id for r in results)
    assert set(by_frame) == {p.frame_id for p in published}
    assert max(by_frame.values()) == 1, "exactly one final result per frame"

    assert camera.device_model is not None
    models: dict[Source, Any] = {
        Source.DEVICE: camera.device_model,
        Source.EDGE: edge.analyser,
        Source.CLOUD: cloud.analyser,
    }
    tiers = Counter(r.source for r in results)
    assert tiers[Source.DEVICE] > 0 and tiers[Source.EDGE] > 0
    for r in results:
        assert r.path == PATHS[r.source], r
        model = models[r.source]
        assert (r.model, r.model_version) == (model.name, model.version)
    skipped = [r for r in results if r.reason is Reason.UNCHANGED]
    assert skipped and all(r.source is Source.DEVICE for r in skipped)
    records = {p.frame_id: p for p in published}
    assert {r.frame_id for r in skipped} == {f for f, p in records.items() if p.skipped}
    answered_on_device = {r.frame_id for r in results if r.source is Source.DEVICE}
    assert answered_on_device == {f for f, p in records.items() if p.tier == "device"}
