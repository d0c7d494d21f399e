"""The text lines ``bench.cloud_throughput`` sends the cloud: shelf price-label lines.

The cloud's text reader (manifest role ``text-rec-cloud``) is asked about text lines
the edge was unsure of, as JPEG crops (quality 90, ``edge.crop_jpeg_quality``). Here
each line is cut from a price label drawn by the shelf scene generator
(``pipeline.camera.shelf.labels``: product name, price, unit price, in matplotlib's
DejaVu and STIX fonts), with a margin around its ink, scaled to 48 pixels high (the
model's line height), and JPEG-encoded once. Names are the widest lines (about 300 px),
prices the narrowest (about 100 px).

Drawing needs Pillow and, for those fonts, matplotlib; a GPU machine without them
reads the lines written here by ``python -m bench.cloud_lines OUT`` (an ``.npz`` of
the JPEG bytes, no pickles), so both machines measure the same lines.

``batches`` fixes which lines form each batch: the worker fetches its queue in order,
so its batches are the same lines as the tensors raw ONNX Runtime is timed on.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from pipeline.inference.images import decode, encode_jpeg
from pipeline.inference.preprocess import InputSpec, preprocess
from schemas.messages import Encoded, Encoding

__all__ = [
    "HEIGHT",
    "JPEG_QUALITY",
    "Cycle",
    "LinePool",
    "render_lines",
]

HEIGHT: Final = 48
JPEG_QUALITY: Final = 90
# At most this many different batches per batch size (by default): on a GPU each new
# input shape is tuned once (cuDNN's algorithm search), so the warm-up covers each.
MAX_DISTINCT_BATCHES: Final = 32


def _cut(card: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The line's ink box with a margin (a detector's box is loose), 48 px high."""
    x0, y0, x1, y1 = box
    ink = max(1, y1 - y0)
    mx, my = round(0.25 * ink), round(0.3 * ink)
    height, width = card.shape[:2]
    line = card[max(0, y0 - my) : min(height, y1 + my), max(0, x0 - mx) : min(width, x1 + mx)]
    scale = HEIGHT / line.shape[0]
    size = (max(8, round(line.shape[1] * scale)), HEIGHT)
    return cv2.resize(np.ascontiguousarray(line), size, interpolation=cv2.INTER_AREA)


def render_lines(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEG text lines from random price labels (Pillow needed)."""
    from pipeline.camera.shelf.labels import random_label, render_label

    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    while len(out) < count:
        card = render_label(random_label(rng), int(rng.integers(180, 320)))
        for line in card.lines:
            out.append(encode_jpeg(_cut(card.image, line.box), JPEG_QUALITY).data)
    return out[:count]


@dataclass(frozen=True)
class LinePool:
    """The lines as sent (JPEG bytes) and decoded (48 x W x 3 RGB)."""

    jpegs: tuple[bytes, ...]
    images: tuple[np.ndarray, ...]
    source: str

    @classmethod
    def of(cls, jpegs: Sequence[bytes], source: str) -> LinePool:
        images = tuple(decode(Encoded(data, Encoding.JPEG)) for data in jpegs)
        return cls(tuple(jpegs), images, source)

    @classmethod
    def obtain(cls, count: int, path: Path | None, seed: int = 0) -> LinePool:
        """At least ``count`` lines: read from ``path`` when it exists, else drawn (and
        written to ``path`` when one is given)."""
        if path is not None and path.exists():
            pool = cls.load(path)
            if len(pool.jpegs) < count:
                raise SystemExit(f"{path} has {len(pool.jpegs)} lines; {count} are needed")
            return pool
        jpegs = render_lines(count, seed)
        if path is not None:
            cls.save(path, jpegs)
        return cls.of(jpegs, f"drawn (seed {seed})")

    @staticmethod
    def save(path: Path, jpegs: Sequence[bytes]) -> None:
        ends = np.cumsum([len(data) for data in jpegs], dtype=np.int64)
        data = np.frombuffer(b"".join(jpegs), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, data=data, ends=ends)

    @classmethod
    def load(cls, path: Path) -> LinePool:
        with np.load(path, allow_pickle=False) as saved:
            data, ends = saved["data"].tobytes(), saved["ends"].tolist()
        starts = [0, *ends[:-1]]
        return cls.of([data[a:b] for a, b in zip(starts, ends, strict=True)], str(path))

    def widths(self) -> dict[str, float]:
        """The lines' widths (mean, p10, p50, p90) and mean JPEG size, for the report."""
        w = np.array([image.shape[1] for image in self.images], dtype=np.float64)
        return {
            "count": len(self.images),
            "height": HEIGHT,
            "width_mean": round(float(w.mean()), 1),
            "width_p10": float(np.percentile(w, 10)),
            "width_p50": float(np.percentile(w, 50)),
            "width_p90": float(np.percentile(w, 90)),
            "jpeg_bytes_mean": round(float(np.mean([len(j) for j in self.jpegs])), 1),
        }


@dataclass(frozen=True)
class Cycle:
    """The order lines are sent in at one batch size: line ``k`` is pool line
    ``k % length``, ``distinct`` batches of ``batch`` lines, repeated."""

    batch: int
    distinct: int

    @classmethod
    def of(cls, batch: int, pool_size: int, most: int = MAX_DISTINCT_BATCHES) -> Cycle:
        """At most ``most`` distinct batches of ``batch`` from ``pool_size`` lines."""
        if batch > pool_size:
            raise ValueError(f"batch {batch} is larger than the {pool_size} lines")
        return cls(batch, max(1, min(pool_size // batch, most)))

    @property
    def length(self) -> int:
        return self.batch * self.distinct

    def line(self, k: int) -> int:
        return k % self.length

    def batch_lines(self, j: int) -> range:
        start = (j % self.distinct) * self.batch
        return range(start, start + self.batch)

    def tensors(self, pool: LinePool, spec: InputSpec) -> list[np.ndarray]:
        """One model input per distinct batch, made as the worker makes it (lines sorted
        by aspect ratio, padded to the widest), in the model's dtype."""
        out = []
        for j in range(self.distinct):
            images = [pool.images[i] for i in self.batch_lines(j)]
            images.sort(key=lambda a: a.shape[1] / max(1, a.shape[0]))
            tensor, _ = preprocess(images, spec)
            out.append(tensor.astype(np.float16 if spec.dtype == "float16" else np.float32))
        return out

    def batches_for(self, seconds: float, lines_per_s: float, at_least: int) -> int:
        """Batches that take about ``seconds`` at ``lines_per_s``, at least ``at_least``."""
        return max(at_least, math.ceil(seconds * lines_per_s / self.batch))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cloud_lines",
        description="Draw the benchmark's text lines and write them (JPEG bytes, .npz).",
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    jpegs = render_lines(args.count, args.seed)
    LinePool.save(args.out, jpegs)
    pool = LinePool.load(args.out)
    print(f"{args.out}: {pool.widths()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
