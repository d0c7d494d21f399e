"""Model bundles through real workers: swap without loss, refusals, canary rollouts.

Real edge and cloud workers, a real nats-server, bundles signed with a key made here,
published in the Object Store, desired versions in KV. Frames flow the whole time, so
"no frame is dropped or answered twice during a swap" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cloud_worker.worker import CloudWorker
from edge_worker.worker import EdgeWorker
from pipeline.camera.simulator import CameraOptions, CameraSimulator
from pipeline.config import Settings
from pipeline.inference.model import OnnxModel
from pipeline.release.judge import CanaryConfig
from pipeline.release.registry import BUNDLES_BUCKET, ModelRegistry, object_name
from pipeline.release.rollout import RolloutConfig, RolloutController
from pipeline.release.signing import generate_keypair
from schemas import subjects
from schemas.codec import decode_result, encode
from tests.helpers import wait_until
from tests.release_helpers import collect_events, edge_bundle

pytestmark = pytest.mark.integration

BASE = OnnxModel.load("edge").version
# Small frames: the same 32x32 digit crops as 640x480 ones, far fewer bytes.
CAMERA = CameraOptions(cameras=2, width=128, height=96, deadline_ms=10_000, seed=5)


def _bundle(out: Path, role: str, version: str, private_key: str) -> Path:
    return edge_bundle(out, OnnxModel.load(role), private_key, version)


@dataclass
class Traffic:
    """Frames published in small chunks until stopped, and every result seen."""

    nc: Client
    sent: list[str] = field(default_factory=list)
    results: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)

    async def on_result(self, msg: Msg) -> None:
        result = decode_result(msg.data)
        self.results[result.frame_id] += 1
        self.versions[result.model_version] += 1

    async def run(self, stop: asyncio.Event, limit: int = 20_000) -> None:
        camera = CameraSimulator(CAMERA)
        seq = 0
        while not stop.is_set() and len(self.sent) < limit:
            for name in camera.camera_names:
                frame, _ = camera.make_frame(name, seq, time.time())
                await self.nc.publish(subjects.frames("site1", name), encode(frame))
                self.sent.append(frame.frame_id)
            seq += 1
            await asyncio.sleep(0.004)


@contextlib.asynccontextmanager
async def flowing(nc: Client) -> AsyncIterator[Traffic]:
    traffic = Traffic(nc)
    await nc.subscribe(subjects.results("site1"), cb=traffic.on_result)
    stop = asyncio.Event()
    task = asyncio.create_task(traffic.run(stop))
    try:
        yield traffic
    finally:
        stop.set()
        await task


def _edge(
    settings: Settings, worker: str, public_key: str, tmp_path: Path, **edge: Any
) -> Settings:
    cfg = replace(
        settings.edge,
        worker_id=worker,
        trusted_keys=public_key,
        bundle_dir=str(tmp_path / worker),
        heartbeat_interval_s=0.2,
        **edge,
    )
    return replace(settings, edge=cfg)


def _exactly_once(traffic: Traffic) -> None:
    assert traffic.sent, "frames were sent"
    assert set(traffic.results) == set(traffic.sent), "every frame has a final result"
    assert max(traffic.results.values()) == 1, "no frame has two final results"


async def test_swap_under_traffic_loses_nothing(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    private, public = generate_keypair()
    registry = ModelRegistry(nc.jetstream())
    await registry.publish(_bundle(tmp_path / "made", "edge-v2", "1.1.0", private))
    edge_settings = _edge(settings, "edge-1", public, tmp_path)
    async with (
        CloudWorker.from_settings(settings),
        EdgeWorker.from_settings(edge_settings) as worker,
    ):
        async with flowing(nc) as traffic:
            await wait_until(lambda: traffic.versions[BASE] >= 100, 30, "results of the base model")
            await registry.set_desired("edge", "site1", "1.1.0")
            await wait_until(lambda: worker.analyser.version == "1.1.0", 30, "the swap")
            swapped_at = len(traffic.sent)
            await wait_until(lambda: traffic.versions["1.1.0"] >= 100, 30, "results of 1.1.0")
            # Back to the shipped model when nothing is desired any more.
            await registry.clear_desired("edge", "site1")
            await wait_until(lambda: worker.analyser.version == BASE, 30, "the swap back")
        await wait_until(lambda: len(traffic.results) >= len(traffic.sent), 30, "every result")
        assert (
            worker.counters.since > 0
            and worker.metrics.value("hybridfleet_edge_model_swaps_total", site="site1") == 2
        )
    _exactly_once(traffic)
    assert swapped_at > 0 and traffic.versions["1.1.0"] >= 100


async def test_bad_signature_and_bad_checksum_are_refused(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    private, public = generate_keypair()
    stranger, _ = generate_keypair()
    js = nc.jetstream()
    registry = ModelRegistry(js)
    await registry.publish(_bundle(tmp_path / "a", "edge-v2", "2.0.0", stranger))
    good = _bundle(tmp_path / "b", "edge-v2", "3.0.0", private)
    await registry.publish(good)
    # A bit flipped in storage: the model object no longer matches its signed hash.
    model_file = next(p for p in good.iterdir() if p.suffix == ".onnx")
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store = await js.object_store(BUNDLES_BUCKET)
    await store.put(object_name("edge", "3.0.0", model_file.name), bytes(data))
    events = await collect_events(nc)
    async with EdgeWorker.from_settings(_edge(settings, "edge-1", public, tmp_path)) as worker:
        await registry.set_desired("edge", "site1", "2.0.0")
        await wait_until(lambda: len(events) >= 1, 30, "the first refusal")
        await registry.set_desired("edge", "site1", "3.0.0")
        await wait_until(lambda: len(events) >= 2, 30, "the second refusal")
        assert worker.analyser.version == BASE, "the running model is kept"
        refusals = worker.metrics.value("hybridfleet_edge_bundle_refusals_total", site="site1")
    assert refusals == 2
    assert [e["kind"] for e in events] == ["bundle_refused", "bundle_refused"]
    assert [e["version"] for e in events] == ["2.0.0", "3.0.0"]
    assert "signature" in events[0]["reason"]
    assert "SHA-256 is" in events[1]["reason"] and "the file was changed" in events[1]["reason"]


async def _rollout(
    settings: Settings, nc: Client, tmp_path: Path, role: str, version: str, until: str
) -> tuple[Traffic, list[dict[str, Any]], list[EdgeWorker]]:
    """Two edge workers, one canary; run until a fleet event of kind ``until``."""
    private, public = generate_keypair()
    js = nc.jetstream()
    registry = ModelRegistry(js)
    await registry.publish(_bundle(tmp_path / "made", role, version, private))
    events = await collect_events(nc)
    config = RolloutConfig(
        canary=CanaryConfig(min_compared=40, min_baseline_compared=20, min_baseline_frames=100),
        later_steps=(1.0,),
        tick_s=0.2,
        worker_ttl_s=5.0,
    )
    workers = [
        EdgeWorker.from_settings(_edge(settings, f"edge-{i}", public, tmp_path, shadow_rate=0.3))
        for i in (1, 2)
    ]
    controller = RolloutController(nc, js, config)
    async with CloudWorker.from_settings(settings), workers[0], workers[1]:
        runner = asyncio.create_task(controller.run())
        try:
            await controller.wait_started()
            async with flowing(nc) as traffic:
                await wait_until(lambda: len(traffic.results) >= 200, 30, "traffic")
                await controller.start("edge", version, 0.5, "site1")
                await wait_until(
                    lambda: any(e["kind"] == until for e in events), 90, f"event {until}"
                )
                await asyncio.sleep(1.0)  # let the workers follow the final state
        finally:
            await controller.stop()
            await runner
        await wait_until(lambda: len(traffic.results) >= len(traffic.sent), 30, "every result")
    return traffic, events, workers


async def test_bad_canary_is_rolled_back_while_the_stack_answers(
    settings: Settings, nc: Client, tmp_path: Path
) -> None:
    traffic, events, workers = await _rollout(
        settings, nc, tmp_path, "edge-bad", "1.1.0-bad", "rolled_back"
    )
    _exactly_once(traffic)
    assert traffic.versions["1.1.0-bad"] > 0, "the canary served traffic before its rollback"
    assert all(w.analyser.version == BASE for w in workers), "every worker is back on the base"
    kinds = [e["kind"] for e in events]
    assert "promoted" not in kinds and "rollout_completed" not in kinds
