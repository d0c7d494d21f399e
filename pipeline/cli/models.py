"""``hybridfleet models keygen | bundle | publish | list | desire``: model bundles by hand.

Wired into the ``models`` command group of :mod:`pipeline.cli.main` by
:func:`add_model_commands`. Each command returns an exit code; errors are
:class:`~schemas.errors.HybridfleetError` subclasses, which the main entry point
prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Final

import orjson

from pipeline.config import EdgeSettings, load_settings
from pipeline.inference.manifest import DEFAULT_MANIFEST
from pipeline.inference.model import OnnxModel
from pipeline.messaging.natsio import connect
from pipeline.release.bundle import make_bundle
from pipeline.release.desired import CLOUD_SITE, desired_key
from pipeline.release.manifest import TIERS
from pipeline.release.registry import BUNDLES_BUCKET, ModelRegistry
from pipeline.release.signing import generate_keypair
from schemas.errors import BundleError, ConfigError

__all__ = ["add_model_commands"]

_KEY_NAME: Final = "bundle-signing"


def add_model_commands(models: Any) -> None:
    """Add the bundle commands to the ``models`` subparsers (``add_subparsers()`` result)."""

    def with_nats(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML settings file (HYBRIDFLEET_* env vars override)")
        p.add_argument("--url", help="NATS URL (overrides the config)")

    p = models.add_parser("keygen", help="make an Ed25519 keypair for signing bundles")
    p.add_argument("--out", required=True, help="folder for bundle-signing.key and .pub")
    p.set_defaults(run=keygen)

    p = models.add_parser("bundle", help="make a signed bundle from a models/manifest.json entry")
    p.add_argument("--tier", required=True, choices=TIERS)
    p.add_argument("--role", required=True, help="entry of the manifest, e.g. edge or cloud")
    p.add_argument("--version", required=True, help="the bundle's version, e.g. 1.1.0")
    p.add_argument("--key", required=True, help="private key file (from keygen)")
    p.add_argument("--out", required=True, help="the bundle goes to OUT/<tier>/<version>/")
    p.add_argument("--manifest", help=f"models manifest (default: {DEFAULT_MANIFEST})")
    p.add_argument("--commit", default="unknown", help="git commit of the training script")
    p.add_argument(
        "--threshold",
        type=float,
        default=EdgeSettings().default_threshold,
        help="default confidence threshold shipped with the model",
    )
    p.set_defaults(run=bundle)

    p = models.add_parser("publish", help=f"upload a bundle folder to {BUNDLES_BUCKET}")
    p.add_argument("bundle_dir", help="a folder made by `models bundle`")
    with_nats(p)
    p.set_defaults(run=publish)

    p = models.add_parser("list", help=f"list the bundles in {BUNDLES_BUCKET}")
    p.add_argument("--json", action="store_true", help="print one JSON array")
    with_nats(p)
    p.set_defaults(run=list_bundles)

    p = models.add_parser("desire", help="set the model version a site or worker should run")
    p.add_argument("--tier", required=True, choices=TIERS)
    p.add_argument("--site", help=f"site name (cloud: {CLOUD_SITE}, the default)")
    p.add_argument("--worker", help="only this worker (a canary); overrides the site's version")
    p.add_argument("version")
    with_nats(p)
    p.set_defaults(run=desire)


def keygen(args: argparse.Namespace) -> int:
    """Write ``bundle-signing.key`` (private, mode 600) and ``.pub``; print the public key."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    private, public = generate_keypair()
    private_path, public_path = out / f"{_KEY_NAME}.key", out / f"{_KEY_NAME}.pub"
    if private_path.exists() or public_path.exists():
        raise BundleError(f"{private_path} or {public_path} exists; not overwriting a key")
    # O_EXCL: never replace a key; 0o600: the private key is readable by its owner only.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(private + "\n")
    public_path.write_text(public + "\n", encoding="ascii")
    print(f"private key  {private_path}  (keep it secret; never commit it)")
    print(f"public key   {public}")
    print(f"trust it     HYBRIDFLEET_EDGE_TRUSTED_KEYS={public}  (and CLOUD_, comma-separated)")
    return 0


def bundle(args: argparse.Namespace) -> int:
    """Bundle the model of one manifest entry, checked against the manifest; print the path."""
    manifest = Path(args.manifest) if args.manifest else DEFAULT_MANIFEST
    model = OnnxModel.load(args.role, manifest)  # the file must match manifest.json
    declaration = model.declaration
    if declaration.heldout_accuracy is None:
        raise BundleError(
            f"{manifest}: models.{args.role}.heldout_accuracy is not recorded; a bundle needs it"
        )
    made = declaration.provenance
    heldout: dict[str, float] = {"accuracy": declaration.heldout_accuracy}
    if isinstance(made.get("heldout_size"), int):
        heldout["size"] = made["heldout_size"]
    calibration = made.get("calibration")
    if isinstance(calibration, Mapping) and "heldout_ece_after" in calibration:
        heldout["ece"] = calibration["heldout_ece_after"]
    try:
        signing_key = Path(args.key).read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"--key {args.key}: cannot read the private key: {exc}") from None
    path = make_bundle(
        Path(args.out),
        args.tier,
        model.path,
        declaration,
        version=args.version,
        default_threshold=args.threshold,
        heldout=heldout,
        trained_by=str(made.get("script") or "unknown"),
        commit=args.commit,
        signing_key=signing_key,
    )
    print(path)
    return 0


def publish(args: argparse.Namespace) -> int:
    """Upload a bundle folder."""

    async def run(registry: ModelRegistry) -> int:
        listing = await registry.publish(Path(args.bundle_dir))
        print(
            f"{listing.tier}/{listing.version} ({listing.name}, {listing.size} B) "
            f"is in {BUNDLES_BUCKET}"
        )
        return 0

    return _with_registry(args, "hybridfleet-models-publish", run)


def list_bundles(args: argparse.Namespace) -> int:
    """Print the published bundles, as a table or JSON."""

    async def run(registry: ModelRegistry) -> int:
        listings = await registry.list()
        if args.json:
            print(orjson.dumps([asdict(item) for item in listings]).decode())
            return 0
        print(f"{'tier':<7} {'name':<20} {'version':<12} {'bytes':>10}  files")
        for item in listings:
            print(
                f"{item.tier:<7} {item.name:<20} {item.version:<12} {item.size:>10}  "
                + ", ".join(item.files)
            )
        return 0

    return _with_registry(args, "hybridfleet-models-list", run)


def desire(args: argparse.Namespace) -> int:
    """Set the desired version of a site (or of one worker)."""
    site = args.site or (CLOUD_SITE if args.tier == "cloud" else None)
    if site is None:
        raise BundleError(f"--site is required for tier {args.tier}")
    key = desired_key(args.tier, site, args.worker)  # fail on bad names before connecting

    async def run(registry: ModelRegistry) -> int:
        await registry.set_desired(args.tier, site, args.version, args.worker)
        print(f"{key} = {args.version}")
        return 0

    return _with_registry(args, "hybridfleet-models-desire", run)


def _with_registry(
    args: argparse.Namespace, name: str, body: Callable[[ModelRegistry], Awaitable[int]]
) -> int:
    settings = load_settings(args.config)
    if args.url:
        settings = replace(settings, nats=replace(settings.nats, url=args.url))

    async def main() -> int:
        # natsio.connect retries forever (right for a worker); a command gives up.
        wait = 2 * settings.nats.connect_timeout_s
        try:
            nc = await asyncio.wait_for(connect(settings.nats, name), wait)
        except TimeoutError:
            raise ConfigError(
                f"nats.url: no NATS server answered at {settings.nats.url} within {wait:g} s"
            ) from None
        try:
            return await body(ModelRegistry(nc.jetstream()))
        finally:
            await nc.close()

    return asyncio.run(main())
