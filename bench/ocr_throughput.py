"""PP-OCR model throughput by batch size: text detection, edge and cloud line reading.

Run ``python -m bench.ocr_throughput`` (``--batches 1,2,4,8,16``, ``--threads 1,2``,
``--lines 48``, ``--repeats 4``; ``--json PATH``, by default
``bench/results/ocr_throughput.json``). Offline, no NATS; a few minutes on 2 cores.

The inputs are real: the frames of a generated shelf video (1280x720, decoded from its
H.264) for the text detector (``text-det``), and the line strips the detector found
in them, warped as ``ModelChain`` warps them, for the recognisers (``text-rec-edge``,
``text-rec-cloud``). Each model processes the same pool (16 frames, ``--lines``
strips) in batches of each size, two ways:

* **raw**: ``onnxruntime`` ``session.run`` on tensors made beforehand (the model alone);
* **declared**: ``DeclaredModel.run`` on the decoded pixels, with the declared input's
  ``max_batch`` set to the batch size: resizing, normalising, padding and decoding
  (DB boxes, CTC text) included, as a worker runs it. Strips are batched by width,
  as PaddleOCR and ``DeclaredModel`` do, so a batch pads to similar widths.

Preprocessing alone (``preprocess`` on the pixels, as ``DeclaredModel.run`` calls it)
is timed too, so its share does not rest on the difference of two noisy times. Each
configuration runs one batch to warm up, then the three take turns ``--repeats``
times; the best of each is kept.
Sessions have 1 inter-op thread and the given intra-op threads. A benchmark: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from bench.common import begin_run, echo, number_list, write_figures
from models.ppocr.build import MANIFEST
from pipeline.camera.shelf.tiers import Readers, decode_frames
from pipeline.camera.shelf.writer import write_shelf_video
from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.images import crop_quad
from pipeline.inference.manifest import load_declaration
from pipeline.inference.outputs import Boxes
from pipeline.inference.preprocess import InputSpec, preprocess
from pipeline.inference.providers import session_for, with_threads
from pipeline.inference.runtime import DeclaredModel
from pipeline.inference.session import read_verified, tensor_name

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_JSON: Final = ROOT / "bench" / "results" / "ocr_throughput.json"
ROLES: Final = ("text-det", "text-rec-edge", "text-rec-cloud")
FRAMES: Final = 16


@dataclass(frozen=True, eq=False)
class _Loaded:
    """One model's declaration, session, labels and name in messages."""

    declaration: ModelDeclaration
    session: ort.InferenceSession
    labels: tuple[str, ...]
    where: str

    def declared(self, batch: int) -> DeclaredModel:
        """The declared model, its input's ``max_batch`` set to ``batch`` (same session)."""
        d = self.declaration
        d = replace(d, input=replace(d.input, max_batch=batch))
        return DeclaredModel(d, self.session, self.labels, self.where)


def _load(role: str, threads: int) -> _Loaded:
    """The model of ``role`` with ``threads`` intra-op threads."""
    declaration, where = load_declaration(role, MANIFEST)
    declaration = replace(declaration, runtime=with_threads(declaration.runtime, threads))
    data = read_verified(MANIFEST.parent / declaration.file, declaration.sha256)
    session = session_for(data, declaration.runtime, where)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = declaration.resolve_labels(MANIFEST.parent, metadata, where)
    return _Loaded(declaration, session, labels, where)


def _run_all(session: ort.InferenceSession, name: str, tensors: Sequence[np.ndarray]) -> None:
    for tensor in tensors:
        session.run(None, {name: tensor})


def _best(runs: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """The best time of each of ``runs`` (warmed up by the caller); the runs take
    turns, so that a busy spell of a shared machine slows them alike."""
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for k, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[k] = min(best[k], time.perf_counter() - started)
    return best


def _prepare(chunks: Sequence[Sequence[np.ndarray]], spec: InputSpec) -> list[np.ndarray]:
    return [preprocess(chunk, spec)[0].astype(np.float32, copy=False) for chunk in chunks]


def _inputs(folder: Path, lines: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``FRAMES`` decoded frames of a shelf video and ``lines`` line strips from them
    (every detected line in turn, frames in order)."""
    video = write_shelf_video(folder / "shelf.mp4", seconds=4, width=1280, height=720, fps=5)
    frames = [image for _, image in decode_frames(video.video)][:FRAMES]
    det = Readers.load().det
    strips: list[np.ndarray] = []
    for image in frames:
        found = det.run([image])[0]
        assert isinstance(found, Boxes) and found.polygons is not None
        strips += [crop_quad(image, quad) for quad in found.polygons]
        if len(strips) >= lines:
            break
    return frames, strips[:lines]


def measure(
    role: str, pool: Sequence[np.ndarray], batches: Sequence[int], threads: int, repeats: int
) -> list[dict[str, Any]]:
    """Items per second, raw and declared, of ``role`` on ``pool`` at each batch size."""
    model = _load(role, threads)
    spec = model.declaration.input
    order = list(range(len(pool)))
    if spec.resize == "fit_height":  # as DeclaredModel.run: batches of similar widths
        order.sort(key=lambda i: pool[i].shape[1] / max(1, pool[i].shape[0]))
    name = tensor_name(spec.name, model.session.get_inputs())
    rows = []
    for batch in batches:
        chunks = [[pool[i] for i in order[k : k + batch]] for k in range(0, len(order), batch)]
        wide = replace(spec, max_batch=batch)
        tensors = _prepare(chunks, wide)
        declared_model = model.declared(batch)
        # warm up: one batch each (a new batch shape makes the session allocate)
        model.session.run(None, {name: tensors[0]})
        declared_model.run(chunks[0])
        raw, declared, prepare = _best(
            [
                partial(_run_all, model.session, name, tensors),
                partial(declared_model.run, pool),
                partial(_prepare, chunks, wide),
            ],
            repeats,
        )
        row = {
            "role": role,
            "threads": threads,
            "batch": batch,
            "items": len(pool),
            "raw_s": raw,
            "declared_s": declared,
            "preprocess_s": prepare,
            "raw_per_s": len(pool) / raw,
            "declared_per_s": len(pool) / declared,
            "outside_model": 1 - raw / declared,
            "preprocess_share": prepare / (prepare + raw),
        }
        echo(
            f"  {role:15} {threads} thr batch {batch:2}: raw {row['raw_per_s']:7.1f}/s, "
            f"declared {row['declared_per_s']:7.1f}/s; preprocessing "
            f"{row['preprocess_share']:.0%} of preprocessing + model"
        )
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocr_throughput", description=__doc__)
    parser.add_argument("--batches", default="1,2,4,8,16")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--lines", type=int, default=48, help="line strips in the pool")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    batches = number_list(parser, "--batches", args.batches, int, (1, 64))
    threads = number_list(parser, "--threads", args.threads, int, (1, 16))
    machine, command = begin_run(
        "shelf labels: PP-OCR throughput by batch size", "bench.ocr_throughput", argv
    )
    load_before = os.getloadavg()
    echo("load average before (1/5/15 min): " + " ".join(f"{x:.2f}" for x in load_before))
    with tempfile.TemporaryDirectory(prefix="ocr_throughput") as tmp:
        frames, strips = _inputs(Path(tmp), args.lines)
    widths = [s.shape[1] * 48 // max(1, s.shape[0]) for s in strips]
    echo(
        f"{len(frames)} frames 1280x720; {len(strips)} strips, width at height 48: "
        f"median {int(np.median(widths))}, max {max(widths)}"
    )
    rows = []
    for role in ROLES:
        pool = frames if role == "text-det" else strips
        for n in threads:
            rows += measure(role, pool, batches, n, args.repeats)
    echo("\n| model | threads | " + " | ".join(f"batch {b}" for b in batches) + " |")
    echo("|---|---|" + "---|" * len(batches))
    for role in ROLES:
        for n in threads:
            cells = [
                f"{r['raw_per_s']:.0f} / {r['declared_per_s']:.0f}"
                for r in rows
                if r["role"] == role and r["threads"] == n
            ]
            echo(f"| {role} | {n} | " + " | ".join(cells) + " |")
    document = {
        "command": command,
        "machine": machine,
        "frames": len(frames),
        "strips": len(strips),
        "strip_widths": widths,
        "rows": rows,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    write_figures(args.json, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
