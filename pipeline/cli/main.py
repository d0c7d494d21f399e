"""The ``hybridfleet`` command.

``stack`` (the one-site embedded stack), ``site`` (one long-lived site), ``edge``,
``cloud``, ``camera``, ``infer``, ``tail``, ``dead-letters`` (list, redrive), ``tune``,
``models`` (build, keygen, bundle, publish, list, desire), ``fleet`` (up, restart,
status), ``rollout`` and ``plan``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import uvloop

from pipeline.camera.simulator import CameraOptions
from pipeline.cli.fleet import (
    add_fleet_restart_command,
    add_fleet_status_command,
    add_fleet_up_command,
)
from pipeline.cli.models import add_model_commands
from pipeline.cli.ops import add_ops_commands
from pipeline.cli.options import options_from
from pipeline.cli.plan import add_plan_command
from pipeline.cli.rollout import add_rollout_commands
from pipeline.cli.video import (
    add_video_command,
    apply_models,
    tune_band,
    video_cameras,
    with_video,
)
from pipeline.config import Settings, load_settings
from schemas.errors import HybridfleetError

__all__ = ["main"]

log = logging.getLogger("hybridfleet")


# Commands that run until stopped: they say when they are ready and what they drained.
_SERVICES = frozenset({"edge", "cloud", "site", "fleet"})


def _run(coro: Coroutine[Any, Any, int]) -> int:
    # uvloop: the event loop is on every frame's path.
    return uvloop.run(coro)


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if getattr(args, "url", None):
        settings = replace(settings, nats=replace(settings.nats, url=args.url))
    return settings


def _camera_options(args: argparse.Namespace) -> CameraOptions:
    defaults = CameraOptions()
    return options_from(
        CameraOptions,
        args,
        cameras=args.cameras or defaults.cameras,
        seconds=args.seconds or defaults.seconds,
        rate_hz=args.rate or defaults.rate_hz,
        regions_per_frame=args.regions,
        device=args.tiers == 3,
        privacy=args.privacy or "",
    )


async def _serve_until_signal(worker: Any, args: argparse.Namespace) -> int:
    """Run a worker until SIGINT/SIGTERM, then drain it."""
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(
            args.metrics_port, addr=args.metrics_addr, registry=worker.metrics.registry
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    waiter = asyncio.create_task(worker.wait())
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        await worker.close()
        waiter.result()  # re-raise what stopped the worker
        return 1
    log.info("signal received: draining")
    await worker.drain()
    waiter.cancel()
    return 0


async def _edge(args: argparse.Namespace) -> int:
    from edge_worker.worker import EdgeWorker

    return await _serve_until_signal(EdgeWorker.from_settings(_settings(args)), args)


async def _cloud(args: argparse.Namespace) -> int:
    from cloud_worker.worker import CloudWorker

    return await _serve_until_signal(CloudWorker.from_settings(_settings(args)), args)


async def _camera(args: argparse.Namespace) -> int:
    import nats

    from pipeline.camera.sigterm import stopped_by_sigterm
    from pipeline.camera.simulator import CameraSimulator
    from pipeline.camera.sources.cameras import run_cameras

    settings = _settings(args)
    video = video_cameras(args)
    nc = await nats.connect(settings.nats.url, name="hybridfleet-camera")
    try:
        if video:
            stop = asyncio.Event()
            with stopped_by_sigterm(stop):
                counts = await run_cameras(nc, video, args.site, stop=stop)
            report = {
                "frames_published": counts.published,
                "frames_dropped": counts.dropped,
                "reconnects": counts.reconnects,
            }
        else:
            report = {"frames_published": len(await CameraSimulator(_camera_options(args)).run(nc))}
    finally:
        await nc.close()
    print(orjson.dumps(report).decode())
    return 0


async def _stack(args: argparse.Namespace) -> int:
    from pipeline.demo.stack import StackOptions, run_stack
    from pipeline.demo.summary import format_summary
    from pipeline.demo.video import format_video_summary

    settings = load_settings(args.config)
    if args.routing:
        settings = replace(settings, edge=replace(settings.edge, routing=args.routing))
    if args.task == "shelf" and not (args.source or args.cameras_file or args.pipeline):
        return await _shelf(args, settings)
    camera = _camera_options(args)
    if args.pipeline:
        camera, settings = _apply_pipeline(Path(args.pipeline), camera, settings)
    video = video_cameras(args)
    options = StackOptions(
        camera=camera,
        settings=apply_models(args, settings),
        wan_delay_ms=args.wan_delay_ms,
        video=video,
    )
    summary = await run_stack(options, progress=None if video else sys.stderr)
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_video_summary(summary) if video else format_summary(summary))
    return 0 if summary["every_frame_one_result"] else 1


async def _shelf(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.demo.shelf import ShelfDemo, format_shelf_summary, run_shelf_demo

    defaults = ShelfDemo()
    demo = ShelfDemo(
        cameras=args.cameras or defaults.cameras,
        seconds=args.seconds or defaults.seconds,
        fps=args.rate or defaults.fps,
        seed=args.seed,
        wan_delay_ms=args.wan_delay_ms,
    )
    summary = await run_shelf_demo(demo, settings)
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_shelf_summary(summary))
    return 0 if summary["every_frame_one_result"] else 1


def _apply_pipeline(
    path: Path, camera: CameraOptions, settings: Settings
) -> tuple[CameraOptions, Settings]:
    """Run the stack as a declared pipeline (configs/pipelines/*.toml) prescribes.

    The declaration is validated first (``hybridfleet plan`` explains it). Its privacy
    class goes to every frame, a device stage turns on the device tier, and the
    sanitising transform of the edge-to-cloud boundary sets the face blur. A pipeline
    that names a model manifest runs its edge and cloud stages as declared chains.
    """
    from pipeline.planning.pipelinefile import load_pipeline, manifest_of
    from pipeline.planning.pipelines import Sanitize, Tier

    spec = load_pipeline(path)
    manifest = manifest_of(spec, path)
    if manifest is not None:
        edge, cloud = settings.edge, settings.cloud
        settings = replace(
            settings,
            edge=replace(edge, model_manifest=str(manifest), models=spec.chain(Tier.EDGE)),
            cloud=replace(cloud, model_manifest=str(manifest), models=spec.chain(Tier.CLOUD)),
        )
    privacy = {"none": "local_only", "embedding": "embedding", "crop": "crop", "frame": "full"}
    camera = replace(
        camera,
        privacy=privacy[spec.privacy.value],
        device=camera.device or any(stage.tier is Tier.DEVICE for stage in spec.stages),
    )
    blur = spec.edge_to_cloud.sanitize is Sanitize.FACE_BLUR
    return camera, replace(settings, edge=replace(settings.edge, face_blur=blur))


def _tune(args: argparse.Namespace) -> int:
    from pipeline.planning import curves, retrain, sizes, tomledit, tune

    if args.band_for:
        return tune_band(args)

    targets = [
        curves.Target(kind, value)
        for kind, value in (
            (curves.TargetKind.MIN_ACCURACY, args.min_accuracy),
            (curves.TargetKind.MAX_ESCALATION, args.max_escalation),
            (curves.TargetKind.MAX_COST, args.max_cost_per_million),
        )
        if value is not None
    ]
    print("cross-validating both models on the training digits ...", file=sys.stderr)
    result = tune.tune(
        retrain.cross_validated_data(),
        targets[0],
        signal=args.signal,
        privacy=args.privacy,
        sizes=sizes.measure_message_sizes(),
    )
    print(tune.format_result(result))
    if args.config:
        for line in tomledit.update_config(args.config, result.point.threshold, result.signal):
            print(f"wrote           {line} to {args.config}" if line.startswith("[") else line)
    return 0


def _models_build(args: argparse.Namespace) -> int:
    from models.build import main as build_main

    return build_main(["--out", args.out] if args.out else [])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridfleet", description=__doc__)
    parser.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING, ERROR (default: INFO for the long-running services "
        f"{', '.join(sorted(_SERVICES))}, WARNING otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="TOML settings file (HYBRIDFLEET_* env vars override)")

    def with_camera(p: argparse.ArgumentParser) -> None:
        p.add_argument("--site", default="site1")
        p.add_argument("--cameras", type=int, help="cameras (digits: 4, shelf: 2)")
        p.add_argument("--rate", type=float, help="frames/s per camera (digits: 25, shelf: 0.5)")
        p.add_argument("--seconds", type=float, help="seconds of video (digits: 10, shelf: 24)")
        p.add_argument("--regions", type=int, default=1, help="digits per frame")
        p.add_argument("--deadline-ms", type=int, default=250)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--scene",
            choices=("random", "static"),
            default="random",
            help="random: new digits every frame; static: a shelf that barely changes",
        )
        p.add_argument(
            "--tiers",
            type=int,
            choices=(2, 3),
            default=2,
            help="3: the camera runs the device tier (its own model, frame skipping)",
        )
        p.add_argument(
            "--privacy",
            choices=("local_only", "embedding", "crop", "full"),
            help="one privacy class for every frame (default: the simulator's mix)",
        )
        p.add_argument(
            "--skip-threshold",
            type=float,
            default=0.02,
            help="device tier: frame difference below which an answer is reused (0: off)",
        )

    p = sub.add_parser("stack", help="run nats-server, cloud, edge and cameras; print a summary")
    with_config(p)
    with_camera(p)
    p.add_argument(
        "--task",
        choices=("shelf", "digits"),
        default="shelf",
        help="shelf: cameras on shelf labels read by PP-OCR (default); digits: the fast "
        "fixture, digits drawn into grey frames and classified per region",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument(
        "--wan-delay-ms",
        type=float,
        help="run the site as a leaf of a hub behind an emulated WAN with this one-way delay",
    )
    p.add_argument(
        "--pipeline",
        help="a pipeline declaration (configs/pipelines/*.toml): its privacy, tiers, blur",
    )
    p.add_argument(
        "--routing",
        choices=("hybrid", "edge_only", "cloud_only"),
        help="override edge.routing (baselines)",
    )
    with_video(p)
    p.set_defaults(run=lambda a: _run(_stack(a)))

    for name, fn, doc in (
        ("edge", _edge, "run an edge worker until SIGTERM"),
        ("cloud", _cloud, "run a cloud worker until SIGTERM"),
    ):
        p = sub.add_parser(name, help=doc)
        with_config(p)
        p.add_argument("--url", help="NATS URL (overrides the config)")
        p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here")
        p.add_argument(
            "--metrics-addr",
            default="127.0.0.1",
            help="address the metrics endpoint listens on (0.0.0.0 in a container)",
        )
        p.set_defaults(run=lambda a, fn=fn: _run(fn(a)))

    p = sub.add_parser("camera", help="publish camera frames: video (--source) or simulated")
    with_config(p)
    with_camera(p)
    with_video(p)
    p.add_argument("--url", help="NATS URL (overrides the config)")
    p.set_defaults(run=lambda a: _run(_camera(a)))

    p = sub.add_parser("tune", help="choose the edge confidence threshold for a target")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--min-accuracy", type=float, help="hybrid accuracy at least (0..1)")
    target.add_argument("--max-escalation", type=float, help="escalated share at most (0..1)")
    target.add_argument("--max-cost-per-million", type=float, help="US$ per 1M frames at most")
    p.add_argument(
        "--signal",
        default="max_probability",
        choices=["max_probability", "margin", "entropy", "best"],
        help="confidence signal (default: max_probability, what the edge worker uses)",
    )
    p.add_argument(
        "--privacy",
        default="crop",
        choices=["crop", "full"],
        help="what an escalation sends, for a cost target (default: crop)",
    )
    p.add_argument("--config", help="TOML file: set [edge] default_threshold there")
    g = p.add_argument_group("a declared model's uncertainty band (docs/models.md)")
    g.add_argument("--band-for", help="manifest roles of a chain, e.g. detect: tune its band")
    g.add_argument("--manifest", help="the model manifest (default: the shipped one)")
    g.add_argument("--source", action="append", default=[], help="a video to tune on")
    g.add_argument("--frames", type=int, default=200, help="frames of the video to use")
    p.set_defaults(run=_tune)

    models = sub.add_parser("models", help="model files").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser("build", help="train the digits models and write ONNX + manifest")
    p.add_argument("--out", help="output folder (default: the models package)")
    p.set_defaults(run=_models_build)
    add_model_commands(models)

    fleet = sub.add_parser("fleet", help="run and inspect a multi-site fleet").add_subparsers(
        dest="fleet_command", required=True
    )
    add_fleet_up_command(fleet)
    add_fleet_restart_command(fleet)
    add_fleet_status_command(fleet)
    add_video_command(sub)
    add_ops_commands(sub)
    add_rollout_commands(sub)
    add_plan_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hybridfleet`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=(args.log_level or ("INFO" if args.command in _SERVICES else "WARNING")).upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        code: int = args.run(args)
    except HybridfleetError as exc:
        print(f"hybridfleet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
