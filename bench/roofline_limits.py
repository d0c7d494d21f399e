"""The limits ``bench.roofline`` sets the edge worker against, measured without it.

* ``decode_limit``: JPEG decoding alone (``pipeline.inference.images.decode``, the
  edge's own call: cv2 plus the BGR->RGB conversion) in one thread per usable core,
  images/s; cv2 releases the GIL while it decodes, so the threads run in parallel.
* ``ort_limit``: ONNX Runtime alone on tensors already decoded and preprocessed
  (``pipeline.inference.preprocess.preprocess`` with the manifest entry's input, as
  ``DeclaredModel`` and the region classifier feed their sessions), one session per
  intra-op thread count from the same verified bytes and declared providers, at each
  batch size; images/s at each point and the best.
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
from pipeline.inference.images import decode
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.preprocess import preprocess
from pipeline.inference.providers import session_for, with_threads
from pipeline.inference.session import read_verified, tensor_name
from schemas.messages import Encoded, Frame

__all__ = ["decode_limit", "edge_path", "model_inputs", "ort_limit"]

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

    def loop(offset: int, start_line: threading.Barrier) -> tuple[int, float]:
        start_line.wait()
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            decode(images[(offset + done) % len(images)])
            done += 1
        return done, elapsed

    total = 0.0
    with ThreadPoolExecutor(threads, thread_name_prefix="roofline-decode") as pool:
        for _ in range(repeats):
            barrier = threading.Barrier(threads)
            counts = list(pool.map(loop, range(threads), [barrier] * threads))
            total = max(total, sum(done / elapsed for done, elapsed in counts))
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
    """Images/s of the model of ``role`` alone at each (threads, batch); the best point."""
    path = DEFAULT_MANIFEST if manifest is None else manifest
    declaration, where = load_declaration(role, path)
    data = read_verified(path.parent / declaration.file, declaration.sha256)
    spec = declaration.input
    points: list[dict[str, Any]] = []
    for n_threads in threads:
        session = session_for(data, with_threads(declaration.runtime, n_threads), where)
        name = tensor_name(spec.name, session.get_inputs())
        for batch in batches:
            chunk = [inputs[i % len(inputs)] for i in range(min(batch, spec.max_batch))]
            tensor, _ = preprocess(chunk, spec)
            feed = {name: tensor.astype(_DTYPES[spec.dtype], copy=False)}

            rate = _rate(_runner(session, feed, len(chunk)), seconds, repeats)
            points.append({"threads": n_threads, "batch": len(chunk), "images_per_s": rate})
    best = max(points, key=lambda p: float(p["images_per_s"]))
    return {
        "images_per_s": best["images_per_s"],
        "best_threads": best["threads"],
        "best_batch": best["batch"],
        "points": points,
    }


def _runner(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], n: int
) -> Callable[[], int]:
    def run() -> int:
        session.run(None, feed)
        return n

    return run


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
