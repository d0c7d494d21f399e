"""The limits ``bench.roofline`` sets the edge worker against, measured without it.

* ``decode_limit``: JPEG decoding alone (``pipeline.inference.images.decode``, the
  edge's own call: cv2 plus the BGR->RGB conversion) in one thread per usable core,
  images/s; cv2 releases the GIL while it decodes, so the threads run in parallel.
* ``ort_limit``: ONNX Runtime alone on tensors already decoded and preprocessed
  (``pipeline.inference.preprocess.preprocess`` with the manifest entry's input, as
  ``DeclaredModel`` and the region classifier feed their sessions), one session per
  intra-op thread count from the same verified bytes and declared providers, at each
  batch size, called from one thread; and, for each thread count ``n`` above 1, one
  single-threaded session called from ``n`` threads at once (as the worker runs
  ``edge.inference_threads`` batches at once); images/s at each point and the best.
* ``chain_ort_limit``: the same for each model of a chain (PP-OCR's text detector,
  then its recogniser on every line the detector found), combined into frames/s: one
  frame costs one detector image and the mean lines per frame in recogniser strips,
  each at its own best point (an upper bound: no model waits for another).
* ``edge_path``: what one of the worker's inference threads does per batch (the
  worker's own ``infer``: decode each frame, check its regions, run the analyser,
  i.e. preprocessing, model and output decoding), on one thread, without NATS.

Each is timed ``repeats`` times for at least ``seconds`` after one untimed call, and
the best timing kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_worker.inference import pixels_of
from pipeline.inference.analysis import Analyser, Look
from pipeline.inference.images import crop_quad, decode
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.outputs import Boxes
from pipeline.inference.preprocess import InputSpec, preprocess
from pipeline.inference.providers import session_for, with_threads
from pipeline.inference.session import read_verified, tensor_name
from schemas.messages import Encoded, Frame

__all__ = ["chain_ort_limit", "decode_limit", "edge_path", "model_inputs", "ort_limit"]

_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


def _rate(fn: Callable[[], int], seconds: float, repeats: int) -> float:
    """Items/s of ``fn`` (which returns how many items it did): the best of ``repeats``
    timings of at least ``seconds`` each (the best: a limit is what the machine can
    do, and anything else running only ever slows a timing down)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        done = 0
        start = time.perf_counter()
        while True:
            done += fn()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, done / elapsed)
    return best


def decode_limit(
    images: Sequence[Encoded], threads: int, seconds: float, repeats: int
) -> dict[str, float]:
    """JPEG images decoded per second by ``threads`` threads together, and by one (best
    of ``repeats``)."""
    one = _rate(lambda: len([decode(image) for image in images]), seconds, repeats)

    def step(thread: int, call: int) -> int:
        decode(images[(thread + call) % len(images)])
        return 1

    total = _parallel_rate(step, threads, seconds, repeats, "roofline-decode")
    return {"images_per_s": total, "one_thread_images_per_s": one, "threads": threads}


def model_inputs(frames: Sequence[Frame], role: str, manifest: Path | None) -> list[np.ndarray]:
    """What the model of ``role`` is fed for ``frames``: the regions' crops when the
    frames name regions and the model is not a detector, else the whole images."""
    declaration, _ = load_declaration(role, manifest)
    images = [pixels_of(frame) for frame in frames]
    if declaration.task in ("detect", "text_detect"):
        return images
    return [
        r.crop(image) for frame, image in zip(frames, images, strict=True) for r in frame.regions
    ]


def ort_limit(
    role: str,
    manifest: Path | None,
    inputs: Sequence[np.ndarray],
    batches: Sequence[int],
    threads: Sequence[int],
    seconds: float,
    repeats: int,
) -> dict[str, Any]:
    """Images/s of the model of ``role`` alone at each (threads, callers, batch); the
    best point. ``callers`` 1: one session of ``threads`` intra-op threads called from
    one thread; ``callers`` n > 1: one session of 1 intra-op thread called from n
    threads at once (``threads`` is then n)."""
    path = DEFAULT_MANIFEST if manifest is None else manifest
    declaration, where = load_declaration(role, path)
    data = read_verified(path.parent / declaration.file, declaration.sha256)
    spec = declaration.input
    sessions = {
        n: session_for(data, with_threads(declaration.runtime, n), where)
        for n in sorted({1, *threads})
    }
    points: list[dict[str, Any]] = []
    for batch in batches:
        size = min(batch, spec.max_batch)
        tensors = [
            _feed(sessions[1], spec, [inputs[(i + k) % len(inputs)] for k in range(size)])
            for i in range(0, max(len(inputs), size), size)
        ]
        for n_threads in threads:
            ways = [(sessions[n_threads], 1)]
            if n_threads > 1:
                ways.append((sessions[1], n_threads))
            for session, callers in ways:
                rate = _rate_parallel(session, tensors, size, callers, seconds, repeats)
                points.append(
                    {"threads": n_threads, "callers": callers, "batch": size, "images_per_s": rate}
                )
    best = max(points, key=lambda p: float(p["images_per_s"]))
    return {
        "images_per_s": best["images_per_s"],
        "best_threads": best["threads"],
        "best_callers": best["callers"],
        "best_batch": best["batch"],
        "points": points,
    }


def _feed(
    session: ort.InferenceSession, spec: InputSpec, chunk: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    tensor, _ = preprocess(chunk, spec)
    name = tensor_name(spec.name, session.get_inputs())
    return {name: tensor.astype(_DTYPES[spec.dtype], copy=False)}


def _rate_parallel(
    session: ort.InferenceSession,
    feeds: Sequence[dict[str, np.ndarray]],
    n: int,
    callers: int,
    seconds: float,
    repeats: int,
) -> float:
    """Images/s of ``callers`` threads each running every one of ``feeds`` in turn on
    ``session``, whole passes only (the feeds differ: a recogniser's narrow strips run
    faster than its wide ones, and a timing must not end on the narrow ones)."""

    def one_pass(offset: int) -> int:
        for i in range(len(feeds)):
            session.run(None, feeds[(offset + i) % len(feeds)])
        return n * len(feeds)

    if callers == 1:
        return _rate(lambda: one_pass(0), seconds, repeats)

    return _parallel_rate(
        lambda thread, _: one_pass(thread), callers, seconds, repeats, "roofline-ort"
    )


def _parallel_rate(
    step: Callable[[int, int], int], threads: int, seconds: float, repeats: int, name: str
) -> float:
    """Items/s of ``threads`` threads together, each calling ``step(thread, call)``
    (which returns how many items it did) from a common start until ``seconds`` have
    passed, after one untimed call; the best of ``repeats`` timings."""

    def loop(thread: int, start_line: threading.Barrier) -> tuple[int, float]:
        step(thread, 0)
        start_line.wait()
        done, calls, start = 0, 0, time.perf_counter()
        while True:
            done += step(thread, calls)
            calls += 1
            if (elapsed := time.perf_counter() - start) >= seconds:
                return done, elapsed

    best = 0.0
    with ThreadPoolExecutor(threads, thread_name_prefix=name) as pool:
        for _ in range(repeats):
            barrier = threading.Barrier(threads)
            counts = list(pool.map(loop, range(threads), [barrier] * threads))
            best = max(best, sum(done / elapsed for done, elapsed in counts))
    return best


def chain_ort_limit(
    roles: Sequence[str],
    manifest: Path,
    images: Sequence[np.ndarray],
    batches: Sequence[int],
    threads: Sequence[int],
    seconds: float,
    repeats: int,
) -> dict[str, Any]:
    """Frames/s of a text chain's models alone (``roles``: a text detector, then a
    recogniser): each at its best point, a frame costing one detector image and the
    mean lines per frame of the recogniser."""
    from pipeline.inference.runtime import DeclaredModel

    det_role, rec_role = roles
    detector = DeclaredModel.load(det_role, manifest)
    strips: list[np.ndarray] = []
    for image in images:
        found = detector.run([image])[0]
        assert isinstance(found, Boxes) and found.polygons is not None
        strips += [crop_quad(image, quad) for quad in found.polygons]
    if not strips:
        raise ValueError("the text detector found no line in these frames")
    strips.sort(key=lambda s: s.shape[1] / s.shape[0])  # batched by width, as the chain does
    lines_per_frame = len(strips) / len(images)
    det = ort_limit(det_role, manifest, images, (1,), threads, seconds, repeats)
    rec = ort_limit(rec_role, manifest, strips, batches, threads, seconds, repeats)
    per_frame_s = 1 / det["images_per_s"] + lines_per_frame / rec["images_per_s"]
    return {
        "images_per_s": 1 / per_frame_s,
        "lines_per_frame": lines_per_frame,
        "models": {det_role: det, rec_role: rec},
    }


def edge_path(
    analyser: Analyser, frames: Sequence[Frame], batch: int, seconds: float, repeats: int
) -> float:
    """Frames/s of the worker's per-batch work (decode + analyse) on one thread."""
    chunk = [frames[i % len(frames)] for i in range(batch)]

    def run() -> int:
        looks = [Look(pixels_of(f), f.regions, f.threshold) for f in chunk]
        analyser.analyse(looks)
        return len(chunk)

    return _rate(run, seconds, repeats)
