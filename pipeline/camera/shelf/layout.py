"""Where things are: the shelves, their label slots, the backdrop, and the camera.

The scene is drawn flat on a *canvas* the size of the frame: three shelf rails, far
(top, small labels), mid and near (bottom, labels about 3.3 times as high as the far
ones), packs cut from photographs standing above each rail, and a poster of the
astronaut (a face in view). ``shelf_layout`` places the rows and their label slots;
``draw_backdrop`` paints everything but the labels.

The camera sees the canvas through a homography per frame (``camera_path``): a fixed
slight perspective that also zooms in a little (so the frame never shows past the
canvas), then a small translation that changes every frame (shake), plus the jerks
the caller asks for (quick moves that the motion blur follows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.camera.shelf.photos import FACE_BOX, face_photo, product_photos

__all__ = [
    "SIZE_CLASSES",
    "CameraPath",
    "Jerk",
    "Row",
    "ShelfLayout",
    "Slot",
    "camera_path",
    "draw_backdrop",
    "project",
    "shelf_layout",
]

SIZE_CLASSES = ("far", "mid", "near")

# size class, label height and pack band height (fractions of the frame height)
_ROWS: tuple[tuple[str, float, float], ...] = (
    ("far", 0.052, 0.10),
    ("mid", 0.095, 0.15),
    ("near", 0.175, 0.21),
)
_TOP = 0.07  # above the far row's packs
_SIDE = 0.055  # left and right of the label slots
_SLOT_ASPECT = 2.08  # slot width / label height: room for the widest card


@dataclass(frozen=True)
class Slot:
    """A place on a rail for one label: its top-left corner, width and the height of
    a label there (canvas pixels)."""

    index: int
    row: int
    size: str
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x + self.width / 2, self.y + self.height / 2)


@dataclass(frozen=True)
class Row:
    """One shelf: its size class, the band where its packs stand and its rail."""

    size: str
    band: tuple[float, float]  # y0, y1 of the packs
    rail: tuple[float, float]  # y0, y1 of the front edge the labels hang on
    label_height: float


@dataclass(frozen=True)
class ShelfLayout:
    width: int
    height: int
    rows: tuple[Row, ...]
    slots: tuple[Slot, ...]


def shelf_layout(width: int, height: int) -> ShelfLayout:
    """The rows and label slots of a ``width`` x ``height`` canvas (the same for every
    seed: far at the top, near at the bottom)."""
    rows: list[Row] = []
    slots: list[Slot] = []
    y = _TOP * height
    left, right = _SIDE * width, (1 - _SIDE) * width
    for r, (size, label_frac, band_frac) in enumerate(_ROWS):
        label_h = label_frac * height
        band = (y, y + band_frac * height)
        rail = (band[1], band[1] + 1.12 * label_h)
        rows.append(Row(size, band, rail, label_h))
        slot_w, gap = _SLOT_ASPECT * label_h, max(6.0, 0.2 * label_h)
        count = max(1, int((right - left + gap) // (slot_w + gap)))
        spare = (right - left) - count * slot_w
        step = slot_w + (spare / (count - 1) if count > 1 else 0.0)
        x0 = left if count > 1 else (left + right - slot_w) / 2
        for i in range(count):
            slots.append(
                Slot(len(slots), r, size, x0 + i * step, rail[0] + 0.06 * label_h, slot_w, label_h)
            )
        y = rail[1]
    return ShelfLayout(width, height, tuple(rows), tuple(slots))


def _cover(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """``photo`` scaled to cover ``width`` x ``height`` and cut to it (centred)."""
    h, w = photo.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    big = cv2.resize(photo, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return big[y : y + height, x : x + width]


def _pack(rng: np.random.Generator, photos: Sequence[np.ndarray], w: int, h: int) -> np.ndarray:
    """A pack: a random cut of a photograph, shaded to look like a box."""
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    cut_h = int(rng.integers(ph // 4, ph // 2 + 1))
    cut_w = max(4, min(pw, round(cut_h * w / max(1, h))))
    y, x = int(rng.integers(0, ph - cut_h + 1)), int(rng.integers(0, pw - cut_w + 1))
    pack = cv2.resize(photo[y : y + cut_h, x : x + cut_w], (w, h), interpolation=cv2.INTER_AREA)
    shade = np.linspace(1.0, float(rng.uniform(0.55, 0.8)), w, dtype=np.float32)
    if rng.random() < 0.5:
        shade = shade[::-1]
    out: np.ndarray = (pack.astype(np.float32) * shade[None, :, None]).astype(np.uint8)
    return out


def draw_backdrop(
    layout: ShelfLayout, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """The canvas without labels (RGB), and the quadrilateral of the astronaut's face on
    it (4 x 2, canvas pixels; None when no band is tall enough for the poster)."""
    width, height = layout.width, layout.height
    photos = product_photos()
    wall = _cover(photos[int(rng.integers(len(photos)))], width, height)
    wall = cv2.GaussianBlur(wall, (0, 0), max(1.0, 0.012 * height))
    canvas = (wall.astype(np.float32) * 0.45).astype(np.uint8)

    tops = [0.0] + [row.rail[1] for row in layout.rows]
    bands = [row.band for row in layout.rows] + [(layout.rows[-1].rail[1], float(height))]
    for (b0, b1), top in zip(bands, tops, strict=True):
        y1 = round(b1)
        band_h = round(b1 - b0)
        x = int(rng.integers(-band_h // 2, 1))
        while x < width and band_h > 4:
            w = max(6, round(band_h * rng.uniform(0.35, 0.9)))
            h = max(4, round(band_h * rng.uniform(0.55, 0.95)))
            y0 = max(round(top), y1 - h)
            pack = _pack(rng, photos, w, y1 - y0)
            xa, xb = max(0, x), min(width, x + w)
            if xb > xa and y1 > y0:
                canvas[y0:y1, xa:xb] = pack[:, xa - x : xb - x]
            x += w + int(rng.integers(2, max(3, band_h // 12)))
    for row in layout.rows:
        r0, r1 = round(row.rail[0]), round(row.rail[1])
        grey = int(rng.integers(150, 215))
        canvas[r0:r1] = (grey, grey, grey + 6)
        canvas[r0 : r0 + max(1, (r1 - r0) // 12)] = (grey + 25, grey + 25, grey + 28)
        shadow = max(2, round(0.015 * height))
        below = canvas[r1 : r1 + shadow]
        canvas[r1 : r1 + shadow] = (below.astype(np.float32) * 0.35).astype(np.uint8)
    canvas[: max(2, round(0.02 * height))] = (120, 120, 126)  # the rail above
    return canvas, _hang_poster(canvas, layout, rng)


def _hang_poster(
    canvas: np.ndarray, layout: ShelfLayout, rng: np.random.Generator
) -> np.ndarray | None:
    """Stand the astronaut's poster among the packs of the tallest band; return where
    her face is."""
    row = max(layout.rows, key=lambda r: r.band[1] - r.band[0])
    band_h = row.band[1] - row.band[0]
    if band_h < 24:
        return None
    photo = face_photo()
    fx0, fy0, fx1, fy1 = FACE_BOX
    cut = (110, 20, 340, 290)  # x0, y0, x1, y1 around her face
    h = round(0.92 * band_h)
    scale = h / (cut[3] - cut[1])
    w = round((cut[2] - cut[0]) * scale)
    left, right = _SIDE * layout.width, (1 - _SIDE) * layout.width - w
    x = round(float(rng.uniform(left, max(left, right))))
    y = round(row.band[1]) - h
    face = photo[cut[1] : cut[3], cut[0] : cut[2]]
    poster = cv2.resize(face, (w, h), interpolation=cv2.INTER_AREA)
    canvas[y : y + h, x : x + w] = poster
    edge = max(1, h // 60)
    canvas[y : y + h, x : x + edge] = 235
    canvas[y : y + h, x + w - edge : x + w] = 235
    corners = [(fx0, fy0), (fx1, fy0), (fx1, fy1), (fx0, fy1)]
    return np.array(
        [(x + (cx - cut[0]) * scale, y + (cy - cut[1]) * scale) for cx, cy in corners],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class Jerk:
    """A quick camera move: over frames ``start`` .. ``stop`` - 1 the view goes
    ``(dx, dy)`` pixels away and comes back."""

    start: int
    stop: int
    dx: float
    dy: float


@dataclass(frozen=True)
class CameraPath:
    """Per frame: the canvas-to-frame homography (3 x 3) and the translation on top of
    the fixed perspective (the shake and jerks, frame pixels)."""

    homographies: tuple[np.ndarray, ...]
    offsets: np.ndarray  # frames x 2

    def velocity(self, frame: int) -> tuple[float, float]:
        """How far the view moved from the frame before (pixels)."""
        if frame <= 0:
            return (0.0, 0.0)
        d = self.offsets[frame] - self.offsets[frame - 1]
        return (float(d[0]), float(d[1]))


def camera_path(
    frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    jerks: Sequence[Jerk] = (),
    *,
    shake: float = 0.0035,
) -> CameraPath:
    """The camera over ``frames`` frames: a fixed slight perspective (corners moved by
    up to 1.2 % of the frame, zoomed 7 % in), a smooth shake of about ``shake`` x width
    pixels that changes every frame, and the ``jerks``."""
    src = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=np.float32)
    centre = np.array([width / 2, height / 2], dtype=np.float32)
    zoom = 1.07
    tilt = rng.uniform(-0.012, 0.012, size=(4, 2)) * np.array([width, height])
    dst = (centre + zoom * (src - centre) + tilt).astype(np.float32)
    perspective = cv2.getPerspectiveTransform(src, dst)

    noise = rng.normal(size=(frames + 6, 2))
    kernel = np.ones(4) / 4
    smooth = np.stack([np.convolve(noise[:, k], kernel, mode="valid") for k in range(2)], 1)
    offsets = smooth[:frames] * (shake * width / 0.5)  # a moving mean of 4 has sd 0.5
    offsets = offsets.copy()
    for jerk in jerks:
        n = jerk.stop - jerk.start
        for i in range(n):
            frame = jerk.start + i
            if 0 <= frame < frames:
                amount = 1 - abs(2 * (i + 1) / (n + 1) - 1)
                offsets[frame] += (jerk.dx * amount, jerk.dy * amount)
    homographies = []
    for dx, dy in offsets:
        shift = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
        homographies.append(shift @ perspective)
    return CameraPath(tuple(homographies), offsets)


def project(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N x 2) through ``homography``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
    out: np.ndarray = cv2.perspectiveTransform(pts, homography).reshape(-1, 2)
    return out
