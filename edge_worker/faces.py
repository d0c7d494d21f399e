"""MTCNN face detection with onnxruntime, numpy and OpenCV: no torch at run time.

MTCNN (Zhang, Zhang, Li and Qiao, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks", 2016) runs three small networks in turn;
the ONNX files are models/mtcnn/ (exported from facenet-pytorch 2.6.0, MIT). This
module repeats facenet-pytorch's ``detect_face`` step by step, so that it returns the
same boxes (docs/privacy.md has the comparison):

1. An image pyramid. The image is shrunk by ``12 / min_size`` (so a face of
   ``min_size`` pixels fills PNet's 12x12 window), then again by ``factor`` (0.709,
   half the area) until its short side is under 12 pixels. Each level is an area
   average, the same windows as torch's ``interpolate(mode="area")``, taken from one
   integral image of the frame.
2. PNet, fully convolutional, on each level: one cell per 12x12 window, stride 2.
   Cells with a face probability >= ``thresholds[0]`` become boxes; non-maximum
   suppression at IoU 0.5 within a level, then 0.7 across levels; each box moved by
   its regression, then made square.
3. RNet on every surviving box, cut from the frame and averaged down to 24x24, all
   boxes in one batch: keeps those > ``thresholds[1]``, suppression at 0.7, regression,
   square.
4. ONet on 48x48 cuts, one batch: keeps those > ``thresholds[2]``, regression, five
   landmarks; suppression at 0.7 of the smaller box's area ("Min"), which removes
   boxes nested inside a better one.

PNet runs once per pyramid level rather than on a mosaic of levels: the levels differ
in size, and packing them into one canvas would change the cells at their borders
(PNet's pooling reads across them), so its boxes would no longer be the reference's.
The small levels cost little (docs/privacy.md). RNet and ONet see every candidate of
every level in a single batched call each.

Every call is synchronous CPU work; onnxruntime lets several threads run one session
at once, so one ``MTCNN`` may serve a thread pool. Each session uses one thread.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import onnxruntime as ort

from models.mtcnn import HERE as MODELS_DIR
from models.mtcnn import NETWORKS
from pipeline.inference.decoders.nms import nms
from schemas.errors import ConfigError, ModelError, SchemaError

__all__ = ["MODELS_DIR", "MTCNN", "Faces", "MTCNNOptions", "verify_models"]

# PNet's window, and the stride of its cells in the level they were found in.
_WINDOW: Final = 12
_STRIDE: Final = 2
# facenet-pytorch's normalisation: (pixel - 127.5) / 128.
_MEAN: Final = 127.5
_SCALE: Final = 0.0078125
# facenet-pytorch's suppression thresholds: within a level, across levels, after
# RNet, after ONet (the last by the smaller box's area).
_NMS_LEVEL: Final = 0.5
_NMS_IMAGE: Final = 0.7
_NMS_RNET: Final = 0.7
_NMS_ONET: Final = 0.7


@dataclass(frozen=True, slots=True)
class MTCNNOptions:
    """facenet-pytorch's ``MTCNN`` defaults.

    ``min_size``: the smallest face searched for, in pixels (PNet's window is 12, so
    no smaller than that). ``thresholds``: face probability needed by PNet, RNet and
    ONet. ``factor``: the ratio of one pyramid level's side to the one before.
    """

    min_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709

    def __post_init__(self) -> None:
        size = self.min_size
        if isinstance(size, bool) or not isinstance(size, int) or not 12 <= size <= 4096:
            raise ConfigError(f"min_size must be an integer in [12, 4096], got {size!r}")
        t = self.thresholds
        if (
            not isinstance(t, tuple)
            or len(t) != 3
            or not all(_number(v) and 0.0 <= v < 1.0 for v in t)
        ):
            raise ConfigError(f"thresholds must be three numbers in [0, 1), got {t!r}")
        if not _number(self.factor) or not 0.3 <= self.factor <= 0.9:
            raise ConfigError(f"factor must be a number in [0.3, 0.9], got {self.factor!r}")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, eq=False)
class Faces:
    """The faces found in one image, most probable first.

    ``boxes`` float32 [K, 4]: left, top, right, bottom in the image's pixels, as MTCNN
    regresses them (they may reach past the image's edges). ``probabilities`` float32
    [K]: ONet's face probability. ``landmarks`` float32 [K, 5, 2]: x, y of the eyes,
    the nose and the corners of the mouth.
    """

    boxes: np.ndarray
    probabilities: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def verify_models(folder: Path = MODELS_DIR) -> dict[str, bytes]:
    """The bytes of pnet, rnet and onet, each checked against ``provenance.json``.

    Raises ModelError if the provenance file or a model file is missing, unreadable or
    not the recorded one.
    """
    try:
        provenance: dict[str, Any] = json.loads((folder / "provenance.json").read_text())
        entries = {name: provenance["files"][name] for name in NETWORKS}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"MTCNN provenance {folder / 'provenance.json'} is unusable: {e}") from e
    found: dict[str, bytes] = {}
    for name, entry in entries.items():
        path = folder / str(entry.get("file", ""))
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"MTCNN model {path} is missing or unreadable: {e}") from e
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            raise ModelError(
                f"MTCNN model {path} has SHA-256 {digest}, provenance.json records "
                f"{entry.get('sha256')}; re-export with python -m models.mtcnn.export"
            )
        found[name] = data
    return found


class MTCNN:
    """The three networks in onnxruntime sessions, and the pipeline that runs them."""

    def __init__(self, options: MTCNNOptions | None = None, folder: Path = MODELS_DIR) -> None:
        self.options = options or MTCNNOptions()
        settings = ort.SessionOptions()
        settings.intra_op_num_threads = 1
        settings.inter_op_num_threads = 1
        settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        settings.log_severity_level = 3
        sessions = {}
        for name, data in verify_models(folder).items():
            try:
                sessions[name] = ort.InferenceSession(
                    data, settings, providers=["CPUExecutionProvider"]
                )
            except Exception as e:  # onnxruntime raises its own, unexported exception types
                raise ModelError(f"MTCNN model {name} could not be loaded: {e}") from e
        self._pnet, self._rnet, self._onet = (sessions[n] for n in NETWORKS)

    def scales(self, rows: int, cols: int) -> list[float]:
        """The pyramid's scales for an image of ``rows`` x ``cols``, largest first."""
        o = self.options
        scale = _WINDOW / o.min_size
        side = min(rows, cols) * scale
        out = []
        while side >= _WINDOW:
            out.append(scale)
            scale *= o.factor
            side *= o.factor
        return out

    def detect(self, image: np.ndarray) -> Faces:
        """The faces in ``image``: uint8, RGB (rows, columns, 3) or grayscale (rows, columns)."""
        rgb = _rgb(image)
        rows, cols = rgb.shape[:2]
        integral = cv2.integral(rgb)  # int32 [rows + 1, cols + 1, 3]: exact sums of uint8
        boxes = self._propose(integral, rows, cols)
        if len(boxes):
            boxes = self._refine(integral, rows, cols, boxes)
        if len(boxes):
            return self._output(integral, rows, cols, boxes)
        return _no_faces()

    def _propose(self, integral: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """Stage 1: [K, 5] square boxes (x1, y1, x2, y2, score) from PNet."""
        threshold = self.options.thresholds[0]
        found = []
        for scale in self.scales(rows, cols):
            # facenet-pytorch's level size: int(side * scale + 1).
            level = _area(integral, 0, 0, rows, cols, int(rows * scale + 1), int(cols * scale + 1))
            reg, prob = self._pnet.run(None, {"image": _normalise(level[None])})
            ys, xs = np.nonzero(prob[0, 1] >= threshold)
            if not len(ys):
                continue
            cells = np.stack([xs, ys], axis=1).astype(np.float32)
            start = np.floor((_STRIDE * cells + 1) / scale)
            end = np.floor((_STRIDE * cells + _WINDOW) / scale)
            score = prob[0, 1, ys, xs]
            offsets = reg[0][:, ys, xs].T
            level_boxes = np.concatenate([start, end, score[:, None], offsets], axis=1)
            found.append(level_boxes[nms(level_boxes[:, :4], score, _NMS_LEVEL)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found).astype(np.float32)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], _NMS_IMAGE)]
        # Stage 1 moves boxes by their width without the +1 that stages 2 and 3 use.
        size = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
        moved = boxes[:, :4] + boxes[:, 5:9] * size
        return _square(np.concatenate([moved, boxes[:, 4:5]], axis=1))

    def _refine(self, integral: np.ndarray, rows: int, cols: int, boxes: np.ndarray) -> np.ndarray:
        """Stage 2: RNet keeps, moves and squares the boxes."""
        boxes, cuts = _cuts(integral, rows, cols, boxes, 24)
        if not len(boxes):
            return boxes
        reg, prob = self._rnet.run(None, {"image": _normalise(cuts)})
        keep = prob[:, 1] > self.options.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], _NMS_RNET)
        return _square(_regress(boxes[pick], reg[pick]))

    def _output(self, integral: np.ndarray, rows: int, cols: int, boxes: np.ndarray) -> Faces:
        """Stage 3: ONet keeps and moves the boxes and places the landmarks."""
        boxes, cuts = _cuts(integral, rows, cols, boxes, 48)
        if not len(boxes):
            return _no_faces()
        reg, points, prob = self._onet.run(None, {"image": _normalise(cuts)})
        keep = prob[:, 1] > self.options.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], prob[keep, 1:2]], axis=1)
        reg, points = reg[keep], points[keep]
        # Landmarks are shares of the box before its regression (+1 as in bbreg).
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        marks = np.stack(
            [
                size[:, 0:1] * points[:, :5] + boxes[:, 0:1] - 1,
                size[:, 1:2] * points[:, 5:] + boxes[:, 1:2] - 1,
            ],
            axis=2,
        )
        boxes = _regress(boxes, reg)
        pick = _nms_min(boxes[:, :4], boxes[:, 4], _NMS_ONET)
        return Faces(
            boxes=np.ascontiguousarray(boxes[pick, :4], dtype=np.float32),
            probabilities=np.ascontiguousarray(boxes[pick, 4], dtype=np.float32),
            landmarks=np.ascontiguousarray(marks[pick], dtype=np.float32),
        )


def _no_faces() -> Faces:
    return Faces(
        np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    )


def _rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise SchemaError("image must be a uint8 numpy array")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise SchemaError(f"image must be (rows, columns) or (rows, columns, 3), got {image.shape}")


def _windows(start: np.ndarray, length: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-average-pooling windows (torch's "area"): [..., out] first and end indexes.

    Output cell i of a span of ``length`` pixels from ``start`` averages pixels
    ``floor(i * length / out)`` up to ``ceil((i + 1) * length / out)``.
    """
    i = np.arange(out)
    length = length[..., None]
    first = (i * length) // out
    end = -((-(i + 1) * length) // out)
    return start[..., None] + first, start[..., None] + end


def _area(
    integral: np.ndarray, top: int, left: int, rows: int, cols: int, out_rows: int, out_cols: int
) -> np.ndarray:
    """float32 [out_rows, out_cols, 3]: the area average of one rectangle of the image."""
    r0, r1 = _windows(np.asarray(top), np.asarray(rows), out_rows)
    c0, c1 = _windows(np.asarray(left), np.asarray(cols), out_cols)
    by_rows = np.take(integral, r1, axis=0)
    by_rows -= np.take(integral, r0, axis=0)
    sums = np.take(by_rows, c1, axis=1)
    sums -= np.take(by_rows, c0, axis=1)
    inverse = 1.0 / ((r1 - r0)[:, None] * (c1 - c0)[None, :]).astype(np.float32)
    out: np.ndarray = sums.astype(np.float32) * inverse[:, :, None]
    return out


def _cuts(
    integral: np.ndarray, rows: int, cols: int, boxes: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """The boxes that reach into the image, and float32 [K, side, side, 3] cuts of them.

    As facenet-pytorch's ``pad``: the box is truncated to integers and clipped to the
    image (not padded with zeros), then averaged down (or up) to ``side`` pixels.
    """
    whole = np.trunc(boxes[:, :4]).astype(np.int64)
    x = np.maximum(whole[:, 0], 1) - 1
    y = np.maximum(whole[:, 1], 1) - 1
    ex = np.minimum(whole[:, 2], cols)
    ey = np.minimum(whole[:, 3], rows)
    inside = (ex > x) & (ey > y)
    boxes, x, y, ex, ey = boxes[inside], x[inside], y[inside], ex[inside], ey[inside]
    r0, r1 = _windows(y, ey - y, side)  # [K, side]
    c0, c1 = _windows(x, ex - x, side)
    # Gather whole pixels (3 channels at once) by flat index: [K, side, side] each.
    width = integral.shape[1]
    flat = integral.reshape(-1, 3)
    top, bottom = (r0 * width)[:, :, None], (r1 * width)[:, :, None]
    first, end = c0[:, None, :], c1[:, None, :]
    sums = np.take(flat, bottom + end, axis=0)
    sums -= np.take(flat, top + end, axis=0)
    sums -= np.take(flat, bottom + first, axis=0)
    sums += np.take(flat, top + first, axis=0)
    count = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :]).astype(np.float32)
    cuts: np.ndarray = sums.astype(np.float32) / count[..., None]
    return boxes, cuts


def _normalise(images: np.ndarray) -> np.ndarray:
    """float32 NHWC pixels -> NCHW network input."""
    out: np.ndarray = np.ascontiguousarray(
        ((images - _MEAN) * _SCALE).transpose(0, 3, 1, 2), dtype=np.float32
    )
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``bbreg``: move each side by its offset times the box's size + 1."""
    out = boxes.copy()
    size = boxes[:, 2:4] - boxes[:, 0:2] + 1
    out[:, :4] = boxes[:, :4] + reg * np.concatenate([size, size], axis=1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``rerec``: each box grown to a square about its centre."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _nms_min(xyxy: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy suppression by overlap / the smaller area, pixel-inclusive (+1), as MTCNN's
    original "Min" method: a box mostly inside a better one is dropped."""
    x1, y1, x2, y2 = (xyxy[:, i].astype(np.float64) for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        overlap = w * h / np.minimum(area[best], area[rest])
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)
