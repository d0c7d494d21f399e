"""The model registry against a real nats-server: bundles in HF_BUNDLES, desired state in
HF_DESIRED, and the watcher a worker uses to follow it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from pipeline.inference.model import OnnxModel
from pipeline.messaging.server import NatsServer
from pipeline.release.bundle import load_bundle
from pipeline.release.desired import DesiredModelWatcher
from pipeline.release.manifest import MANIFEST_FILE, SIGNATURE_FILE
from pipeline.release.registry import BUNDLES_BUCKET, ModelRegistry, object_name
from pipeline.release.signing import generate_keypair
from schemas.errors import BundleError
from tests.release_helpers import edge_bundle, models_cli

pytestmark = pytest.mark.integration

EDGE_FILE = "edge-mlp32.onnx"
# A guard against a hang, not a timing assertion: each awaited change is already sent.
STEP_S = 10.0


@pytest.fixture(scope="module")
def edge() -> OnnxModel:
    return OnnxModel.load("edge")


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_keypair()


@pytest.fixture
def registry(nc: Client) -> ModelRegistry:
    return ModelRegistry(nc.jetstream())


@pytest.fixture
async def published(
    tmp_path: Path, registry: ModelRegistry, edge: OnnxModel, keys: tuple[str, str]
) -> AsyncIterator[list[str]]:
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.10.0"]
    for version in versions:
        await registry.publish(edge_bundle(tmp_path / "made", edge, keys[0], version))
    yield versions


async def test_publish_list_fetch(
    tmp_path: Path, registry: ModelRegistry, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    assert await registry.list() == []
    made = edge_bundle(tmp_path / "made", edge, keys[0], "1.1.0")
    listing = await registry.publish(made)
    sizes = {p.name: p.stat().st_size for p in made.iterdir()}
    assert (listing.tier, listing.name, listing.version) == ("edge", "digits-mlp32", "1.1.0")
    assert listing.files == tuple(sorted(sizes)) == (MANIFEST_FILE, SIGNATURE_FILE, EDGE_FILE)
    assert listing.size == sum(sizes.values())
    assert await registry.list() == [listing]

    fetched = await registry.fetch("edge", "1.1.0", tmp_path / "cache")
    assert fetched == tmp_path / "cache" / "edge" / "1.1.0"
    for name in sizes:
        assert (fetched / name).read_bytes() == (made / name).read_bytes()
    bundle = load_bundle(fetched, [keys[1]], tier="edge", version="1.1.0")
    assert bundle.load_model().version == "1.1.0"

    # A second fetch replaces the copy, leaving nothing else behind.
    (fetched / EDGE_FILE).write_bytes(b"damaged")
    assert await registry.fetch("edge", "1.1.0", tmp_path / "cache") == fetched
    load_bundle(fetched, [keys[1]])
    assert [p.name for p in (tmp_path / "cache" / "edge").iterdir()] == ["1.1.0"]


async def test_published_versions_never_change(
    tmp_path: Path, registry: ModelRegistry, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    first = edge_bundle(tmp_path / "a", edge, keys[0], "2.0.0")
    await registry.publish(first)
    await registry.publish(first)  # the same bytes again: fine, nothing changes

    different = edge_bundle(tmp_path / "b", edge, keys[0], "2.0.0", threshold=0.5)
    with pytest.raises(BundleError, match=r"edge/2\.0\.0 is already in HF_BUNDLES") as caught:
        await registry.publish(different)
    assert "bundle.json" in str(caught.value)
    assert "bump --version" in str(caught.value)

    fetched = await registry.fetch("edge", "2.0.0", tmp_path / "cache")
    assert (fetched / MANIFEST_FILE).read_bytes() == (first / MANIFEST_FILE).read_bytes()
    assert (fetched / SIGNATURE_FILE).read_bytes() == (first / SIGNATURE_FILE).read_bytes()


async def test_fetch_of_unknown_version(tmp_path: Path, registry: ModelRegistry) -> None:
    with pytest.raises(BundleError, match=r"edge/9\.9\.9 is not published"):
        await registry.fetch("edge", "9.9.9", tmp_path)
    assert not (tmp_path / "edge" / "9.9.9").exists()


async def test_fetch_refuses_a_bundle_stored_under_another_version(
    tmp_path: Path, nc: Client, registry: ModelRegistry, edge: OnnxModel, keys: tuple[str, str]
) -> None:
    made = edge_bundle(tmp_path / "made", edge, keys[0], "1.0.0")
    store = await nc.jetstream().create_object_store(BUNDLES_BUCKET)
    for path in made.iterdir():  # copied by hand to a name it was not signed for
        await store.put(object_name("edge", "3.0.0", path.name), path.read_bytes())
    with pytest.raises(BundleError, match=r"describes edge/1\.0\.0"):
        await registry.fetch("edge", "3.0.0", tmp_path / "cache")


async def test_listing_orders_versions_numerically(
    registry: ModelRegistry, published: list[str]
) -> None:
    assert [b.version for b in await registry.list()] == published


async def test_desired_state(registry: ModelRegistry, published: list[str]) -> None:
    assert await registry.desired("edge", "site1", "edge-1") is None
    await registry.set_desired("edge", "site1", "1.0.0")
    assert await registry.desired("edge", "site1", "edge-1") == "1.0.0"
    await registry.set_desired("edge", "site1", "1.1.0", worker="edge-1")
    assert await registry.desired("edge", "site1", "edge-1") == "1.1.0"
    assert await registry.desired("edge", "site1", "edge-2") == "1.0.0"
    assert await registry.desired("edge", "site1") == "1.0.0"
    await registry.clear_desired("edge", "site1", "edge-1")
    assert await registry.desired("edge", "site1", "edge-1") == "1.0.0"

    with pytest.raises(BundleError, match=r"edge/7\.0\.0 is not in HF_BUNDLES"):
        await registry.set_desired("edge", "site1", "7.0.0")
    with pytest.raises(BundleError, match="use site '_all'"):
        await registry.set_desired("cloud", "site1", "1.0.0")
    assert await registry.desired("edge", "site1") == "1.0.0"


async def _next(watcher: DesiredModelWatcher) -> str | None:
    return await asyncio.wait_for(anext(watcher), STEP_S)


async def test_watcher_follows_site_and_worker_keys(
    registry: ModelRegistry, published: list[str]
) -> None:
    await registry.set_desired("edge", "site1", "1.0.0")
    async with registry.watch_desired("edge", "site1", "edge-1") as watcher:
        assert await _next(watcher) == "1.0.0"  # the value set before the watch
        await registry.set_desired("edge", "site1", "1.1.0")
        assert await _next(watcher) == "1.1.0"
        await registry.set_desired("edge", "site1", "1.0.0", worker="edge-1")
        assert await _next(watcher) == "1.0.0"  # the override wins
        # While the override is set, a site change is not this worker's business: the
        # next value seen is the override's new one, not 1.2.0.
        await registry.set_desired("edge", "site1", "1.2.0")
        await registry.set_desired("edge", "site1", "1.10.0", worker="edge-1")
        assert await _next(watcher) == "1.10.0"
        await registry.clear_desired("edge", "site1", "edge-1")
        assert await _next(watcher) == "1.2.0"  # back to the site's version
        await registry.set_desired("edge", "site1", "1.0.0", worker="edge-2")  # someone else
        await registry.clear_desired("edge", "site1")
        assert await _next(watcher) is None
    with pytest.raises(StopAsyncIteration):
        await _next(watcher)


async def test_watcher_starts_with_the_override_when_both_are_set(
    registry: ModelRegistry, published: list[str]
) -> None:
    await registry.set_desired("edge", "site1", "1.0.0")
    await registry.set_desired("edge", "site1", "1.1.0", worker="edge-1")
    async with registry.watch_desired("edge", "site1", "edge-1") as watcher:
        assert await _next(watcher) == "1.1.0"


async def test_watcher_with_nothing_set_waits_for_the_first_value(
    registry: ModelRegistry, published: list[str]
) -> None:
    async with registry.watch_desired("edge", "site2", "edge-9") as watcher:
        pending = asyncio.ensure_future(_next(watcher))
        await registry.set_desired("edge", "site2", "1.2.0")
        assert await pending == "1.2.0"


async def test_cli_publish_list_desire(
    tmp_path: Path,
    nats_server: NatsServer,
    edge: OnnxModel,
    keys: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    made = edge_bundle(tmp_path / "made", edge, keys[0], "4.0.0")
    url = ["--url", nats_server.url]
    # The commands run their own event loop, so they run in a thread here.
    assert await asyncio.to_thread(models_cli, ["publish", str(made), *url]) == 0
    assert "edge/4.0.0 (digits-mlp32" in capsys.readouterr().out
    assert await asyncio.to_thread(models_cli, ["list", "--json", *url]) == 0
    (listing,) = json.loads(capsys.readouterr().out)
    assert listing["tier"] == "edge"
    assert (listing["name"], listing["version"]) == ("digits-mlp32", "4.0.0")
    argv = ["desire", "--tier", "edge", "--site", "site1", "--worker", "edge-1", "4.0.0", *url]
    assert await asyncio.to_thread(models_cli, argv) == 0
    assert capsys.readouterr().out.strip() == "model.edge.site1.edge-1 = 4.0.0"
    with pytest.raises(BundleError, match="--site is required"):
        models_cli(["desire", "--tier", "edge", "4.0.0", *url])
