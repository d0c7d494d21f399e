"""``hybridfleet site``, ``infer``, ``tail`` and ``dead-letters``: running one site, and
an operator's day without the ``nats`` CLI.

Every command that talks to a running site finds its server as ``pipeline.cli.target``
says: ``--url``, ``--fleet DIR`` (``--site``'s server, or the hub's, with the
operator's credentials) or the settings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import uvloop
from nats.aio.client import Client

from pipeline.cli.options import options_from
from pipeline.cli.target import add_target_arguments, connect_once, target_url
from pipeline.config import load_settings
from pipeline.fleet.auth import fleet_url
from schemas.errors import ConfigError
from schemas.messages import DeadLetter, PrivacyClass

__all__ = ["add_ops_commands"]


def _with_target(p: argparse.ArgumentParser, *, site_default: str | None = "site1") -> None:
    add_target_arguments(
        p,
        url_help="NATS URL of the site's server (user:password@ if needed)",
        fleet_help="a `fleet up` working directory: use --site's server and the operator's login",
    )
    p.add_argument("--site", default=site_default, help=f"the site (default: {site_default})")


# ---------------------------------------------------------------- site


def _site(args: argparse.Namespace) -> int:
    """A nats-server with JetStream on loopback, a cloud worker and an edge worker,
    started in that order and run until Ctrl-C or SIGTERM; then the edge drains,
    the cloud finishes its batch, and the server stops. Prints the URL and subjects.
    """
    from pipeline.fleet.site import SiteOptions, run_site

    options = options_from(SiteOptions, args, settings=load_settings(args.config))

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_site(options, stop)

    return uvloop.run(main())


# ---------------------------------------------------------------- infer


async def _infer(args: argparse.Namespace) -> int:
    from pipeline.tools import probe as ops

    request = options_from(ops.FrameRequest, args, privacy=PrivacyClass(args.privacy))
    truth: tuple[int, ...] | None = None
    if args.image:
        regions = tuple(ops.parse_region(r) for r in args.region or ())
        frame = ops.image_frame(ops.load_image(Path(args.image)), request, regions)
    else:
        frame, truth = ops.simulated_frame(request, args.seed)
    settings = load_settings(args.config)
    nc = await connect_once(target_url(args, args.site), settings, "hybridfleet-infer")
    try:
        result = await ops.infer(nc, frame, args.timeout or args.deadline_ms / 1000 + 5.0)
    finally:
        await nc.close()
    if args.json:
        from schemas.jsonform import to_json

        record = orjson.loads(to_json(result))
        record.pop("scores", None)
        if truth is not None:
            record["truth"] = list(truth)
        print(orjson.dumps(record).decode())
    else:
        print(ops.result_line(result) + (f" (true labels {list(truth)})" if truth else ""))
    return 0


# ---------------------------------------------------------------- tail


async def _tail(args: argparse.Namespace) -> int:
    from pipeline.tools import probe as ops

    def on_event(event: ops.Event) -> None:
        line, record = ops.describe(event)
        print(orjson.dumps(record).decode() if args.json else line, flush=True)

    def ready() -> None:
        subjects = ", ".join(ops.tail_subjects(args.site).values())
        print(f"following {subjects}", file=sys.stderr, flush=True)

    if args.fleet and args.site == "*":
        raise ConfigError("with --fleet, name one site: each site has its own server")
    settings = load_settings(args.config)
    nc = await connect_once(target_url(args, args.site), settings, "hybridfleet-tail")
    try:
        await ops.follow(
            nc, args.site, on_event, count=args.count, seconds=args.seconds, ready=ready
        )
    finally:
        await nc.close()
    return 0


# ---------------------------------------------------------------- dead letters


async def _dead_letters(args: argparse.Namespace) -> int:
    from pipeline.tools import deadletters as dl

    stream, subject = dl.dead_letter_stream(args.stage, args.site)
    # The cloud's dead letters of a fleet are at the hub; the edge's at the site.
    where = None if (args.stage == "cloud" and args.fleet) else args.site
    settings = load_settings(args.config)
    nc = await connect_once(target_url(args, where), settings, "hybridfleet-dead-letters")
    publishers: dict[str, Client] = {}

    async def publisher(letter: DeadLetter) -> Client:
        if not args.fleet or where is not None:
            return nc
        if letter.site not in publishers:  # an escalation goes back in at its site
            url = fleet_url(args.fleet, letter.site, "operator")
            publishers[letter.site] = await connect_once(url, settings, "hybridfleet-redrive")
        return publishers[letter.site]

    try:
        js = nc.jetstream()
        if args.dead_letters_command == "list":
            async for stored in dl.read_letters(js, stream, subject, limit=args.limit):
                _print_letter(dl.letter_record(stored), args.json)
            return 0
        if args.all:
            letters = [s async for s in dl.read_letters(js, stream, subject, limit=args.limit)]
        else:
            letters = await dl.fetch_letters(js, stream, args.seq or ())
        for done in await dl.redrive(nc, js, letters, keep=args.keep, publisher=publisher):
            record = {**dl.letter_record(done.stored), "redrive": done.outcome}
            if args.json:
                print(orjson.dumps(record).decode())
            else:
                print(f"{stream} #{done.stored.seq}: {done.outcome} {done.detail}")
        return 0
    finally:
        for client in (nc, *publishers.values()):
            await client.close()


def _print_letter(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(record).decode())
    elif "error" in record:
        print(f"#{record['seq']} unreadable record: {record['error']}")
    else:
        print(
            f"#{record['seq']} {record['stage']} {record['site']} {record['subject']} "
            f"({record['bytes']} bytes): {record['reason']}"
        )


# ---------------------------------------------------------------- parsers


def add_ops_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``site``, ``infer``, ``tail`` and ``dead-letters`` to ``hybridfleet``."""
    from pipeline.fleet.site import DEFAULT_SITE_WORKDIR

    p = sub.add_parser(
        "site",
        help="run one site (nats-server, cloud and edge worker) until SIGTERM",
        description=_site.__doc__,
    )
    p.add_argument("--config", help="TOML settings file for both workers")
    p.add_argument("--site", default="site1")
    p.add_argument("--port", type=int, default=4222, help="client port (0: any free one)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_SITE_WORKDIR,
        help=f"server config, log and JetStream store (default: ./{DEFAULT_SITE_WORKDIR})",
    )
    p.add_argument("--edge-metrics-port", type=int, help="serve the edge's Prometheus metrics")
    p.add_argument("--cloud-metrics-port", type=int, help="serve the cloud's Prometheus metrics")
    p.add_argument("--metrics-addr", default="127.0.0.1")
    p.set_defaults(run=_site)

    p = sub.add_parser("infer", help="send one frame to infer.<site> and print its result")
    _with_target(p)
    p.add_argument("--image", help="a grayscale PNG, JPEG or .npy (default: a simulated digit)")
    p.add_argument("--region", action="append", help="x,y,w,h (repeat; default: whole image)")
    p.add_argument("--seed", type=int, default=0, help="which simulated digit")
    p.add_argument("--camera", default="cli", help="the camera name the frame carries")
    p.add_argument("--priority", type=int, choices=(1, 2, 3), default=2)
    p.add_argument("--deadline-ms", type=int, default=1000)
    p.add_argument("--privacy", choices=[c.value for c in PrivacyClass], default="crop")
    p.add_argument("--threshold", type=float, help="the frame's own confidence threshold")
    p.add_argument("--timeout", type=float, help="seconds to wait (default: deadline + 5)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(run=lambda a: uvloop.run(_infer(a)))

    p = sub.add_parser("tail", help="follow a site's results, dead letters and health events")
    _with_target(p)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.set_defaults(run=lambda a: uvloop.run(_tail(a)))

    dead = sub.add_parser("dead-letters", help="stored dead letters").add_subparsers(
        dest="dead_letters_command", required=True
    )
    for name, doc in (
        ("list", "list stored dead letters, oldest first"),
        ("redrive", "publish dead letters' original bytes to their original subject again"),
    ):
        p = dead.add_parser(name, help=doc)
        _with_target(p)
        p.add_argument("--stage", choices=("edge", "cloud"), default="edge")
        p.add_argument("--limit", type=int, default=1000, help="at most this many")
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        if name == "redrive":
            which = p.add_mutually_exclusive_group(required=True)
            which.add_argument("--seq", type=int, action="append", help="a record (repeat)")
            which.add_argument("--all", action="store_true", help="every record (up to --limit)")
            p.add_argument("--keep", action="store_true", help="keep the records after publishing")
        p.set_defaults(run=lambda a: uvloop.run(_dead_letters(a)))
