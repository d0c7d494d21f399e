"""Blur faces in pixels that leave the site: an OpenCV Haar cascade finds them.

``FaceBlur.sanitize(image)`` returns a new image. Each detected face box is enlarged
by a margin, to cover the chin, hair and ears. Inside that enlarged box the pixels
are averaged into a coarse grid of cells, then smoothed with a Gaussian. Every pixel
outside the enlarged boxes is left byte-identical. ``FaceBlur.sanitize_crop(image,
box)`` does the same for one crop: it blurs every face whose enlarged box reaches
into the crop.

Why pixelate and then smooth. Averaging into cells is many-to-one: what is left of a
face is ``cells x cells`` numbers per channel, so no deblurring can bring back detail
finer than a cell; a Gaussian alone can be partly undone by deconvolution. The
Gaussian that follows is there to remove the cells' edges: without it they keep
high-frequency energy, and the Haar detector still finds most faces in an 8-cell grid
(docs/privacy.md has the measurements). Defaults: 4 cells across the face box, sigma
1 cell.

The detector is weak: it misses profile, rotated, occluded and small faces. See
docs/privacy.md for what was measured and what production should use instead.

Every call here is synchronous CPU work, about a quarter of a second of one core for
a 640x480 frame. Call it from a thread pool (``asyncio.to_thread``), never on the
event loop.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

import cv2
import numpy as np

from schemas.errors import ConfigError, ModelError, SchemaError
from schemas.messages import Region

__all__ = ["Box", "FaceBlur", "FaceBlurOptions", "SanitizeReport", "default_cascade_path"]

Box: TypeAlias = Region  # a face box: left, top, width, height in pixels

CASCADE_FILE: Final = "haarcascade_frontalface_default.xml"
# The cascade was trained on 24x24 windows and only scales up, so it finds no smaller face.
_CASCADE_WINDOW: Final = 24


@dataclass(frozen=True, slots=True)
class FaceBlurOptions:
    """How faces are found and how strongly they are blurred.

    The detector settings go to ``cv2.CascadeClassifier.detectMultiScale``.
    ``equalize`` equalises the histogram before detection. In a measurement it found
    the face in a frame darkened to 3% of its brightness; without it, the face was
    missed from 15% down. ``margin`` is the share of the box's width (height) added
    on each side. ``cells`` is how many cells the face box is averaged into along
    each side. ``smoothing`` is the Gaussian's sigma, in cells. Their ranges keep the
    blur strong: more cells or less smoothing let the detector find faces again.
    ``detect_scale`` < 1 runs the detector on the image shrunk by that factor: about
    ``1/detect_scale**2`` times faster, and blind to faces smaller than
    ``min_size / detect_scale`` pixels. The edge worker uses 0.5 (docs/privacy.md).
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30
    equalize: bool = True
    margin: float = 0.3
    cells: int = 4
    smoothing: float = 1.0
    detect_scale: float = 1.0

    def __post_init__(self) -> None:
        _check("scale_factor", self.scale_factor, 1.01, 2.0)
        _check("min_neighbors", self.min_neighbors, 1, 50, integer=True)
        _check("min_size", self.min_size, _CASCADE_WINDOW, 4096, integer=True)
        if not isinstance(self.equalize, bool):
            raise ConfigError(f"equalize must be true or false, got {self.equalize!r}")
        _check("margin", self.margin, 0.0, 1.0)
        _check("cells", self.cells, 1, 8, integer=True)
        _check("smoothing", self.smoothing, 0.5, 4.0)
        _check("detect_scale", self.detect_scale, 0.1, 1.0)


def _check(name: str, value: float, low: float, high: float, *, integer: bool = False) -> None:
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True, slots=True, eq=False)
class SanitizeReport:
    """What ``sanitize`` did. ``image`` is a new array, never the caller's.

    ``faces`` are the detected boxes and ``blurred`` the enlarged boxes whose pixels
    were replaced, both in the coordinates of the image given to the call.
    """

    image: np.ndarray
    faces: tuple[Box, ...]
    blurred: tuple[Box, ...]


def default_cascade_path() -> Path:
    """The frontal-face Haar cascade shipped by the OpenCV 4.x wheels.

    Raises ModelError if it is missing, for example with the OpenCV 5 wheels, which no
    longer ship ``cv2.data``.
    """
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not isinstance(folder, str):
        raise ModelError(
            "this OpenCV has no cv2.data.haarcascades (OpenCV 5 wheels ship no Haar "
            f"cascades); install opencv-python-headless 4.x or pass the path of {CASCADE_FILE}"
        )
    path = Path(folder) / CASCADE_FILE
    if not path.is_file():
        raise ModelError(f"face detector {path} is missing; reinstall opencv-python-headless 4.x")
    return path


class FaceBlur:
    """Finds frontal faces with a Haar cascade and blurs them out of an image.

    Images are uint8, either grayscale (rows, columns) or RGB (rows, columns, 3).
    Every method is synchronous CPU work: run it in a thread pool. One instance may be
    shared by the pool's threads. A cascade is not safe to use from two threads at
    once (detection writes into it), so each thread loads its own copy on first use.

    The constructor sets OpenCV's own thread count to 1, for the whole process. The
    caller already runs one call per pool thread, and OpenCV's pool on top of that
    would oversubscribe the cores.
    """

    def __init__(
        self, options: FaceBlurOptions | None = None, cascade_path: Path | None = None
    ) -> None:
        self.options = options or FaceBlurOptions()
        self._path = cascade_path or default_cascade_path()
        self._local = threading.local()
        cv2.setNumThreads(1)
        self._cascade()  # fail now, not on the first frame

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade: cv2.CascadeClassifier | None = getattr(self._local, "cascade", None)
        if cascade is None:
            if not hasattr(cv2, "CascadeClassifier"):
                raise ModelError("this OpenCV has no CascadeClassifier; use OpenCV 4.x")
            if not self._path.is_file():
                raise ModelError(f"face detector {self._path} is missing")
            cascade = cv2.CascadeClassifier()
            try:
                loaded = cascade.load(str(self._path))
            except cv2.error as e:
                raise ModelError(f"face detector {self._path} could not be loaded: {e}") from e
            if not loaded or cascade.empty():
                raise ModelError(f"face detector {self._path} could not be loaded")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        """The frontal faces in ``image``, top to bottom, left to right."""
        gray = _gray(image)
        o = self.options
        scale = o.detect_scale
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if o.equalize:
            gray = cv2.equalizeHist(gray)
        smallest = max(_CASCADE_WINDOW, round(o.min_size * scale))
        found = self._cascade().detectMultiScale(
            gray,
            scaleFactor=o.scale_factor,
            minNeighbors=o.min_neighbors,
            minSize=(smallest, smallest),
        )
        rows, cols = image.shape[:2]
        boxes = []
        for x, y, w, h in found:
            # Back to full-size coordinates, rounded outwards, clipped to the image.
            left, top = int(x / scale), int(y / scale)
            right = min(cols, math.ceil((x + w) / scale))
            bottom = min(rows, math.ceil((y + h) / scale))
            boxes.append(Box(left, top, right - left, bottom - top))
        return sorted(boxes, key=lambda b: (b.y, b.x))

    def sanitize(self, image: np.ndarray) -> SanitizeReport:
        """A copy of ``image`` with every detected face blurred; other pixels unchanged."""
        faces = tuple(self.detect(image))
        out = image.copy()
        blurred = tuple(self._enlarge(face, image.shape) for face in faces)
        for face, area in zip(faces, blurred, strict=True):
            _pixelate(out, face, area, self.options)
        return SanitizeReport(out, faces, blurred)

    def sanitize_crop(self, image: np.ndarray, box: Box) -> SanitizeReport:
        """The pixels of ``box`` (a new array), with every face that reaches them blurred.

        Detection runs on the whole ``image``, so a face cut by the crop's edge is still
        found. The result equals ``sanitize(image).image`` cropped to ``box``.
        """
        rows, cols = image.shape[:2]
        inside = min(box.x, box.y) >= 0 and box.x + box.w <= cols and box.y + box.h <= rows
        if box.w < 1 or box.h < 1 or not inside:
            raise SchemaError(f"crop {box} is empty or not inside the {cols}x{rows} image")
        full = self.sanitize(image)
        touching = [
            (face, area)
            for face, area in zip(full.faces, full.blurred, strict=True)
            if _overlaps(area, box)
        ]
        return SanitizeReport(
            image=box.crop(full.image).copy(),
            faces=tuple(face for face, _ in touching),
            blurred=tuple(area for _, area in touching),
        )

    def _enlarge(self, face: Box, shape: tuple[int, ...]) -> Box:
        dx = math.ceil(face.w * self.options.margin)
        dy = math.ceil(face.h * self.options.margin)
        left, top = max(0, face.x - dx), max(0, face.y - dy)
        right = min(shape[1], face.x + face.w + dx)
        bottom = min(shape[0], face.y + face.h + dy)
        return Box(left, top, right - left, bottom - top)


def _gray(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise SchemaError("image must be a uint8 numpy array")
    if image.ndim == 2:
        gray: np.ndarray = np.ascontiguousarray(image)
        return gray
    if image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        return gray
    raise SchemaError(f"image must be (rows, columns) or (rows, columns, 3), got {image.shape}")


def _pixelate(out: np.ndarray, face: Box, area: Box, options: FaceBlurOptions) -> None:
    """Replace ``area`` of ``out`` in place: average into cells, then smooth."""
    # The cell size comes from the face, not the enlarged area, so the face itself is
    # about ``cells`` cells across whatever the margin (one more where the grid, which
    # starts at the area's corner, does not line up with the face).
    cell = max(1, math.ceil(max(face.w, face.h) / options.cells))
    roi = area.crop(out)
    rows, cols = roi.shape[:2]
    coarse = (max(1, math.ceil(cols / cell)), max(1, math.ceil(rows / cell)))
    small = cv2.resize(np.ascontiguousarray(roi), coarse, interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_NEAREST)
    # Reflect at the area's border so the blur reads nothing from outside it.
    smooth = cv2.GaussianBlur(
        blocks, (0, 0), sigmaX=options.smoothing * cell, borderType=cv2.BORDER_REFLECT
    )
    roi[...] = smooth.reshape(roi.shape)


def _overlaps(a: Box, b: Box) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h
