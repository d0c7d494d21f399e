"""The model registry on NATS: bundles in an Object Store, desired versions in a KV bucket.

* Object Store bucket ``HF_BUNDLES``: a bundle's files under ``<tier>/<version>/<file>``.
  A version is published when its ``bundle.json`` is there; it is uploaded last, so a
  half-finished upload is never listed. Published versions are immutable.
* KV bucket ``HF_DESIRED``: the version a site's workers, or one worker, should run
  (pipeline/release/desired.py).

The registry moves bytes and never trusts them: a worker verifies what it fetched
with :func:`pipeline.release.bundle.load_bundle` before it serves it (docs/model-bundles.md).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BucketNotFoundError, DigestMismatchError, NotFoundError
from nats.js.object_store import ObjectStore

from pipeline.release.buckets import DESIRED_BUCKET, open_bucket
from pipeline.release.bundle import read_unverified, write_folder
from pipeline.release.desired import DesiredModelWatcher, desired_key, version_of
from pipeline.release.manifest import MANIFEST_FILE, SIGNATURE_FILE, BundleManifest
from schemas import subjects
from schemas.errors import BundleError

__all__ = ["BUNDLES_BUCKET", "BundleListing", "ModelRegistry", "object_name"]

log = logging.getLogger(__name__)

BUNDLES_BUCKET: Final = subjects.BUNDLES_BUCKET
_DIGEST_PREFIX: Final = "SHA-256="


def object_name(tier: str, version: str, filename: str) -> str:
    """The object name of one bundle file: ``<tier>/<version>/<filename>``."""
    return f"{tier}/{version}/{filename}"


@dataclass(frozen=True, slots=True)
class BundleListing:
    """One published bundle: its tier, model name, version, total bytes and file names."""

    tier: str
    name: str
    version: str
    size: int
    files: tuple[str, ...]


class ModelRegistry:
    """Publish, list and fetch bundles; read and write desired versions.

    ``js`` may point at another JetStream domain (``nc.jetstream(domain=...)``). The
    buckets are created on first use if they do not exist.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def publish(self, bundle_dir: Path) -> BundleListing:
        """Upload the bundle in ``bundle_dir``; what is now published.

        The bundle must be complete and its files must match ``bundle.json`` (the
        signature is the fetching worker's to check). Publishing an identical bundle
        again changes nothing. Raises :class:`BundleError` if that tier and version are
        already published with different bytes: versions are immutable.
        """
        manifest, contents = await asyncio.to_thread(read_unverified, Path(bundle_dir))
        tier, version = manifest.tier, manifest.version
        store = await self._bundles()
        published = await _info(store, object_name(tier, version, MANIFEST_FILE))
        if published is not None:
            differing = [
                name
                for name, data in contents.items()
                if not _same_bytes(await _info(store, object_name(tier, version, name)), data)
            ]
            if differing:
                raise BundleError(
                    f"{tier}/{version} is already in {BUNDLES_BUCKET} with a different "
                    f"{', '.join(differing)}; published versions never change: bump --version "
                    "and build a new bundle"
                )
        else:
            # bundle.json last: until it is stored, the version does not exist for anyone.
            order = [*manifest.files, SIGNATURE_FILE, MANIFEST_FILE]
            for name in order:
                await store.put(object_name(tier, version, name), contents[name])
            log.info("published %s/%s (%s)", tier, version, manifest.name)
        return _listing(manifest, {name: len(data) for name, data in contents.items()})

    async def list(self) -> builtins.list[BundleListing]:
        """Every published bundle, by tier then version."""
        store = await self._bundles()
        try:
            infos = await store.list(ignore_deletes=True)
        except NotFoundError:  # nats-py's answer for an empty bucket
            return []
        sizes: dict[tuple[str, str], dict[str, int]] = {}
        for info in infos:
            parts = info.name.split("/")
            if len(parts) == 3:
                sizes.setdefault((parts[0], parts[1]), {})[parts[2]] = info.size or 0
        listings = []
        for (tier, version), files in sorted(sizes.items(), key=_listing_order):
            if MANIFEST_FILE not in files:
                continue  # an upload in progress or one that died half-way
            name = object_name(tier, version, MANIFEST_FILE)
            try:
                manifest = BundleManifest.from_json(await _get(store, name), where=name)
            except BundleError as exc:
                log.warning("skipping %s/%s in the listing: %s", tier, version, exc)
                continue
            listings.append(_listing(manifest, files))
        return listings

    async def fetch(self, tier: str, version: str, dest_dir: Path) -> Path:
        """Download bundle ``tier``/``version`` into ``dest_dir/<tier>/<version>/``; that path.

        The folder appears complete or not at all (a temp folder renamed into place);
        an older copy there is replaced. Nothing is verified beyond transport
        checksums: call :func:`pipeline.release.bundle.load_bundle` on the result.
        """
        store = await self._bundles()
        where = object_name(tier, version, MANIFEST_FILE)
        manifest_bytes = await _get(store, where)
        manifest = BundleManifest.from_json(manifest_bytes, where=where)
        if (manifest.tier, manifest.version) != (tier, version):
            # Also keeps a bad ``version`` argument from naming a folder outside dest_dir.
            raise BundleError(
                f"{where} describes {manifest.tier}/{manifest.version}; it was published "
                "under the wrong name, republish it"
            )
        contents = {MANIFEST_FILE: manifest_bytes}
        for name in (SIGNATURE_FILE, *manifest.files):
            contents[name] = await _get(store, object_name(tier, version, name))
        target = Path(dest_dir) / tier / version
        await asyncio.to_thread(write_folder, target, contents)
        return target

    async def set_desired(
        self, tier: str, site: str, version: str, worker: str | None = None
    ) -> None:
        """Ask the site's workers (or one ``worker``) to run ``version``.

        Raises :class:`BundleError` if that version is not published for ``tier``.
        """
        key = desired_key(tier, site, worker)
        store = await self._bundles()
        if await _info(store, object_name(tier, version, MANIFEST_FILE)) is None:
            raise BundleError(
                f"{tier}/{version} is not in {BUNDLES_BUCKET}; publish it first "
                "(`hybridfleet models publish DIR`) or check `hybridfleet models list`"
            )
        kv = await open_bucket(self._js, DESIRED_BUCKET)
        await kv.put(key, version.encode())

    async def clear_desired(self, tier: str, site: str, worker: str | None = None) -> None:
        """Delete a desired version: a worker override falls back to its site's version."""
        kv = await open_bucket(self._js, DESIRED_BUCKET)
        await kv.delete(desired_key(tier, site, worker))

    async def desired(self, tier: str, site: str, worker: str | None = None) -> str | None:
        """The version ``worker`` (or the whole site) should run; None if nothing is set."""
        kv = await open_bucket(self._js, DESIRED_BUCKET)
        keys = [desired_key(tier, site, worker)] if worker else []
        for key in [*keys, desired_key(tier, site)]:
            with contextlib.suppress(NotFoundError):  # missing or deleted
                value = version_of((await kv.get(key)).value)
                if value is not None:
                    return value
        return None

    def watch_desired(self, tier: str, site: str, worker: str | None = None) -> DesiredModelWatcher:
        """A not yet started :class:`DesiredModelWatcher` for one worker."""
        return DesiredModelWatcher(self._js, tier, site, worker)

    async def _bundles(self) -> ObjectStore:
        try:
            return await self._js.object_store(BUNDLES_BUCKET)
        except BucketNotFoundError:
            return await self._js.create_object_store(
                BUNDLES_BUCKET,
                js_api.ObjectStoreConfig(
                    description="hybridfleet model bundles: <tier>/<version>/<file>",
                    storage=js_api.StorageType.FILE,
                ),
            )


async def _info(store: ObjectStore, name: str) -> js_api.ObjectInfo | None:
    try:
        return await store.get_info(name)
    except NotFoundError:
        return None


async def _get(store: ObjectStore, name: str) -> bytes:
    try:
        result = await store.get(name)
    except NotFoundError:
        tier_version = name.rsplit("/", 1)[0]
        raise BundleError(
            f"{name} is not in {BUNDLES_BUCKET}: {tier_version} is not published (see "
            "`hybridfleet models list`)"
        ) from None
    except DigestMismatchError:
        raise BundleError(f"{name}: download does not match its stored digest; retry") from None
    return result.data or b""


def _same_bytes(info: js_api.ObjectInfo | None, data: bytes) -> bool:
    if info is None or not info.digest or not info.digest.upper().startswith(_DIGEST_PREFIX):
        return False
    stored = base64.urlsafe_b64decode(info.digest[len(_DIGEST_PREFIX) :])
    return info.size == len(data) and stored == hashlib.sha256(data).digest()


def _listing(manifest: BundleManifest, sizes: Mapping[str, int]) -> BundleListing:
    return BundleListing(
        tier=manifest.tier,
        name=manifest.name,
        version=manifest.version,
        size=sum(sizes.values()),
        files=tuple(sorted(sizes)),
    )


def _listing_order(item: tuple[tuple[str, str], object]) -> tuple[str, list[tuple[int, str]]]:
    """Tier, then version with numeric parts compared as numbers (1.10.0 after 1.9.0)."""
    (tier, version), _ = item
    parts = re.split(r"[.\-_]", version)
    return tier, [(int(p), "") if p.isdigit() else (-1, p) for p in parts]
