"""How a deployment runs the cloud's models: settings checked at start, applied at load.

``cloud.providers``, ``cloud.intra_op_threads`` and ``cloud.max_batch`` replace the
manifest entry's values for the declared models of ``cloud.models`` (the random-weight
classifier of models/random here, on the CPU onnxruntime of this environment, so a
GPU provider falls back to the CPU's as a manifest's does), and ``cloud.intra_op_threads``
the region classifier's without them; ``cloud.batches_in_flight``
lets a worker answer several fetched batches at once, on a real nats-server.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from nats.aio.client import Client

from cloud_worker.models import cloud_analyser
from cloud_worker.worker import CloudWorker
from models.random.build import HERE as RANDOM_MODELS
from pipeline.config import CloudSettings, Settings, load_settings
from pipeline.inference.analysis import Look, RegionClassifier
from pipeline.inference.chain import ModelChain
from pipeline.inference.manifest import load_declaration
from schemas.errors import ConfigError
from schemas.messages import Region
from tests.helpers import REPLY_TO_TEST, escalation_of, make_frames, wait_until
from tests.integration.feeds import SiteStream, collect

MANIFEST = RANDOM_MODELS / "manifest.json"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _cloud(**env: str) -> CloudSettings:
    return load_settings(env={f"HYBRIDFLEET_CLOUD_{k.upper()}": v for k, v in env.items()}).cloud


def test_the_settings_are_read_and_default_to_the_manifest() -> None:
    default = CloudSettings()
    assert (default.provider_list, default.intra_op_threads, default.max_batch) == ((), 0, 0)
    assert default.batches_in_flight == 1
    cfg = _cloud(
        models="classify",
        providers=f" {CUDA}, {CPU} ",
        intra_op_threads="4",
        max_batch="256",
        batches_in_flight="3",
    )
    assert cfg.provider_list == (CUDA, CPU)
    assert (cfg.intra_op_threads, cfg.max_batch, cfg.batches_in_flight) == (4, 256, 3)


def test_a_misspelt_provider_is_refused_at_start() -> None:
    with pytest.raises(
        ConfigError, match=r"cloud\.providers.*did you mean 'CUDAExecutionProvider'"
    ):
        _cloud(models="classify", providers="CUDAExecutionProvidr")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"providers": CUDA}, "with cloud.models empty"),
        ({"max_batch": "64"}, "with cloud.models empty"),
        ({"max_batch": "5000", "models": "classify"}, "max_batch"),
        ({"batches_in_flight": "0"}, "batches_in_flight"),
        ({"batches_in_flight": "4", "inference_threads": "2"}, "needs as many threads"),
    ],
)
def test_settings_that_cannot_hold_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cloud(**env)


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8) for i in range(n)]


def test_the_overrides_replace_the_manifest_values_and_a_missing_gpu_falls_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    declared, _ = load_declaration("classify", MANIFEST)
    cfg = replace(
        CloudSettings(),
        model_manifest=str(MANIFEST),
        models="classify",
        providers=f"{CUDA},{CPU}",
        intra_op_threads=2,
        max_batch=3,
    )
    with caplog.at_level(logging.INFO):
        analyser = cloud_analyser(cfg)
    assert isinstance(analyser, ModelChain)
    (stage,) = analyser.stages
    declaration = stage.declaration
    assert declaration.runtime.providers == (CUDA, CPU)
    assert (declaration.runtime.intra_op_threads, declaration.input.max_batch) == (2, 3)
    assert declaration.input.max_batch != declared.input.max_batch
    # Everything else is the manifest's, the file verified against its SHA-256.
    assert replace(declaration, runtime=declared.runtime, input=declared.input) == declared
    assert "this deployment runs it on" in caplog.text
    if CUDA not in ort.get_available_providers():
        assert "are not available here" in caplog.text
    # Seven images run in calls of at most three; each gets its answer.
    images = _images(7)
    looks = [Look(image, (Region(0, 0, 50, image.shape[0]),)) for image in images]
    assert len(analyser.analyse(looks)) == 7


def test_without_overrides_the_models_run_as_declared() -> None:
    cfg = replace(CloudSettings(), model_manifest=str(MANIFEST), models="classify")
    analyser = cloud_analyser(cfg)
    assert isinstance(analyser, ModelChain)
    assert analyser.stages[0].declaration == load_declaration("classify", MANIFEST)[0]


def test_intra_op_threads_alone_set_the_region_classifiers_threads() -> None:
    analyser = cloud_analyser(replace(CloudSettings(), intra_op_threads=2))
    assert isinstance(analyser, RegionClassifier)
    assert analyser.model._session.get_session_options().intra_op_num_threads == 2


def _in_flight(settings: Settings, n: int, fetch: int, latency_ms: float) -> Settings:
    cloud = replace(
        settings.cloud, batches_in_flight=n, fetch_batch=fetch, inject_latency_ms=latency_ms
    )
    return replace(settings, cloud=cloud)


@pytest.mark.integration
async def test_batches_in_flight_overlap_and_each_escalation_is_answered_once(
    settings: Settings, nc: Client
) -> None:
    # 12 escalations in batches of 2, each batch held 0.3 s: one at a time takes 1.8 s.
    settings = _in_flight(settings, n=3, fetch=2, latency_ms=300.0)
    answers = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    frames = [f for f, _ in make_frames(12)]
    for frame in frames:
        await stream.store(escalation_of(frame, REPLY_TO_TEST, deadline_s=600))
    async with CloudWorker.from_settings(settings):
        started = time.monotonic()
        await wait_until(lambda: len(answers) >= 12, 20, "every answer")
        took = time.monotonic() - started
    assert sorted(a.frame_id for a in answers) == sorted(f.frame_id for f in frames)
    assert took < 1.5, f"three batches at once take about 0.6 s, not {took:.2f} s"


@pytest.mark.integration
async def test_draining_finishes_every_batch_in_flight(settings: Settings, nc: Client) -> None:
    settings = _in_flight(settings, n=3, fetch=1, latency_ms=500.0)
    answers = await collect(nc, REPLY_TO_TEST)
    stream = await SiteStream.declare(nc, settings.stream)
    frames = [f for f, _ in make_frames(3)]
    for frame in frames:
        await stream.store(escalation_of(frame, REPLY_TO_TEST, deadline_s=600))
    async with CloudWorker.from_settings(settings) as cloud:
        await wait_until(
            lambda: cloud.metrics.value("hybridfleet_cloud_escalations_total") == 3,
            10,
            "three batches fetched",
        )
        assert answers == []
    # drain() waited for the three batches in flight before it disconnected.
    await wait_until(lambda: len(answers) == 3, 10, "the answers of the batches in flight")
