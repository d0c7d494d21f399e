"""Desired versions: which model a site's workers, or one worker, should run.

Desired versions live in the KV bucket ``HF_DESIRED`` (pipeline/release/buckets.py):
``model.<tier>.<site>`` for a site's workers, ``model.<tier>.<site>.<worker>`` to
override it for one worker (a canary). Cloud workers use the site ``_all``.
:func:`desired_key` names a key after checking the tier and names;
:class:`DesiredModelWatcher` follows one worker's effective version.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from pipeline.release.buckets import DESIRED_BUCKET, open_bucket, override_key, site_key
from pipeline.release.manifest import TIERS
from pipeline.service import Service
from schemas import subjects
from schemas.errors import BundleError
from schemas.subjects import check_token

__all__ = ["CLOUD_SITE", "DesiredModelWatcher", "desired_key", "version_of"]

CLOUD_SITE: Final = subjects.CLOUD_SITE


def desired_key(tier: str, site: str, worker: str | None = None) -> str:
    """The KV key of a desired version: ``model.<tier>.<site>[.<worker>]``.

    Raises :class:`BundleError` for an unknown tier or a cloud site other than
    ``_all``, and :class:`~schemas.errors.SchemaError` for a site or worker name that
    is not a safe token.
    """
    if tier not in TIERS:
        raise BundleError(f"tier {tier!r} is not one of {list(TIERS)}")
    check_token(site, "site")
    if tier == "cloud" and site != CLOUD_SITE:
        raise BundleError(f"cloud workers are not per site: use site {CLOUD_SITE!r}, not {site!r}")
    return site_key(tier, site) if worker is None else override_key(tier, site, worker)


class DesiredModelWatcher(Service):
    """The version one worker should run, yielded each time it changes.

    Watches ``model.<tier>.<site>`` and, with a ``worker``, ``model.<tier>.<site>.<worker>``,
    which wins while it is set. The first value yielded is the version set when the
    watch started, if any; after that, each change of the effective version, None
    when neither key is set any more. The state is one value per key: a reader that
    falls behind skips superseded versions and sees only the latest one.

    Use as ``async with watcher: async for version in watcher: ...``, or call
    :meth:`start` and :meth:`close` (idempotent) yourself.
    """

    def __init__(
        self, js: JetStreamContext, tier: str, site: str, worker: str | None = None
    ) -> None:
        self._js = js
        site_key = desired_key(tier, site)
        # Most specific first: the first key with a value wins.
        self._keys = [desired_key(tier, site, worker), site_key] if worker else [site_key]
        self._values: dict[str, str | None] = dict.fromkeys(self._keys)
        self._initial_done: set[str] = set()
        self._changed = asyncio.Event()
        self._watchers: dict[str, KeyValue.KeyWatcher] = {}
        self._failure: BaseException | None = None
        self._last: str | None = None

    @property
    def name(self) -> str:
        return f"watch {self._keys[0]}"

    async def _open(self) -> None:
        """Subscribe to the keys; returns when the watches are in place."""
        kv = await open_bucket(self._js, DESIRED_BUCKET)
        try:
            for key in self._keys:
                self._watchers[key] = await kv.watch(key)
        except BaseException:
            await self._release()
            raise

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        for key, watcher in self._watchers.items():
            tasks.create_task(self._pump(key, watcher), name=f"watch {key}")

    async def _release(self) -> None:
        """End the watches; an ``async for`` over this watcher then ends."""
        for watcher in self._watchers.values():
            with contextlib.suppress(Exception):  # the connection may already be gone
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py
        self._watchers.clear()
        self._changed.set()

    async def drain(self) -> None:
        """Nothing to finish: the same as ``close()``."""
        await self.close()

    def __aiter__(self) -> DesiredModelWatcher:
        return self

    async def __anext__(self) -> str | None:
        if self._runner is None:
            raise RuntimeError("DesiredModelWatcher: call start() (or use async with) first")
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed or self._draining:
                raise StopAsyncIteration
            # Nothing before both keys' initial values are in: a worker override set
            # at start must not be preceded by its site's version.
            if len(self._initial_done) == len(self._keys):
                current = self._effective()
                if current != self._last:
                    self._last = current
                    return current
            self._changed.clear()
            await self._changed.wait()

    def _effective(self) -> str | None:
        return next((v for v in (self._values[k] for k in self._keys) if v is not None), None)

    async def _pump(self, key: str, watcher: KeyValue.KeyWatcher) -> None:
        """Keep ``self._values[key]`` current; ends when the watcher is stopped."""
        try:
            async for entry in watcher:
                if entry is None:  # nats-py's marker: the initial values are all in
                    self._initial_done.add(key)
                elif entry.operation in (KV_DEL, KV_PURGE):
                    self._values[key] = None
                else:
                    self._values[key] = version_of(entry.value)
                self._changed.set()
        except Exception as exc:  # surfaced to the reader by __anext__
            self._failure = exc
            self._changed.set()


def version_of(value: bytes | None) -> str | None:
    """A KV value as a version string; empty means unset."""
    text = (value or b"").decode("utf-8", "replace").strip()
    return text or None
