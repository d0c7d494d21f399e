"""How a deployment runs the edge's models: settings checked at start, applied at load.

``edge.providers``, ``edge.intra_op_threads`` and ``edge.max_batch`` replace the
manifest entry's values for the declared models of ``edge.models`` (the random-weight
classifier of models/random here, in real onnxruntime sessions); ``edge.intra_op_threads``
also sets the region classifier's threads, and those of a signed bundle that replaces
it. The same settings of the cloud are in test_cloud_deployment.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from nats.aio.client import Client

from edge_worker.models import edge_analyser
from edge_worker.worker import EdgeWorker
from models.random.build import HERE as RANDOM_MODELS
from pipeline.config import EdgeSettings, Settings, load_settings, usable_cores
from pipeline.inference.analysis import Look, RegionClassifier
from pipeline.inference.chain import ModelChain
from pipeline.inference.manifest import load_declaration
from pipeline.inference.model import OnnxModel
from pipeline.inference.runtime import DeclaredModel
from pipeline.release.modelswap import ModelUpdater
from pipeline.release.registry import ModelRegistry
from pipeline.release.signing import generate_keypair
from schemas.errors import ConfigError
from schemas.messages import Region
from tests.helpers import wait_until
from tests.release_helpers import edge_bundle

MANIFEST = RANDOM_MODELS / "manifest.json"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def _edge(**env: str) -> EdgeSettings:
    return load_settings(env={f"HYBRIDFLEET_EDGE_{k.upper()}": v for k, v in env.items()}).edge


def _threads(model: DeclaredModel | OnnxModel) -> int:
    """The intra-op threads of ``model``'s session, as onnxruntime itself reports them."""
    return int(model._session.get_session_options().intra_op_num_threads)


# ------------------------------------------------------------------ settings


def test_the_settings_are_read_from_the_environment_and_default_to_the_manifest() -> None:
    default = EdgeSettings()
    assert (default.provider_list, default.intra_op_threads, default.max_batch) == ((), 0, 0)
    cfg = _edge(
        models="classify",
        providers=f" {CUDA}, {CPU} ",
        intra_op_threads="4",
        max_batch="16",
        max_batch_size="64",
    )
    assert cfg.provider_list == (CUDA, CPU)
    assert (cfg.intra_op_threads, cfg.max_batch, cfg.max_batch_size) == (4, 16, 64)


def test_the_settings_are_read_from_toml_for_both_tiers(tmp_path: Path) -> None:
    path = tmp_path / "hybridfleet.toml"
    path.write_text(
        '[edge]\nintra_op_threads = 3\n\n[cloud]\nmodels = "classify"\n'
        f'providers = "{CPU}"\nintra_op_threads = 5\nmax_batch = 128\n'
    )
    s = load_settings(path, env={"HYBRIDFLEET_EDGE_INTRA_OP_THREADS": "2"})
    assert (s.edge.intra_op_threads, s.edge.provider_list, s.edge.max_batch) == (2, (), 0)
    assert s.cloud.provider_list == (CPU,)
    assert (s.cloud.intra_op_threads, s.cloud.max_batch) == (5, 128)


@pytest.mark.parametrize("section", ["edge", "cloud"])
def test_intra_op_threads_alone_suits_the_region_classifier(section: str) -> None:
    s = load_settings(env={f"HYBRIDFLEET_{section.upper()}_INTRA_OP_THREADS": "2"})
    assert getattr(s, section).intra_op_threads == 2


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"providers": CUDA}, "with edge.models empty the region classifier runs on"),
        ({"max_batch": "64"}, "set edge.models or leave them unset"),
        ({"max_batch": "16"}, "to size batches of frames, set edge.max_batch_size"),
        ({"providers": "CUDAExecutionProvidr", "models": "classify"}, "did you mean"),
        ({"max_batch": "5000", "models": "classify"}, "edge.max_batch"),
        ({"intra_op_threads": "257"}, "edge.intra_op_threads"),
        ({"intra_op_threads": "-1"}, "edge.intra_op_threads"),
    ],
)
def test_settings_that_cannot_hold_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _edge(**env)


def test_auto_inference_threads_are_the_usable_cores() -> None:
    if hasattr(os, "sched_getaffinity"):
        assert usable_cores() == len(os.sched_getaffinity(0))
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    assert EdgeSettings().threads == min(usable_cores(), 64)
    assert EdgeSettings(inference_threads=3).threads == 3


# ------------------------------------------------------------------ the models


def test_the_declared_chain_runs_with_the_overrides() -> None:
    declared, _ = load_declaration("classify", MANIFEST)
    cfg = replace(
        EdgeSettings(),
        model_manifest=str(MANIFEST),
        models="classify",
        providers=CPU,
        intra_op_threads=2,
        max_batch=3,
    )
    analyser = edge_analyser(cfg)
    assert isinstance(analyser, ModelChain)
    (stage,) = analyser.stages
    assert stage.declaration.runtime.intra_op_threads == 2 == _threads(stage)
    assert stage.declaration.input.max_batch == 3 != declared.input.max_batch
    assert replace(stage.declaration, runtime=declared.runtime, input=declared.input) == declared
    # Seven crops run in calls of at most three; each gets its answer.
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8) for i in range(7)]
    looks = [Look(image, (Region(0, 0, 50, image.shape[0]),)) for image in images]
    assert len(analyser.analyse(looks)) == 7


def test_without_overrides_the_models_run_as_declared() -> None:
    cfg = replace(EdgeSettings(), model_manifest=str(MANIFEST), models="classify")
    analyser = edge_analyser(cfg)
    assert isinstance(analyser, ModelChain)
    assert analyser.stages[0].declaration == load_declaration("classify", MANIFEST)[0]
    assert _threads(analyser.stages[0]) == 1


def test_the_region_classifier_runs_on_intra_op_threads() -> None:
    analyser = edge_analyser(replace(EdgeSettings(), intra_op_threads=2))
    assert isinstance(analyser, RegionClassifier)
    assert _threads(analyser.model) == 2
    default = edge_analyser(EdgeSettings())
    assert isinstance(default, RegionClassifier) and _threads(default.model) == 1


def test_the_edge_worker_builds_its_models_from_the_settings() -> None:
    edge = replace(
        EdgeSettings(),
        model_manifest=str(MANIFEST),
        models="classify",
        intra_op_threads=2,
        face_blur=False,
    )
    worker = EdgeWorker.from_settings(replace(Settings(), edge=edge))
    assert isinstance(worker.analyser, ModelChain)
    assert _threads(worker.analyser.stages[0]) == 2


@pytest.mark.integration
async def test_a_bundle_swapped_in_runs_on_the_same_threads(tmp_path: Path, nc: Client) -> None:
    base = OnnxModel.load("edge", intra_op_threads=2)
    private, public = generate_keypair()
    js = nc.jetstream()
    registry = ModelRegistry(js)
    await registry.publish(edge_bundle(tmp_path / "made", base, private, "1.1.0"))
    swapped: list[OnnxModel] = []
    updater = ModelUpdater(
        nc,
        js,
        tier="edge",
        site="site1",
        worker="edge-1",
        trusted_keys=(public,),
        cache_dir=tmp_path / "cache",
        base=base,
        on_swap=swapped.append,
        intra_op_threads=2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(updater.run(stop))
    try:
        await registry.set_desired("edge", "site1", "1.1.0")
        await wait_until(lambda: bool(swapped), 10, "the bundle swapped in")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    (model,) = swapped
    assert model.version == "1.1.0" and _threads(model) == 2
