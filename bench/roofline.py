"""The edge at the machine's limit: the worker's throughput as a share of its limits.

Run ``python -m bench.roofline`` (``--quick`` for a smoke run, ``--json PATH`` for
the figures, default ``bench/results/roofline.json``; the plot goes to
``docs/plots/roofline.png``). For each workload, in one run, side by side:

* the limits, each measured alone on this machine:

  - **NATS**: a bare nats-py subscriber in a process of its own (the worker's intake
    limits, nothing done per message) on the same messages, published as fast as this
    process can: messages/s from its first to its last message;
  - **decode** (JPEG workloads): ``images.decode`` alone in one thread per usable core
    on the same JPEG images, images/s;
  - **ORT**: ONNX Runtime alone on tensors already decoded and preprocessed, at its
    best batch size and intra-op thread count (each tried), images/s;

* the edge worker's throughput: a real ``EdgeWorker`` (``EdgeWorker.from_settings``,
  default settings but for its models) in a process of its own. A closed-loop pilot
  (a window of frames in flight; also the warm-up) estimates its capacity; then frames
  are published open loop at 1.5x the higher of that and the lowest limit (or the
  edge path times the inference threads, if lower) for a bounded count, and frames/s = answered
  frames / (last answer - first publish). The open-loop publisher pauses while
  ``BACKLOG_BYTES`` (40 MiB) of frames have no result: past 64 MiB waiting for the
  worker the nats-server cuts it off as a slow consumer and every frame waiting is
  lost (seen with 307 kB raw frames, whose limit is the worker's event loop, so the
  backlog waits in the server and the worker's own intake limit never trips). Every
  frame is accounted for: answered, shed (the full queue answers it ``shed``),
  dropped unread by the worker's intake (``hybridfleet_edge_dropped_frames_total``),
  dead-lettered, or lost;
* the share: worker frames/s / the lowest limit;
* latency: p50 and p99 from publish to result at 50% and 90% of the worker's measured
  capacity (paced publishing, Poisson-free: evenly spaced);
* for diagnosis, the **edge path**: the worker's own per-batch work (decode, analyser)
  on one thread without NATS, frames/s.

Workloads: (a) ``digits-mlp32`` (the default edge model) on 640x480 raw grey frames
with one 32x32 region (what the camera simulator sends); (b, c) the same model on
1280x720 and 1920x1080 JPEG frames (quality 80) with one region, grey JPEGs because
the region classifier's 8x8 features take grey crops only (an RGB crop is refused,
and with it the whole batch); (d) the compute-shaped MLP of ``bench/common.py`` on
raw frames; (e) the random-weight YOLOv8-layout detector of ``models/random``
(declared: ``edge.models = "detect"``) on 1280x720 colour JPEG frames, no regions.

Frames are priority 1 and privacy ``local_only``, so the worker answers each on the
edge and needs no cloud. Everything runs on 127.0.0.1: a nats-server, the worker's
process, the bare subscriber's process, and this one (publisher and result
subscriber). Every run is bounded in count and time; every process started here is
stopped by its pid, also on error. A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import uvloop
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.common import build_compute_model, echo, echo_header, machine_info, save_figure
from bench.roofline_limits import decode_limit, edge_path, model_inputs, ort_limit
from bench.roofline_procs import SITE, Child, subscriber_main, worker_main
from bench.worker_harness import DEADLINE_MS, make_frames
from pipeline.config import EdgeSettings
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.chain import ModelChain
from pipeline.inference.model import OnnxModel
from pipeline.messaging.server import NatsServer
from schemas import subjects
from schemas.codec import encode
from schemas.messages import Colour, Encoded, Frame, PrivacyClass, Region, Source

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_JSON: Final = ROOT / "bench" / "results" / "roofline.json"
DEFAULT_PLOT: Final = ROOT / "docs" / "plots" / "roofline.png"
DETECTOR_MANIFEST: Final = ROOT / "models" / "random" / "manifest.json"
JPEG_QUALITY: Final = 80
CAMERAS: Final = 4
# The most frame bytes the open-loop run lets go without a result (see _worker_runs);
# the nats-server cuts a client off at 64 MiB pending.
BACKLOG_BYTES: Final = 40 << 20
# Frames in flight in the closed-loop pilot: at most this many bytes of them.
PILOT_WINDOW_BYTES: Final = 24 << 20

# Each frame id is "roof-" and 16 digits: pooled messages hold the placeholder, each
# publish stamps the next number into a copy, and a result's id is found by the prefix.
_ID_PREFIX: Final = b"roof-"
_PLACEHOLDER: Final = b"N" * 16
_SHED: Final = b"\xa6reason\xa4shed"  # msgpack of the key "reason" and the value "shed"

log = logging.getLogger("bench.roofline")


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    model: str  # "digits", "compute" or "detect"
    image: str  # "raw", "jpeg-grey" or "jpeg-rgb"
    width: int
    height: int
    regions: int  # 1: one 32x32 region; 0: none (a detector finds its own)


WORKLOADS: Final = (
    Workload("a", "digits-mlp32, 640x480 raw grey, 1 region", "digits", "raw", 640, 480, 1),
    Workload(
        "b", "digits-mlp32, 1280x720 JPEG (grey), 1 region", "digits", "jpeg-grey", 1280, 720, 1
    ),
    Workload(
        "c", "digits-mlp32, 1920x1080 JPEG (grey), 1 region", "digits", "jpeg-grey", 1920, 1080, 1
    ),
    Workload(
        "d", "compute MLP (11 MFLOP), 640x480 raw grey, 1 region", "compute", "raw", 640, 480, 1
    ),
    Workload(
        "e", "yolo-random detector 320x320, 1280x720 JPEG (RGB)", "detect", "jpeg-rgb", 1280, 720, 0
    ),
)


@dataclass(frozen=True)
class Options:
    workloads: tuple[str, ...]
    pool: int  # distinct frames per workload
    limit_seconds: float  # each timing of a decode / ORT / edge-path point
    limit_repeats: int  # timings per point; the best is kept
    nats_messages: int  # messages for the bare subscriber
    saturate_seconds: float  # open-loop run: about this long at the offered rate
    max_frames: int  # at most this many frames in the open-loop run
    pilot_seconds: float  # the closed-loop warm-up that estimates capacity
    latency_seconds: float  # each paced run: about this long
    max_latency_frames: int
    overload: float  # offered rate / estimated capacity in the open-loop run
    quiet_s: float  # waiting for results gives up after this long without one
    time_limit_s: float  # publishing in any one run stops after this long
    inference_threads: int
    ort_threads: tuple[int, ...]
    plot: Path | None


@dataclass
class Setup:
    """One workload made concrete: its frames, messages, model and worker settings."""

    workload: Workload
    frames: list[Frame]
    pool: list[tuple[str, bytes]]
    role: str
    manifest: Path | None
    overrides: dict[str, Any]
    jpegs: list[Encoded] = field(default_factory=list)

    @property
    def frame_bytes(self) -> float:
        """The mean size of a frame message."""
        return statistics.fmean(len(data) for _, data in self.pool)


def _region(width: int, height: int) -> Region:
    return Region(width // 2 - 16, height // 2 - 16, 32, 32)


def _jpeg_frames(w: Workload, count: int) -> tuple[list[Frame], list[Encoded]]:
    import cv2

    from pipeline.camera.sources.photos import photo_frames
    from pipeline.inference.images import encode_jpeg

    pictures = photo_frames(count, w.width, w.height)
    if w.image == "jpeg-grey":
        pictures = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in pictures]
    jpegs = [encode_jpeg(p, JPEG_QUALITY) for p in pictures]
    regions = (_region(w.width, w.height),) if w.regions else ()
    now = time.time()
    frames = [
        Frame(
            frame_id="",
            site=SITE,
            camera=f"cam{seq % CAMERAS}",
            seq=seq,
            captured_at=now,
            image=jpeg,
            regions=regions,
            priority=1,
            deadline_ms=DEADLINE_MS,
            privacy=PrivacyClass.LOCAL_ONLY,
            colour=Colour.RGB,  # an encoded image is "rgb"; a grey JPEG decodes to grey
        )
        for seq, jpeg in enumerate(jpegs)
    ]
    return frames, jpegs


def _setup(w: Workload, options: Options, workdir: Path) -> Setup:
    jpegs: list[Encoded] = []
    if w.image == "raw":
        frames = make_frames(options.pool)  # the camera simulator's, 640x480
    else:
        frames, jpegs = _jpeg_frames(w, options.pool)
    placeholder = (_ID_PREFIX + _PLACEHOLDER).decode()
    frames = [replace(f, frame_id=placeholder) for f in frames]
    for f in frames:
        assert f.priority == 1 and f.privacy is PrivacyClass.LOCAL_ONLY
    pool = [(subjects.frames(SITE, f.camera), encode(f)) for f in frames]
    overrides: dict[str, Any] = {"inference_threads": options.inference_threads}
    manifest: Path | None = None
    role = "edge"
    if w.model == "compute":
        folder = workdir / "compute-model"
        if not (folder / "manifest.json").exists():
            folder.mkdir(exist_ok=True)
            build_compute_model(folder)
        manifest = folder / "manifest.json"
        overrides["model_manifest"] = str(manifest)
    elif w.model == "detect":
        manifest, role = DETECTOR_MANIFEST, "detect"
        overrides["model_manifest"] = str(manifest)
        overrides["models"] = "detect"
    return Setup(w, frames, pool, role, manifest, overrides, jpegs)


def _analyser(setup: Setup) -> Analyser:
    """The analyser the worker builds for these settings (EdgeWorker.from_settings)."""
    if setup.workload.model == "detect":
        return ModelChain.load(setup.role, setup.manifest, source=Source.EDGE)
    return RegionClassifier(OnnxModel.load("edge", setup.manifest), Source.EDGE, "max_probability")


# ---------------------------------------------------------------- publishing and results


class _Ids:
    """Frame numbers, unique in the run (the worker refuses a repeated id)."""

    def __init__(self) -> None:
        self.next = 0

    def stamp(self, data: bytes) -> tuple[int, bytes]:
        at = data.find(_PLACEHOLDER, 0, 256)
        if at < 0:
            raise ValueError("no frame id placeholder in the first 256 bytes of the message")
        number = self.next
        self.next += 1
        view = memoryview(data)
        return number, b"".join((view[:at], b"%016d" % number, view[at + len(_PLACEHOLDER) :]))


@dataclass
class _Results:
    """Counts results (shed apart); with ``sent_at``, the latency of each answered one."""

    count: int = 0
    answered: int = 0
    shed: int = 0
    last_answered_at: float = 0.0
    sent_at: dict[int, float] | None = None
    latencies: list[float] = field(default_factory=list)
    wake_at: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_msg(self, msg: Msg) -> None:
        now = time.perf_counter()
        data = msg.data
        self.count += 1
        shed = _SHED in data
        if shed:
            self.shed += 1
        else:
            self.answered += 1
            self.last_answered_at = now
        if self.sent_at is not None:
            at = data.find(_ID_PREFIX, 0, 128) + len(_ID_PREFIX)
            sent = self.sent_at.pop(int(data[at : at + 16]), None)
            if sent is not None and not shed:
                self.latencies.append(now - sent)
        if self.count >= self.wake_at:
            self.event.set()

    async def wait_for(self, count: int, quiet_s: float) -> bool:
        """Until ``count`` results in all; False once none came for ``quiet_s``."""
        while self.count < count:
            self.wake_at = count
            self.event.clear()
            seen = self.count
            try:
                await asyncio.wait_for(self.event.wait(), quiet_s)
            except TimeoutError:
                if self.count == seen:
                    return False
        return True


@dataclass
class _Guard:
    """Pauses an open-loop publisher while ``limit`` frames have no result yet."""

    results: _Results
    base: int  # results.count when publishing started
    limit: int
    quiet_s: float
    pauses: int = 0
    paused_s: float = 0.0
    stalled: bool = False

    async def wait(self, sent: int) -> bool:
        """False if the worker stalled (no result for quiet_s)."""
        if sent - (self.results.count - self.base) < self.limit:
            return True
        self.pauses += 1
        started = time.perf_counter()
        resume_at = self.base + sent - self.limit + max(1, self.limit // 8)
        ok = await self.results.wait_for(resume_at, self.quiet_s)
        self.paused_s += time.perf_counter() - started
        self.stalled = not ok
        return ok


async def _publish(
    nc: Client,
    pool: Sequence[tuple[str, bytes]],
    ids: _Ids,
    count: int,
    rate: float,
    time_limit_s: float,
    sent_at: dict[int, float] | None = None,
    guard: _Guard | None = None,
) -> tuple[int, float, float]:
    """Publish up to ``count`` frames evenly at ``rate``/s (inf: as fast as possible),
    for at most ``time_limit_s``, pausing while ``guard`` says so; (frames sent, start,
    end of publishing)."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    sent = 0
    while sent < count:
        now = time.perf_counter()
        if now >= deadline:
            break
        due = count if math.isinf(rate) else min(count, 1 + int((now - t0) * rate))
        for _ in range(min(due - sent, 32)):
            if guard is not None and not await guard.wait(sent):
                break
            subject, data = pool[sent % len(pool)]
            number, message = ids.stamp(data)
            if sent_at is not None:
                sent_at[number] = time.perf_counter()
            await nc.publish(subject, message)
            sent += 1
        if sent >= count or (guard is not None and guard.stalled):
            break
        if sent < due:
            await asyncio.sleep(0)  # let results in between bursts
        else:
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.perf_counter()))
    await nc.flush()
    return sent, t0, time.perf_counter()


def _proc_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (from /proc), NaN if unreadable."""
    if pid is None:
        return math.nan
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def _slow_consumers(server: NatsServer) -> int:
    """The nats-server's count of clients it cut off as slow consumers (/varz), -1 if
    it cannot be read."""
    if server.monitor_port is None:
        return -1
    try:
        url = f"http://127.0.0.1:{server.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(json.loads(answer.read())["slow_consumers"])
    except (OSError, ValueError, KeyError):
        return -1


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values), q))


# ---------------------------------------------------------------- the NATS limit


async def _nats_limit(
    server: NatsServer, nc: Client, setup: Setup, ids: _Ids, options: Options
) -> dict[str, Any]:
    """Messages/s a bare subscriber in its own process takes of these frames."""
    async with Child(subscriber_main, "roofline-bare-subscriber", server.url) as sub:
        before = await sub.snapshot()
        cpu_before = time.process_time()
        server_before = _proc_cpu_seconds(server.pid)
        sent, t0, t1 = await _publish(
            nc, setup.pool, ids, options.nats_messages, math.inf, options.time_limit_s
        )
        cpu_after = time.process_time()
        # Until all arrived, or nothing more came for quiet_s.
        last_seen, last_change = -1, time.monotonic()
        while True:
            now_snap = await sub.snapshot()
            got = now_snap["received"] - before["received"]
            if got + now_snap["dropped"] - before["dropped"] >= sent:
                break
            if got != last_seen:
                last_seen, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > options.quiet_s:
                break
            await asyncio.sleep(0.05)
        server_after = _proc_cpu_seconds(server.pid)
        after = await sub.stop()
    received = after["received"] - before["received"]
    span = after["last_at"] - after["first_at"]
    wall = after["at"] - before["at"]
    return {
        "msgs_per_s": (received - 1) / span if received > 1 and span > 0 else math.nan,
        "sent": sent,
        "received": received,
        "dropped": after["dropped"] - before["dropped"],
        "lost": sent - received - (after["dropped"] - before["dropped"]),
        "publisher_msgs_per_s": sent / (t1 - t0),
        "publisher_cores": (cpu_after - cpu_before) / (t1 - t0),
        "subscriber_cores": (after["cpu_s"] - before["cpu_s"]) / wall if wall > 0 else math.nan,
        "nats_server_cores": (server_after - server_before) / wall if wall > 0 else math.nan,
    }


# ---------------------------------------------------------------- the worker


@dataclass
class _Rig:
    """What every run against one worker shares."""

    worker: Child
    server: NatsServer
    nc: Client
    results: _Results
    setup: Setup
    ids: _Ids
    options: Options


async def _phase(
    rig: _Rig, *, count: int, rate: float, latency: bool, guard: bool = False
) -> dict[str, Any]:
    """One run against the worker: publish, wait for the results, account for each frame."""
    worker, server, results, options = rig.worker, rig.server, rig.results, rig.options
    before = await worker.snapshot()
    base_count, base_answered, base_shed = results.count, results.answered, results.shed
    results.sent_at = {} if latency else None
    results.latencies = []
    cpu_before = (time.process_time(), _proc_cpu_seconds(server.pid))
    slow_before = await asyncio.to_thread(_slow_consumers, server)
    limit = _clamp(BACKLOG_BYTES / rig.setup.frame_bytes, 8, 100_000)
    backlog = _Guard(results, base_count, limit, options.quiet_s) if guard else None
    sent, t0, t1 = await _publish(
        rig.nc, rig.setup.pool, rig.ids, count, rate, options.time_limit_s, results.sent_at, backlog
    )
    results_by_end = results.count - base_count
    complete = await results.wait_for(base_count + sent, options.quiet_s)
    cpu_after = (time.process_time(), _proc_cpu_seconds(server.pid))
    after = await worker.snapshot()
    slow_after = await asyncio.to_thread(_slow_consumers, server)
    answered = results.answered - base_answered
    elapsed = results.last_answered_at - t0 if answered else math.nan
    dropped = int(after["dropped"] - before["dropped"])
    dead = int(after["dead_letters"] - before["dead_letters"])
    shed = results.shed - base_shed
    batches = after["batch_size_count"] - before["batch_size_count"]
    wall = after["at"] - before["at"]
    point: dict[str, Any] = {
        "offered_per_s": sent / (t1 - t0) if t1 > t0 else math.nan,
        "target_rate": rate,
        "sent": sent,
        "answered": answered,
        "shed": shed,
        "shed_by_worker": int(after["shed"] - before["shed"]),
        "dropped_intake": dropped,
        "dead_letters": dead,
        "lost": sent - answered - shed - dropped - dead,
        # Times the nats-server cut a client (the worker) off as a slow consumer.
        "server_slow_consumer_cuts": slow_after - slow_before
        if min(slow_before, slow_after) >= 0
        else None,
        "complete": complete,
        # Frames without a result when publishing ended: a backlog means the worker
        # fell behind what was offered (then frames/s is its capacity).
        "backlog_at_end": sent - results_by_end,
        "backlog_limit": limit if guard else None,
        "publisher_pauses": backlog.pauses if backlog else 0,
        "publisher_paused_s": backlog.paused_s if backlog else 0.0,
        "seconds": elapsed,
        "frames_per_s": answered / elapsed if answered and elapsed > 0 else 0.0,
        "mean_batch": (after["batch_size_sum"] - before["batch_size_sum"]) / batches
        if batches
        else math.nan,
        "batch_ms": (after["inference_seconds_sum"] - before["inference_seconds_sum"])
        / batches
        * 1000
        if batches
        else math.nan,
        "inference_busy": (after["inference_seconds_sum"] - before["inference_seconds_sum"]) / wall,
        "cores": {
            "worker": (after["cpu_s"] - before["cpu_s"]) / wall,
            "nats_server": (cpu_after[1] - cpu_before[1]) / wall,
            "bench": (cpu_after[0] - cpu_before[0]) / wall,
        },
    }
    if latency:
        lat = results.latencies
        point["latency_ms"] = {
            "n": len(lat),
            "p50": _percentile(lat, 50) * 1000,
            "p99": _percentile(lat, 99) * 1000,
            "mean": statistics.fmean(lat) * 1000 if lat else math.nan,
            "max": max(lat) * 1000 if lat else math.nan,
        }
    results.sent_at = None
    return point


async def _closed_loop(rig: _Rig, seconds: float, estimate: float) -> dict[str, Any]:
    """Keep ``window`` frames in flight for ``seconds``; answered frames/s."""
    results, options = rig.results, rig.options
    window = _clamp(PILOT_WINDOW_BYTES / rig.setup.frame_bytes, 4, 96)
    limit = _clamp(estimate * seconds * 2, 2 * window, 20_000)
    base_count, base_answered = results.count, results.answered
    t0 = time.perf_counter()
    sent = 0
    while sent < limit and time.perf_counter() - t0 < seconds:
        if sent - (results.count - base_count) >= window and not await results.wait_for(
            base_count + sent - window + 1, options.quiet_s
        ):
            break
        subject, data = rig.setup.pool[sent % len(rig.setup.pool)]
        await rig.nc.publish(subject, rig.ids.stamp(data)[1])
        sent += 1
    await rig.nc.flush()
    complete = await results.wait_for(base_count + sent, options.quiet_s)
    answered = results.answered - base_answered
    elapsed = results.last_answered_at - t0
    return {
        "window": window,
        "sent": sent,
        "answered": answered,
        "complete": complete,
        "frames_per_s": answered / elapsed if answered and elapsed > 0 else estimate,
    }


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


async def _worker_runs(
    server: NatsServer,
    nc: Client,
    results: _Results,
    setup: Setup,
    ids: _Ids,
    options: Options,
    estimate: float,
) -> dict[str, Any]:
    """Warm up, saturate (open loop above ``estimate``), then paced runs at 50%/90%."""
    async with Child(
        worker_main, f"roofline-edge-{setup.workload.key}", server.url, setup.overrides
    ) as worker:
        rig = _Rig(worker, server, nc, results, setup, ids, options)
        # Warm-up and pilot: closed loop, `window` frames in flight, so that nothing
        # piles up anywhere; its frames/s sets the open-loop rate.
        pilot = await _closed_loop(rig, options.pilot_seconds, estimate)
        # Above capacity even if the pilot ran slow (anything else on the machine): the
        # estimate (the lowest limit, or the edge path per inference thread) is at or
        # above what the worker can do.
        rate = options.overload * max(pilot["frames_per_s"], estimate)
        # Open loop above capacity, but never more than BACKLOG_BYTES of frames without
        # a result: when the worker's event loop is what limits it, the backlog waits
        # in the nats-server's buffer for the worker, and the server cuts the worker
        # off (slow consumer) at 64 MiB, losing every frame in that buffer.
        count = _clamp(rate * options.saturate_seconds, 50, options.max_frames)
        saturated = await _phase(rig, count=count, rate=rate, latency=False, guard=True)
        capacity = saturated["frames_per_s"]
        paced: dict[str, Any] = {}
        for share in (0.5, 0.9):
            paced_rate = share * capacity
            n = _clamp(paced_rate * options.latency_seconds, 20, options.max_latency_frames)
            paced[f"{share:.0%}"] = await _phase(rig, count=n, rate=paced_rate, latency=True)
        stopped = await worker.stop()
        return {
            "config": worker.ready,
            "pilot": pilot,
            "estimate_per_s": estimate,
            "saturated": saturated,
            "paced": paced,
            "warnings": stopped["warnings"],
            "first_warnings": stopped["first_warnings"],
            "drained": stopped["drained"],
        }


# ---------------------------------------------------------------- one workload


async def _workload(
    server: NatsServer, w: Workload, options: Options, workdir: Path, ids: _Ids
) -> dict[str, Any]:
    echo(f"\n== ({w.key}) {w.title}")
    setup = await asyncio.to_thread(_setup, w, options, workdir)
    frame_bytes = setup.frame_bytes
    echo(f"  {len(setup.pool)} distinct frames, {frame_bytes:,.0f} B a message on average")
    cores = len(os.sched_getaffinity(0))
    limits: dict[str, Any] = {}

    publisher = await _connect(server.url, "roofline-publisher")
    subscriber = await _connect(server.url, "roofline-results")
    try:
        limits["nats"] = await _nats_limit(server, publisher, setup, ids, options)
        n = limits["nats"]
        echo(
            f"  limit NATS bare subscriber: {n['msgs_per_s']:,.0f} msgs/s "
            f"({n['received']}/{n['sent']} received, {n['dropped']} dropped; publisher "
            f"{n['publisher_msgs_per_s']:,.0f}/s at {n['publisher_cores']:.2f} cores; cores "
            f"subscriber {n['subscriber_cores']:.2f}, server {n['nats_server_cores']:.2f})"
        )
        if setup.jpegs:
            limits["decode"] = await asyncio.to_thread(
                decode_limit, setup.jpegs, cores, options.limit_seconds, options.limit_repeats
            )
            d = limits["decode"]
            echo(
                f"  limit JPEG decode: {d['images_per_s']:,.0f} images/s on {cores} threads "
                f"({d['one_thread_images_per_s']:,.0f} on one)"
            )
        inputs = await asyncio.to_thread(model_inputs, setup.frames, setup.role, setup.manifest)
        batches = (1, 4, 8) if w.model == "detect" else (1, 8, 32)
        limits["ort"] = await asyncio.to_thread(
            ort_limit,
            setup.role,
            setup.manifest,
            inputs,
            batches,
            options.ort_threads,
            options.limit_seconds,
            options.limit_repeats,
        )
        o = limits["ort"]
        echo(
            f"  limit ONNX Runtime: {o['images_per_s']:,.0f} images/s at batch "
            f"{o['best_batch']}, {o['best_threads']} thread(s) ("
            + ", ".join(
                f"b{p['batch']}/t{p['threads']} {p['images_per_s']:,.0f}" for p in o["points"]
            )
            + ")"
        )
        named = {
            "nats": limits["nats"]["msgs_per_s"],
            "ort": limits["ort"]["images_per_s"],
        }
        if "decode" in limits:
            named["decode"] = limits["decode"]["images_per_s"]
        finite = {k: v for k, v in named.items() if math.isfinite(v)}
        lowest_name = min(finite, key=lambda k: finite[k])
        lowest = finite[lowest_name]

        analyser = await asyncio.to_thread(_analyser, setup)
        path_batch = EdgeSettings().max_batch_size  # the worker's cap, by default 32
        path_rate = await asyncio.to_thread(
            edge_path,
            analyser,
            setup.frames,
            path_batch,
            options.limit_seconds,
            options.limit_repeats,
        )
        echo(
            f"  edge path (decode + analyser, batch {path_batch}, one thread, no NATS): "
            f"{path_rate:,.0f} frames/s"
        )
        estimate = min(lowest, path_rate * options.inference_threads)

        results = _Results()
        await subscriber.subscribe(subjects.results(SITE), cb=results.on_msg)
        await subscriber.flush()
        worker = await _worker_runs(server, publisher, results, setup, ids, options, estimate)
    finally:
        await publisher.close()
        await subscriber.close()

    sat = worker["saturated"]
    # Open loop above capacity: the worker fell behind what was offered. If not, the
    # figure is the offered rate, not the worker's capacity.
    sat["above_capacity"] = bool(sat["publisher_pauses"]) or sat["backlog_at_end"] > max(
        0.1 * sat["sent"], 2 * sat["mean_batch"]
    )
    if not sat["above_capacity"]:
        echo(
            f"  NOTE: only {sat['backlog_at_end']} frames were behind when publishing ended: "
            "the worker nearly kept up, so its capacity may be higher than measured"
        )
    share = sat["frames_per_s"] / lowest if lowest else math.nan
    c = sat["cores"]
    echo(
        f"  worker: {sat['frames_per_s']:,.0f} frames/s = {share:.0%} of the lowest limit "
        f"({lowest_name}); offered {sat['offered_per_s']:,.0f}/s, mean batch "
        f"{sat['mean_batch']:.1f}, cores worker {c['worker']:.2f} server "
        f"{c['nats_server']:.2f} bench {c['bench']:.2f}"
    )
    pilot = worker["pilot"]
    if sat["publisher_pauses"]:
        echo(
            f"  the publisher paused {sat['publisher_pauses']} times "
            f"({sat['publisher_paused_s']:.1f} s) at {sat['backlog_limit']} frames without "
            "a result"
        )
    echo(
        f"  pilot (closed loop, {pilot['window']} in flight): {pilot['frames_per_s']:,.0f} "
        f"frames/s; open loop at {options.overload:g}x the higher of that and the "
        f"estimate {worker['estimate_per_s']:,.0f}/s (lowest limit, edge path)"
    )
    echo(
        f"  frames: {sat['sent']} sent = {sat['answered']} answered + {sat['shed']} shed + "
        f"{sat['dropped_intake']} dropped at intake + {sat['dead_letters']} dead-lettered + "
        f"{sat['lost']} lost"
        + (
            f" (the server cut the worker off {sat['server_slow_consumer_cuts']} times)"
            if sat["server_slow_consumer_cuts"]
            else ""
        )
    )
    for key, point in worker["paced"].items():
        lat = point["latency_ms"]
        echo(
            f"  at {key} ({point['offered_per_s']:,.0f}/s, {point['sent']} frames): latency "
            f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; {point['answered']} answered, "
            f"{point['shed']} shed, {point['dropped_intake']} dropped, {point['lost']} lost"
            + (
                f" (the server cut the worker off {point['server_slow_consumer_cuts']} times)"
                if point["server_slow_consumer_cuts"]
                else ""
            )
        )
    return {
        "workload": asdict(w),
        "frame_bytes": frame_bytes,
        "frames_in_pool": len(setup.pool),
        "worker_settings": setup.overrides,
        "limits": limits,
        "lowest_limit": {"name": lowest_name, "per_s": lowest},
        "edge_path": {"batch": path_batch, "threads": 1, "frames_per_s": path_rate},
        "estimate_per_s": estimate,
        "worker": worker,
        "worker_frames_per_s": sat["frames_per_s"],
        "share_of_lowest_limit": share,
    }


async def _connect(url: str, name: str) -> Client:
    import nats

    async def on_error(exc: Exception) -> None:
        log.warning("%s: %s: %s", name, type(exc).__name__, exc)

    return await nats.connect(url, name=name, error_cb=on_error)


async def _run(options: Options, workdir: Path) -> list[dict[str, Any]]:
    server = NatsServer(workdir / "nats", name="roofline")
    await asyncio.to_thread(server.start)
    ids = _Ids()
    out = []
    try:
        for w in WORKLOADS:
            if w.key in options.workloads:
                out.append(await _workload(server, w, options, workdir, ids))
    finally:
        await asyncio.to_thread(server.stop)
    return out


# ---------------------------------------------------------------- output


def _n(value: float, digits: int = 0) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _latency(point: dict[str, Any]) -> str:
    """p50 / p99 of a paced run, and what it lost if anything."""
    lat = point["latency_ms"]
    text = f"{_n(lat['p50'], 1)} / {_n(lat['p99'], 1)}"
    missing = point["sent"] - point["answered"]
    return f"{text} ({missing} of {point['sent']} unanswered)" if missing else text


def _table(reports: Sequence[dict[str, Any]]) -> str:
    """The summary: one row per workload (markdown)."""
    head = (
        "| workload | B/frame | NATS msgs/s | decode img/s | ORT img/s (batch, threads) | "
        "edge path 1 thr | worker frames/s | share of lowest | sent = answered + shed + "
        "dropped + lost | p50 / p99 ms at 50% | p50 / p99 ms at 90% |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        lim = r["limits"]
        sat = r["worker"]["saturated"]
        o = lim["ort"]
        decode = lim["decode"]["images_per_s"] if "decode" in lim else math.nan
        lines.append(
            f"| ({r['workload']['key']}) {r['workload']['title']} | {_n(r['frame_bytes'])} | "
            f"{_n(lim['nats']['msgs_per_s'])} | {_n(decode)} | "
            f"{_n(o['images_per_s'])} ({o['best_batch']}, {o['best_threads']}) | "
            f"{_n(r['edge_path']['frames_per_s'])} | {_n(r['worker_frames_per_s'])} | "
            f"{r['share_of_lowest_limit']:.0%} of {r['lowest_limit']['name']} | "
            f"{sat['sent']} = {sat['answered']} + {sat['shed']} + {sat['dropped_intake']} + "
            f"{sat['lost'] + sat['dead_letters']} | "
            f"{_latency(r['worker']['paced']['50%'])} | {_latency(r['worker']['paced']['90%'])} |"
        )
    return "\n".join(lines)


def _plot(reports: Sequence[dict[str, Any]], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = (
        ("NATS bare subscriber", "#4c72b0"),
        ("JPEG decode, all cores", "#dd8452"),
        ("ONNX Runtime, best", "#55a868"),
        ("edge path, 1 thread", "#bbbbbb"),
        ("edge worker", "#c44e52"),
    )
    fig, ax = plt.subplots(figsize=(11, 5.2))
    width = 0.16
    for i, r in enumerate(reports):
        lim = r["limits"]
        values = (
            lim["nats"]["msgs_per_s"],
            lim["decode"]["images_per_s"] if "decode" in lim else math.nan,
            lim["ort"]["images_per_s"],
            r["edge_path"]["frames_per_s"],
            r["worker_frames_per_s"],
        )
        for j, ((_, colour), value) in enumerate(zip(bars, values, strict=True)):
            if not math.isfinite(value) or value <= 0:
                continue
            x = i + (j - 2) * width
            ax.bar(x, value, width, color=colour)
        ax.annotate(
            f"{r['share_of_lowest_limit']:.0%}",
            (i + 2 * width, r["worker_frames_per_s"]),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=9,
            fontweight="bold",
        )
    from matplotlib.patches import Patch

    ax.legend(
        handles=[Patch(color=colour, label=label) for label, colour in bars],
        fontsize=8,
        loc="upper right",
    )
    ax.set_yscale("log")
    ax.set_xticks(range(len(reports)))
    ax.set_xticklabels(
        [
            f"({r['workload']['key']}) {r['workload']['title']}".replace(", ", "\n", 1)
            for r in reports
        ],
        fontsize=8,
    )
    ax.set_ylabel("frames (messages, images) per second, log scale")
    ax.set_title(
        "The edge worker against its limits (label: worker / lowest limit)\n" + subtitle,
        fontsize=10,
    )
    ax.grid(axis="y", which="both", alpha=0.3)
    save_figure(fig, path)


# ---------------------------------------------------------------- the command


def _parse(argv: Sequence[str] | None) -> tuple[Options, Path]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.roofline",
        description="The edge worker's throughput as a share of its limits (NATS, JPEG "
        "decode, ONNX Runtime), per workload, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help="the figures"
    )
    parser.add_argument(
        "--plot", default=str(DEFAULT_PLOT), metavar="PATH", help="the plot ('' for none)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated keys of the workloads to run (default: all, a..e)",
    )
    parser.add_argument(
        "--inference-threads",
        type=int,
        default=1,
        help="the worker's edge.inference_threads (default 1, the shipped default)",
    )
    args = parser.parse_args(argv)
    keys = tuple(k.strip() for k in args.workloads.split(",") if k.strip())
    known = {w.key for w in WORKLOADS}
    if not keys or any(k not in known for k in keys):
        parser.error(f"--workloads: choose from {', '.join(sorted(known))}")
    if not 1 <= args.inference_threads <= 64:
        parser.error("--inference-threads must be in 1..64")
    quick = args.quick
    options = Options(
        workloads=keys,
        pool=8 if quick else 16,
        limit_seconds=0.1 if quick else 0.3,
        limit_repeats=2 if quick else 3,
        nats_messages=300 if quick else 2000,
        saturate_seconds=0.6 if quick else 3.0,
        max_frames=250 if quick else 2000,
        pilot_seconds=0.5 if quick else 1.5,
        latency_seconds=0.5 if quick else 3.0,
        max_latency_frames=150 if quick else 1500,
        overload=1.5,
        quiet_s=1.5 if quick else 3.0,
        time_limit_s=10.0 if quick else 30.0,
        inference_threads=args.inference_threads,
        ort_threads=(1, 2),
        plot=Path(args.plot) if args.plot else None,
    )
    return options, args.json


def main(argv: Sequence[str] | None = None) -> int:
    options, json_path = _parse(argv)
    # SIGTERM stops the run like Ctrl-C does, so the finally blocks stop the child
    # processes and the nats-server, each by its pid.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = machine_info()
    command = echo_header(
        "hybridfleet roofline: the edge against its limits", "bench.roofline", argv, machine
    )
    load_before = os.getloadavg()
    echo(
        "load average before (1/5/15 min): "
        + " ".join(f"{x:.2f}" for x in load_before)
        + " (anything else running takes cores from the processes measured)"
    )
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="hybridfleet-roofline-") as tmp:
            reports = uvloop.run(_run(options, Path(tmp)))
    except KeyboardInterrupt:
        print("interrupted: no figures", file=sys.stderr)
        return 130
    total = time.monotonic() - started
    load_after = os.getloadavg()
    echo()
    echo(_table(reports))
    echo(
        "\nNATS = a bare subscriber's messages/s; decode = JPEG images/s on all cores; ORT = "
        "the model alone at its best batch and threads; edge path = the worker's decode + "
        "analyser on one thread, no NATS (a diagnosis, not a limit); worker = answered "
        "frames / (last answer - first publish), published open loop above capacity; "
        "share = worker / the lowest of NATS, decode and ORT; p50/p99 = publish to result "
        "at 50% and 90% of the worker's measured capacity"
    )
    echo(
        f"total run time {total:.0f} s; load average after: "
        + " ".join(f"{x:.2f}" for x in load_after)
    )
    document = {
        "benchmark": "roofline",
        "command": command,
        "machine": machine,
        "options": {k: _shown(v) for k, v in asdict(options).items()},
        "total_seconds": total,
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "workloads": reports,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(document), indent=2, default=_json_default, allow_nan=False)
    json_path.write_text(text + "\n")
    echo(f"figures written to {json_path}")
    if options.plot is not None and reports:
        cpu = machine.get("cpu", "unknown CPU")
        subtitle = (
            f"{cpu}, {machine.get('usable_cpus')} usable cores; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after"
        )
        _plot(reports, options.plot, subtitle)
        echo(f"plot written to {options.plot}")
    return 0


def _shown(value: Any) -> Any:
    """A path as text, relative to the repository when inside it; anything else as is."""
    if not isinstance(value, Path):
        return value
    try:
        return str(value.resolve().relative_to(ROOT))
    except ValueError:
        return str(value)


def _finite(value: Any) -> Any:
    """The same structure with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


if __name__ == "__main__":
    sys.exit(main())
