"""Blur faces in pixels that leave the site: MTCNN finds them (Haar on request).

``FaceBlur.sanitize(image)`` returns a new image. Each detected face box is enlarged
by a margin, to cover the chin, hair and ears. Inside that enlarged box the pixels
are averaged into a coarse grid of cells, then smoothed with a Gaussian. Every pixel
outside the enlarged boxes is left byte-identical. ``FaceBlur.sanitize_crop(image,
box)`` does the same for one crop: it blurs every face whose enlarged box reaches
into the crop.

The detector (``FaceBlurOptions.detector``):

* ``"mtcnn"`` (the default): MTCNN's three small CNNs in onnxruntime
  (edge_worker/faces.py, weights in models/mtcnn/). It finds what the Haar cascade
  finds on the photographs measured, and more: the cameraman's three-quarter view in
  ``camera()``, faces turned by 30 and 45 degrees, faces down to about 20 pixels;
  with fewer false alarms (docs/privacy.md).
* ``"haar"``: OpenCV's frontal-face Haar cascade, the detector this module used
  first. Kept for comparison and for a machine where the MTCNN files cannot be used.
* ``"both"``: the union of the two, for the most recall: on scikit-image's 100 LFW
  faces each finds 98 and together they find all 100, at about twice the cost and
  with the cascade's false alarms.

A model that is missing or not the recorded one is a ModelError when ``FaceBlur`` is
made: the detector never falls back on its own to another one.

Why pixelate and then smooth. Averaging into cells is many-to-one: what is left of a
face is ``cells x cells`` numbers per channel, so no deblurring can bring back detail
finer than a cell; a Gaussian alone can be partly undone by deconvolution. The
Gaussian that follows is there to remove the cells' edges: without it they keep
high-frequency energy, and the Haar detector still finds most faces in an 8-cell grid
(docs/privacy.md has the measurements). Defaults: 4 cells across the face box, sigma
1 cell.

Every call here is synchronous CPU work, about a tenth of a second of one core for a
640x480 frame. Call it from a thread pool (``asyncio.to_thread``), never on the
event loop.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias

import cv2
import numpy as np

from edge_worker.faces import MODELS_DIR, MTCNN, MTCNNOptions
from schemas.errors import ConfigError, ModelError, SchemaError
from schemas.messages import Region

__all__ = [
    "DETECTORS",
    "Box",
    "Detector",
    "FaceBlur",
    "FaceBlurOptions",
    "SanitizeReport",
    "default_cascade_path",
]

Box: TypeAlias = Region  # a face box: left, top, width, height in pixels
Detector: TypeAlias = Literal["mtcnn", "haar", "both"]
DETECTORS: Final[tuple[Detector, ...]] = ("mtcnn", "haar", "both")

CASCADE_FILE: Final = "haarcascade_frontalface_default.xml"
# The cascade was trained on 24x24 windows and only scales up, so it finds no smaller face.
_CASCADE_WINDOW: Final = 24
# MTCNN's first network looks at 12x12 windows: the smallest face it can be asked for.
_MTCNN_WINDOW: Final = 12
# With ``equalize``, MTCNN gets a dark frame brightened (by a gain, not equalisation):
# the gain that puts the 99.5th percentile of luminance at 255, applied when over 1.5.
_BRIGHT_QUANTILE: Final = 0.995
_BRIGHT_MIN_GAIN: Final = 1.5
# In "both", a cascade box mostly (over half of its area) inside an MTCNN box is the
# same face and is dropped.
_SAME_FACE: Final = 0.5


@dataclass(frozen=True, slots=True)
class FaceBlurOptions:
    """How faces are found and how strongly they are blurred.

    ``detector`` is ``"mtcnn"``, ``"haar"`` or ``"both"`` (the module's docstring).

    Both detectors: ``min_size`` is the smallest face searched for, in pixels of the
    image given; MTCNN cannot look below 12 pixels and the cascade below 24 (smaller
    values act as those, after ``detect_scale``). ``detect_scale`` < 1 runs the
    detector on the image shrunk by that factor: about ``1/detect_scale**2`` times
    fewer pixels, and blind to faces smaller than ``max(12, min_size * detect_scale)
    / detect_scale`` pixels with MTCNN (24 for the cascade). The edge worker uses 0.5
    (docs/privacy.md). ``equalize`` makes dark frames visible to the detector: the
    cascade gets the histogram equalised (in a measurement it found the face in a
    frame darkened to 3% of its brightness; without it, the face was missed from 15%
    down); MTCNN gets a dark frame brightened by a gain (histogram equalisation cost
    MTCNN an LFW face; the gain, applied only when the frame's 99.5th percentile of
    luminance is under 170, changed nothing else measured and found the face at 3%).

    MTCNN only: ``thresholds``, the face probability PNet, RNet and ONet each need
    (facenet-pytorch's defaults). Cascade only: ``scale_factor`` and
    ``min_neighbors`` go to ``cv2.CascadeClassifier.detectMultiScale``.

    The blur: ``margin`` is the share of the box's width (height) added on each side.
    ``cells`` is how many cells the face box is averaged into along each side.
    ``smoothing`` is the Gaussian's sigma, in cells. Their ranges keep the blur
    strong: more cells or less smoothing let the detector find faces again.
    """

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 20
    equalize: bool = True
    margin: float = 0.3
    cells: int = 4
    smoothing: float = 1.0
    detect_scale: float = 1.0
    # Added with MTCNN, after the cascade's fields, so positional use keeps its meaning.
    detector: Detector = "mtcnn"
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ConfigError(
                f"detector must be one of {', '.join(DETECTORS)}; got {self.detector!r}"
            )
        _check("scale_factor", self.scale_factor, 1.01, 2.0)
        _check("min_neighbors", self.min_neighbors, 1, 50, integer=True)
        _check("min_size", self.min_size, _MTCNN_WINDOW, 4096, integer=True)
        if not isinstance(self.equalize, bool):
            raise ConfigError(f"equalize must be true or false, got {self.equalize!r}")
        _check("margin", self.margin, 0.0, 1.0)
        _check("cells", self.cells, 1, 8, integer=True)
        _check("smoothing", self.smoothing, 0.5, 4.0)
        _check("detect_scale", self.detect_scale, 0.1, 1.0)
        self.mtcnn_options()  # ConfigError naming ``thresholds``

    def mtcnn_options(self) -> MTCNNOptions:
        """What MTCNN is run with, on the image shrunk by ``detect_scale``."""
        smallest = max(_MTCNN_WINDOW, round(self.min_size * self.detect_scale))
        return MTCNNOptions(min_size=smallest, thresholds=self.thresholds)


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
    """Finds faces (MTCNN, a Haar cascade or both) and blurs them out of an image.

    Images are uint8, either grayscale (rows, columns) or RGB (rows, columns, 3).
    Every method is synchronous CPU work: run it in a thread pool. One instance may be
    shared by the pool's threads. MTCNN's onnxruntime sessions allow concurrent runs.
    A cascade is not safe to use from two threads at once (detection writes into it),
    so each thread loads its own copy on first use.

    ``cascade_path`` (a Haar cascade file) is for the ``"haar"`` and ``"both"``
    detectors, ``models_dir`` (a folder like models/mtcnn/, with ``provenance.json``)
    for ``"mtcnn"`` and ``"both"``; giving one the detector does not use is a
    ConfigError. Whatever the chosen detector needs is loaded and checked now: a
    missing or altered file is a ModelError here, not on the first frame.

    The constructor sets OpenCV's own thread count to 1, for the whole process. The
    caller already runs one call per pool thread, and OpenCV's pool on top of that
    would oversubscribe the cores. MTCNN's sessions use one thread each.
    """

    def __init__(
        self,
        options: FaceBlurOptions | None = None,
        cascade_path: Path | None = None,
        models_dir: Path | None = None,
    ) -> None:
        self.options = o = options or FaceBlurOptions()
        uses_haar = o.detector in ("haar", "both")
        uses_mtcnn = o.detector in ("mtcnn", "both")
        if cascade_path is not None and not uses_haar:
            raise ConfigError(
                f"cascade_path is for the haar detector; detector is {o.detector!r} "
                "(set FaceBlurOptions(detector='haar') or 'both')"
            )
        if models_dir is not None and not uses_mtcnn:
            raise ConfigError(f"models_dir is for the mtcnn detector; detector is {o.detector!r}")
        self._local = threading.local()
        cv2.setNumThreads(1)
        self._path: Path | None = None
        if uses_haar:
            self._path = cascade_path or default_cascade_path()
            self._cascade()  # fail now, not on the first frame
        self._mtcnn: MTCNN | None = None
        if uses_mtcnn:
            self._mtcnn = MTCNN(o.mtcnn_options(), models_dir or MODELS_DIR)

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade: cv2.CascadeClassifier | None = getattr(self._local, "cascade", None)
        if cascade is None:
            path = self._path
            if path is None:
                raise ModelError(f"detector {self.options.detector!r} has no Haar cascade")
            if not hasattr(cv2, "CascadeClassifier"):
                raise ModelError("this OpenCV has no CascadeClassifier; use OpenCV 4.x")
            if not path.is_file():
                raise ModelError(f"face detector {path} is missing")
            cascade = cv2.CascadeClassifier()
            try:
                loaded = cascade.load(str(path))
            except cv2.error as e:
                raise ModelError(f"face detector {path} could not be loaded: {e}") from e
            if not loaded or cascade.empty():
                raise ModelError(f"face detector {path} could not be loaded")
            self._local.cascade = cascade
        return cascade

    def detect(self, image: np.ndarray) -> list[Box]:
        """The faces in ``image``, top to bottom, left to right."""
        _check_image(image)
        o = self.options
        scale = o.detect_scale
        small = image
        if scale < 1.0:
            small = cv2.resize(
                np.ascontiguousarray(image), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
            )
        # [K, 4] left, top, right, bottom in ``small``'s pixels, from each detector.
        found = np.zeros((0, 4), np.float64)
        if self._mtcnn is not None:
            shown = _brighten(small) if o.equalize else small
            found = self._mtcnn.detect(shown).boxes.astype(np.float64)
        if self._path is not None:
            haar = self._haar(small)
            if len(found) and len(haar):
                haar = haar[~_inside_any(haar, found)]
            found = np.concatenate([found, haar])
        rows, cols = image.shape[:2]
        boxes = []
        for x1, y1, x2, y2 in found:
            # Back to full-size coordinates, rounded outwards, clipped to the image.
            left = min(cols, max(0, math.floor(x1 / scale)))
            top = min(rows, max(0, math.floor(y1 / scale)))
            right = min(cols, max(0, math.ceil(x2 / scale)))
            bottom = min(rows, max(0, math.ceil(y2 / scale)))
            if right > left and bottom > top:
                boxes.append(Box(left, top, right - left, bottom - top))
        return sorted(boxes, key=lambda b: (b.y, b.x))

    def _haar(self, small: np.ndarray) -> np.ndarray:
        """The cascade's boxes in ``small``: [K, 4] left, top, right, bottom."""
        o = self.options
        gray = _gray(small)
        if o.equalize:
            gray = cv2.equalizeHist(gray)
        smallest = max(_CASCADE_WINDOW, round(o.min_size * o.detect_scale))
        found = self._cascade().detectMultiScale(
            gray,
            scaleFactor=o.scale_factor,
            minNeighbors=o.min_neighbors,
            minSize=(smallest, smallest),
        )
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes

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


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise SchemaError("image must be a uint8 numpy array")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise SchemaError(f"image must be (rows, columns) or (rows, columns, 3), got {image.shape}")


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        gray: np.ndarray = np.ascontiguousarray(image)
        return gray
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return gray


def _brighten(image: np.ndarray) -> np.ndarray:
    """A dark frame scaled up so its 99.5th percentile of luminance is 255; else as is."""
    gray = _gray(image)
    counts = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    level = int(np.searchsorted(np.cumsum(counts), _BRIGHT_QUANTILE * gray.size))
    gain = 255.0 / max(level, 1)
    if gain <= _BRIGHT_MIN_GAIN:
        return image
    table = np.clip(np.rint(np.arange(256) * gain), 0, 255).astype(np.uint8)
    bright: np.ndarray = cv2.LUT(np.ascontiguousarray(image), table)
    return bright


def _inside_any(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """bool [K]: whether over half of each box lies inside one of ``others``."""
    x1 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y1 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x2 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y2 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside: np.ndarray = (inter > _SAME_FACE * area[:, None]).any(axis=1)
    return inside


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
