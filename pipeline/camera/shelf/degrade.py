"""What makes the labels hard to read, planned from a seed and applied per frame.

``plan_degradations`` spreads *episodes* over the video, each kind at least once:

* ``motion``: the camera jerks away and back over a few frames (``layout.Jerk``);
  each frame is blurred along the move (``motion_blur``).
* ``focus``: the focus hunts: a Gaussian blur that swells and fades, over the whole
  frame or over one shelf row (``focus_blur``).
* ``glare``: a bright blob over a label, drifting a little (``add_glare``).
* ``low_light``: the light dims to a quarter to a half, with sensor noise (``dim``).
* ``occlusion``: an arm reaches in over a label and goes (``draw_arm``).
* ``jpeg``: a spell of low JPEG quality (12 to 30); otherwise each frame's quality is
  drawn between 60 and 95 (``jpeg_roundtrip``).

An episode's strength rises and falls over it (``Episode.envelope``). The functions
that apply them work on RGB uint8 frames in place or return new ones; what they did
to each text line (blurred, glared, occluded) the scene works out
(pipeline/camera/shelf/scene.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "KINDS",
    "Episode",
    "add_glare",
    "dim",
    "draw_arm",
    "focus_blur",
    "glare_level",
    "jpeg_roundtrip",
    "motion_blur",
    "plan_degradations",
]

# kind: (episodes per 10 s, shortest and longest in seconds)
_PLAN: dict[str, tuple[float, float, float]] = {
    "motion": (3, 0.3, 0.5),
    "focus": (2, 1.0, 2.0),
    "glare": (2, 1.5, 3.0),
    "low_light": (1, 2.0, 3.0),
    "occlusion": (3, 1.0, 2.5),
    "jpeg": (2, 0.5, 1.5),
}
KINDS = tuple(_PLAN)


@dataclass(frozen=True)
class Episode:
    """One spell of a degradation over frames ``start`` .. ``stop`` - 1.

    ``strength``: motion, how far the camera jerks (pixels); focus, the blur's sigma
    (pixels) at its worst; glare, the blob's peak brightness (0-255); low_light, the
    share of light left at the darkest; occlusion, how far the hand reaches past the
    label's centre (label heights); jpeg, the quality. ``angle`` (radians): the
    direction of a jerk, or the side an arm comes from. ``target``: the slot a glare
    or an arm aims at, the row a focus blur covers (-1: the whole frame). ``seed``:
    for colours and drift.
    """

    kind: str
    start: int
    stop: int
    strength: float
    angle: float
    target: int
    seed: int

    def active(self, frame: int) -> bool:
        return self.start <= frame < self.stop

    def envelope(self, frame: int) -> float:
        """0 outside the episode; inside, up to 1 over the first quarter, 1, and down
        over the last quarter."""
        if not self.active(frame):
            return 0.0
        n = self.stop - self.start
        ramp = max(1.0, n / 4)
        i = frame - self.start
        return float(min(1.0, (i + 1) / ramp, (n - i) / ramp))

    def progress(self, frame: int) -> float:
        """How far through the episode ``frame`` is, 0 to 1."""
        return (frame - self.start) / max(1, self.stop - self.start - 1)


def plan_degradations(
    frames: int,
    fps: float,
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    slots: int,
    rows: int,
) -> tuple[Episode, ...]:
    """The episodes of a video of ``frames`` frames: each kind's count is its rate
    times the length (at least one), one per equal stretch of the video."""
    scale = height / 720
    out = []
    seconds = frames / fps
    for kind, (per_10s, shortest, longest) in _PLAN.items():
        # A spell lasts a few frames at video rates; at a snapshot rate (a shelf camera
        # at 1 frame/s) one frame is already the whole spell, and there are only as
        # many spells as keep the share of frames they spoil what it is at video rates.
        least = (3 if kind == "motion" else 2) if fps >= 5 else 1
        spoiled = per_10s * seconds / 10 * (shortest + longest) / 2 * fps
        count = max(1, min(round(per_10s * seconds / 10), round(spoiled / least)))
        count = min(count, max(1, frames // 3))
        for k in range(count):
            lo, hi = (k * frames) // count, ((k + 1) * frames) // count
            length = max(least, round(rng.uniform(shortest, longest) * fps))
            length = min(length, max(1, hi - lo))
            start = int(rng.integers(lo, max(lo, hi - length) + 1))
            angle = float(rng.uniform(0, 2 * math.pi))
            target = int(rng.integers(slots)) if slots else 0
            if kind == "motion":
                strength = float(rng.uniform(0.012, 0.022) * width)
            elif kind == "focus":
                strength = float(rng.uniform(1.5, 3.5) * scale)
                target = -1 if rng.random() < 0.4 else int(rng.integers(rows))
            elif kind == "glare":
                strength = float(rng.uniform(170, 250))
            elif kind == "low_light":
                strength = float(rng.uniform(0.25, 0.5))
            elif kind == "occlusion":
                strength = float(rng.uniform(-0.3, 0.6))
                # mostly from below, sometimes from a side
                angle = float(rng.choice([math.pi / 2, 0.0, math.pi], p=[0.6, 0.2, 0.2]))
                angle += float(rng.uniform(-0.4, 0.4))
            else:
                strength = float(rng.integers(12, 31))
            seed = int(rng.integers(2**31))
            out.append(Episode(kind, start, start + length, strength, angle, target, seed))
    return tuple(out)


def motion_blur(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``image`` smeared along ``(dx, dy)`` (a line kernel that long)."""
    length = math.hypot(dx, dy)
    if length < 1.5:
        return image
    size = math.ceil(length) | 1
    kernel = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    ux, uy = dx / length, dy / length
    half = (length - 1) / 2
    cv2.line(
        kernel,
        (round(c - ux * half), round(c - uy * half)),
        (round(c + ux * half), round(c + uy * half)),
        1.0,
        1,
        cv2.LINE_AA,
    )
    kernel /= max(1e-6, float(kernel.sum()))
    out: np.ndarray = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    return out


def focus_blur(image: np.ndarray, sigma: float, band: tuple[int, int] | None) -> None:
    """Blur ``image`` in place with a Gaussian of ``sigma``: all of it, or the rows
    ``band`` (y0, y1), fading out over ``3 * sigma`` rows above and below it."""
    if sigma < 0.3:
        return
    if band is None:
        cv2.GaussianBlur(image, (0, 0), sigma, dst=image)
        return
    h = image.shape[0]
    fade = max(4, math.ceil(3 * sigma))
    y0, y1 = max(0, band[0] - fade), min(h, band[1] + fade)
    if y1 <= y0:
        return
    rows = np.arange(y0, y1, dtype=np.float32)
    weight = np.clip(np.minimum(rows - (band[0] - fade), band[1] + fade - rows) / fade, 0, 1)
    sharp = image[y0:y1].astype(np.float32)
    blurred = cv2.GaussianBlur(image[y0:y1], (0, 0), sigma).astype(np.float32)
    w = weight[:, None, None]
    image[y0:y1] = (w * blurred + (1 - w) * sharp + 0.5).astype(np.uint8)


def add_glare(image: np.ndarray, centre: tuple[float, float], radius: float, peak: float) -> None:
    """Add a bright blob (a Gaussian of ``radius``, ``peak`` at its centre) in place."""
    if peak <= 0 or radius <= 0:
        return
    h, w = image.shape[:2]
    cx, cy = centre
    x0, x1 = max(0, int(cx - 3 * radius)), min(w, int(cx + 3 * radius) + 1)
    y0, y1 = max(0, int(cy - 3 * radius)), min(h, int(cy + 3 * radius) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    xs = np.arange(x0, x1, dtype=np.float32) - cx
    ys = np.arange(y0, y1, dtype=np.float32) - cy
    blob = peak * np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * radius * radius))
    tint = np.array([1.0, 0.98, 0.9], dtype=np.float32)
    window = image[y0:y1, x0:x1].astype(np.float32) + blob[..., None] * tint
    image[y0:y1, x0:x1] = np.clip(window, 0, 255).astype(np.uint8)


def glare_level(
    box: tuple[float, float, float, float], centre: tuple[float, float], radius: float, peak: float
) -> float:
    """The mean brightness the blob adds over ``box`` (x0, y0, x1, y1), on a 5 x 5 grid."""
    if peak <= 0 or radius <= 0:
        return 0.0
    xs = np.linspace(box[0], box[2], 5) - centre[0]
    ys = np.linspace(box[1], box[3], 5) - centre[1]
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2
    return float(np.mean(peak * np.exp(-d2 / (2 * radius * radius))))


def draw_arm(
    image: np.ndarray,
    origin: tuple[float, float],
    tip: tuple[float, float],
    thickness: float,
    seed: int,
) -> np.ndarray:
    """Draw an arm (a sleeve from ``origin`` with a hand at ``tip``) in place; return
    the mask of what it covers (uint8, 1 where covered)."""
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    sleeve = tuple(int(v) for v in rng.integers(20, 140, size=3))
    skin = tuple(int(v) for v in np.array([224, 172, 140]) * rng.uniform(0.55, 1.0))
    t = max(3, round(thickness))
    shift = 4  # sub-pixel precision of cv2's drawing
    o = (round(origin[0] * 16), round(origin[1] * 16))
    p = (round(tip[0] * 16), round(tip[1] * 16))
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.line(mask, o, p, 1, t, cv2.LINE_8, shift)
    cv2.circle(mask, p, round(0.65 * t * 16), 1, -1, cv2.LINE_8, shift)
    cv2.line(image, o, p, sleeve, t, cv2.LINE_AA, shift)
    highlight = tuple(min(255, c + 35) for c in sleeve)
    cv2.line(image, o, p, highlight, max(1, t // 5), cv2.LINE_AA, shift)
    cv2.circle(image, p, round(0.65 * t * 16), skin, -1, cv2.LINE_AA, shift)
    return mask


def dim(image: np.ndarray, gain: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` with ``gain`` of its light (a gamma that darkens the shadows more) and
    sensor noise that grows as the light falls."""
    if gain >= 0.999:
        return image
    levels = np.arange(256, dtype=np.float32) / 255
    lut = np.clip(255 * gain * levels ** (1 + 0.6 * (1 - gain)), 0, 255).astype(np.uint8)
    dark = cv2.LUT(image, lut)
    sd = 2.0 + 9.0 * (1 - gain)
    noise = rng.standard_normal(size=image.shape[:2], dtype=np.float32) * sd
    out: np.ndarray = np.clip(dark.astype(np.float32) + noise[..., None], 0, 255).astype(np.uint8)
    return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (RGB) through a JPEG of ``quality`` and back."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return image
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:
        return image
    out: np.ndarray = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return out
