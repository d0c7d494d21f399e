"""Follow the desired model version of one worker: fetch, verify, hand over for a swap.

``ModelUpdater.run`` watches the worker's key in ``HF_DESIRED`` (docs/model-bundles.md).
For each new version it fetches the bundle from ``HF_BUNDLES`` into a local cache and
verifies and loads it in a thread (signature, hashes, ONNX input), then hands the
model to the worker's ``on_swap``. Workers take the model for each batch when the
batch starts, so no batch ever runs on two models and every result names the version
that produced it. When neither key is set, the worker goes back to the model it
started with.

Any failure (unreachable registry, bad signature, wrong hash) keeps the running
model: the updater logs why, counts it, publishes a ``bundle_refused`` event on
``fleet.events`` and waits for the next change. A watch that dies (a site cut off from
the hub) is restarted after a pause; its first value is the version set now, so a site
catches up with whatever changed while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from pipeline.inference.model import OnnxModel
from pipeline.release.bundle import load_bundle
from pipeline.release.desired import DesiredModelWatcher
from pipeline.release.registry import ModelRegistry
from schemas import subjects
from schemas.errors import HybridfleetError

__all__ = ["FLEET_EVENTS", "ModelUpdater", "bundle_cache"]

log = logging.getLogger(__name__)

FLEET_EVENTS = subjects.FLEET_EVENTS
_RETRY_S = 2.0


def bundle_cache(setting: str, site: str, worker: str) -> Path:
    """The local bundle folder: the ``bundle_dir`` setting, or one in the temp dir."""
    if setting:
        return Path(setting)
    return Path(tempfile.gettempdir()) / "hybridfleet-bundles" / f"{site}-{worker}"


class ModelUpdater:
    """Hands a worker (``on_swap``) each verified model it should run next."""

    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        *,
        tier: str,
        site: str,
        worker: str,
        trusted_keys: tuple[str, ...],
        cache_dir: Path,
        base: OnnxModel,
        on_swap: Callable[[OnnxModel], None],
        on_refused: Callable[[str], None] | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        """``js`` reaches the registry (the hub's domain from a site); ``base`` is the
        model the worker started with, run again when no version is desired.
        ``intra_op_threads``, if given, replaces each bundle's declared threads (the
        worker's setting, as it did for ``base``)."""
        self._nc = nc
        self._js = js
        self._tier, self._site, self._worker = tier, site, worker
        self._trusted = trusted_keys
        self._cache = cache_dir
        self._base = base
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._intra_op_threads = intra_op_threads
        self._current_version = base.version

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the desired version until ``stop`` is set (restarting dead watches)."""
        while not stop.is_set():
            try:
                await self._follow(stop)
            except Exception as exc:
                log.warning("watching the desired %s model failed: %r; retrying", self._tier, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _RETRY_S)

    async def _follow(self, stop: asyncio.Event) -> None:
        watcher = DesiredModelWatcher(self._js, self._tier, self._site, self._worker)
        async with watcher:
            stopper = asyncio.create_task(_stop_on(stop, watcher))
            try:
                async for version in watcher:
                    await self._want(version)
            finally:
                stopper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopper

    async def _want(self, version: str | None) -> None:
        if version is None:
            if self._current_version != self._base.version:
                log.info("no %s model desired any more: back to %s", self._tier, self._base)
                self._hand_over(self._base)
            return
        if version == self._current_version:
            return
        try:
            folder = await ModelRegistry(self._js).fetch(self._tier, version, self._cache)
            bundle = await asyncio.to_thread(
                load_bundle,
                folder,
                self._trusted,
                tier=self._tier,
                version=version,
                intra_op_threads=self._intra_op_threads,
            )
        except (HybridfleetError, OSError) as exc:
            await self._refuse(version, str(exc))
            return
        except Exception as exc:  # e.g. the registry is out of reach
            await self._refuse(version, f"could not fetch the bundle: {exc!r}")
            return
        log.info("%s model %s verified (signed by %s)", self._tier, version, bundle.signer[:16])
        self._hand_over(bundle.load_model())

    def _hand_over(self, model: OnnxModel) -> None:
        self._current_version = model.version
        self._on_swap(model)

    async def _refuse(self, version: str, reason: str) -> None:
        log.error(
            "refusing %s model %s, keeping %s: %s",
            self._tier,
            version,
            self._current_version,
            reason,
        )
        if self._on_refused is not None:
            self._on_refused(reason)
        event = {
            "schema": 1,
            "at": time.time(),
            "kind": "bundle_refused",
            "tier": self._tier,
            "site": self._site,
            "worker": self._worker,
            "version": version,
            "running": self._current_version,
            "reason": reason,
        }
        with contextlib.suppress(Exception):
            await self._nc.publish(FLEET_EVENTS, orjson.dumps(event))


async def _stop_on(stop: asyncio.Event, watcher: DesiredModelWatcher) -> None:
    await stop.wait()
    await watcher.close()
