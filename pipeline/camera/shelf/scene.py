"""A shelf scene, frame by frame, with its ground truth.

``ShelfScene(ShelfConfig(...))`` plans everything from the seed when it is made (the
backdrop, the labels and their story, the camera, the degradations); iterating it
draws the frames. Labels are drawn onto the flat canvas only when they change (a new
price, a label put up or taken away); each frame is the canvas seen through that
frame's homography, then degraded. The ground truth of a frame is a plain dict, the
record written as one JSON line (docs/cameras.md, "Shelf scenes").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.camera.shelf.degrade import (
    Episode,
    add_glare,
    dim,
    draw_arm,
    focus_blur,
    glare_level,
    jpeg_roundtrip,
    motion_blur,
    plan_degradations,
)
from pipeline.camera.shelf.labels import RenderedLabel, TextLine, render_label
from pipeline.camera.shelf.layout import (
    Jerk,
    ShelfLayout,
    camera_path,
    draw_backdrop,
    project,
    shelf_layout,
)
from pipeline.camera.shelf.story import Placement, plan_story

__all__ = ["GLARED", "OCCLUDED", "ShelfConfig", "ShelfFrame", "ShelfScene"]

OCCLUDED = 0.1  # a line is occluded when the arm covers this share of its box or more
GLARED = 60.0  # a line is glared when the blob adds this much brightness on average
BLUR_MOTION = 3.0  # a line is blurred by a smear this long (pixels) or more ...
BLUR_SIGMA = 1.0  # ... or by a focus blur this wide over it


@dataclass(frozen=True)
class ShelfConfig:
    """A shelf video: its size, rate (frames a second; a shelf camera's snapshots can
    come less than once a second), length in frames and seed. ``degrade=False``
    leaves out the blur, glare, arms, low light and JPEG (the camera still shakes and
    the labels still change)."""

    width: int = 1280
    height: int = 720
    fps: float = 10
    frames: int = 100
    seed: int = 0
    degrade: bool = True

    def __post_init__(self) -> None:
        if self.width < 320 or self.height < 180 or self.width % 2 or self.height % 2:
            raise ValueError(f"size {self.width}x{self.height}: even, and 320x180 or more")
        if self.fps <= 0 or self.frames <= 0:
            raise ValueError("fps and frames must be positive")
        if self.seed < 0:
            raise ValueError("the seed must be 0 or more")


@dataclass(frozen=True)
class ShelfFrame:
    """A frame (RGB, height x width x 3) and its ground truth record."""

    index: int
    image: np.ndarray
    truth: dict[str, object]


@dataclass
class _Hung:
    """A label drawn on the canvas: where its patch is, and its quadrilaterals."""

    placement: Placement
    rendered: RenderedLabel
    patch: np.ndarray  # RGB
    alpha: np.ndarray  # float32, h x w x 1
    x0: int
    y0: int
    card: np.ndarray  # 4 x 2, canvas pixels
    lines: tuple[tuple[TextLine, np.ndarray], ...]

    def overlaps(self, x0: int, y0: int, x1: int, y1: int) -> bool:
        h, w = self.patch.shape[:2]
        return self.x0 < x1 and x0 < self.x0 + w and self.y0 < y1 and y0 < self.y0 + h


def _corners(box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def _round(values: np.ndarray | list[float] | tuple[float, ...]) -> list[float]:
    return [round(float(v), 1) for v in values]


class ShelfScene:
    """The frames and ground truth of one shelf video (deterministic for a config)."""

    def __init__(self, config: ShelfConfig) -> None:
        self.config = config
        c = config
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(c.seed).spawn(4)]
        layout_rng, story_rng, camera_rng, degrade_rng = streams
        self.layout: ShelfLayout = shelf_layout(c.width, c.height)
        self.backdrop, self.face = draw_backdrop(self.layout, layout_rng)
        self.story = plan_story(self.layout.slots, c.frames, c.fps, story_rng)
        self.episodes: tuple[Episode, ...] = ()
        if c.degrade:
            self.episodes = plan_degradations(
                c.frames,
                c.fps,
                c.width,
                c.height,
                degrade_rng,
                slots=len(self.layout.slots),
                rows=len(self.layout.rows),
            )
        jerks = [
            Jerk(e.start, e.stop, e.strength * math.cos(e.angle), e.strength * math.sin(e.angle))
            for e in self.episodes
            if e.kind == "motion"
        ]
        self.camera = camera_path(c.frames, c.width, c.height, camera_rng, jerks)

    def __iter__(self) -> Iterator[ShelfFrame]:
        canvas = self.backdrop.copy()
        hung: dict[int, _Hung] = {}
        for slot, placement in sorted(self.story.initial.items()):
            hung[slot] = self._hang(placement)
            self._paste(canvas, hung[slot])
        for index in range(self.config.frames):
            events = []
            for change in self.story.changes[index]:
                old = hung.pop(change.slot, None)
                if old is not None and change.kind == "remove":
                    track = old.placement.track
                    events.append({"kind": "remove", "id": track, "slot": change.slot})
                if change.placement is not None:
                    hung[change.slot] = self._hang(change.placement)
                    track = change.placement.track
                    events.append({"kind": change.kind, "id": track, "slot": change.slot})
                self._redraw(canvas, hung, old, hung.get(change.slot))
            yield self._shoot(index, canvas, hung, events)

    # -- the canvas ----------------------------------------------------------------

    def _hang(self, placement: Placement) -> _Hung:
        """Draw ``placement``'s card, turned by its angle, as a patch with an alpha."""
        rendered = render_label(placement.spec, placement.height)
        card = rendered.image
        h, w = card.shape[:2]
        slot = self.layout.slots[placement.slot]
        cx = slot.x + slot.width / 2
        cy = slot.y + placement.drop + h / 2
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), placement.angle, 1.0)
        turn[:, 2] += (cx - w / 2, cy - h / 2)
        outline = _corners((0, 0, w, h)) @ turn[:, :2].T + turn[:, 2]
        x0, y0 = (math.floor(v) - 1 for v in outline.min(0))
        x1, y1 = (math.ceil(v) + 1 for v in outline.max(0))
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(self.config.width, x1), min(self.config.height, y1)
        local = turn.copy()
        local[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        patch = cv2.warpAffine(card, local, size, flags=cv2.INTER_LINEAR)
        ones = np.ones((h, w), dtype=np.float32)
        alpha = cv2.warpAffine(ones, local, size, flags=cv2.INTER_LINEAR)[..., None]
        lines = tuple(
            (line, _corners(line.box) @ turn[:, :2].T + turn[:, 2]) for line in rendered.lines
        )
        return _Hung(placement, rendered, patch, alpha, x0, y0, outline, lines)

    @staticmethod
    def _paste(canvas: np.ndarray, item: _Hung) -> None:
        h, w = item.patch.shape[:2]
        region = canvas[item.y0 : item.y0 + h, item.x0 : item.x0 + w]
        mixed = item.alpha * item.patch + (1 - item.alpha) * region
        region[:] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)

    def _redraw(
        self,
        canvas: np.ndarray,
        hung: dict[int, _Hung],
        old: _Hung | None,
        new: _Hung | None,
    ) -> None:
        """Wipe ``old``'s patch back to the backdrop and paste what now hangs there."""
        boxes = []
        for item in (old, new):
            if item is not None:
                h, w = item.patch.shape[:2]
                boxes.append((item.x0, item.y0, item.x0 + w, item.y0 + h))
        for x0, y0, x1, y1 in boxes:
            canvas[y0:y1, x0:x1] = self.backdrop[y0:y1, x0:x1]
        for item in hung.values():
            if any(item.overlaps(*box) for box in boxes):
                self._paste(canvas, item)

    # -- a frame -------------------------------------------------------------------

    def _shoot(
        self,
        index: int,
        canvas: np.ndarray,
        hung: dict[int, _Hung],
        events: list[dict[str, object]],
    ) -> ShelfFrame:
        c = self.config
        homography = self.camera.homographies[index]
        image = cv2.warpPerspective(
            canvas,
            homography,
            (c.width, c.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        rng = np.random.default_rng([c.seed, index])
        scale = float(np.sqrt(abs(np.linalg.det(homography[:2, :2]))))

        cover = np.zeros((c.height, c.width), dtype=np.uint8)
        glares: list[tuple[tuple[float, float], float, float]] = []
        sigma, band, smear, gain = 0.0, None, (0.0, 0.0), 1.0
        quality: int | None = None
        if c.degrade:
            active = [e for e in self.episodes if e.active(index)]
            for e in active:
                if e.kind == "occlusion":
                    cover |= self._arm(image, e, index, homography, scale)
            focus = [e for e in active if e.kind == "focus"]
            if focus:
                e = max(focus, key=lambda f: f.strength * f.envelope(index))
                sigma = e.strength * e.envelope(index)
                band = None if e.target < 0 else self._band(e.target, homography)
                focus_blur(image, sigma, band)
            if any(e.kind == "motion" and e.start <= index <= e.stop for e in self.episodes):
                smear = self.camera.velocity(index)
                if math.hypot(*smear) >= 1.5:
                    image = motion_blur(image, *smear)
                else:
                    smear = (0.0, 0.0)
            for e in active:
                if e.kind == "low_light":
                    gain = min(gain, 1 - e.envelope(index) * (1 - e.strength))
            image = dim(image, gain, rng)
            for e in active:  # a reflection: as bright in low light, not blurred
                if e.kind == "glare":
                    glares.append(self._glare(e, index, homography, scale))
                    add_glare(image, *glares[-1])
            quality = int(rng.integers(60, 96))
            for e in active:
                if e.kind == "jpeg":
                    quality = min(quality, int(e.strength))
            image = jpeg_roundtrip(image, quality)

        length = math.hypot(*smear)
        covered = bool(cover.any())

        def judged(quad: np.ndarray) -> dict[str, object]:
            inside = np.clip(quad, (0, 0), (c.width, c.height))
            x0, y0 = inside.min(0)
            x1, y1 = inside.max(0)
            ix0, iy0 = math.floor(x0), math.floor(y0)
            ix1, iy1 = max(ix0 + 1, math.ceil(x1)), max(iy0 + 1, math.ceil(y1))
            occlusion = float(cover[iy0:iy1, ix0:ix1].mean()) if covered else 0.0
            mid_y = (y0 + y1) / 2
            in_band = band is None or band[0] <= mid_y < band[1]
            glare = max((glare_level((x0, y0, x1, y1), *g) for g in glares), default=0.0)
            record: dict[str, object] = {
                "box": _round((x0, y0, x1, y1)),
                "quad": [_round(p) for p in inside],
                "occluded": bool(occlusion >= OCCLUDED),
                "occlusion": round(occlusion, 2),
                "blurred": bool(length >= BLUR_MOTION or (sigma >= BLUR_SIGMA and in_band)),
                "glared": bool(glare >= GLARED),
            }
            if not np.array_equal(inside, quad):
                record["truncated"] = True
            return record

        labels = []
        for slot in sorted(hung):
            item = hung[slot]
            card = project(homography, item.card)
            if not _meets_frame(card, c.width, c.height):
                continue
            lines = []
            for line, quad in item.lines:
                judged_line = judged(project(homography, quad))
                box, quad_out = judged_line.pop("box"), judged_line.pop("quad")
                lines.append(
                    {"kind": line.kind, "text": line.text, "box": box, "quad": quad_out}
                    | judged_line
                )
            card_record = judged(card)
            labels.append(
                {
                    "id": item.placement.track,
                    "slot": slot,
                    "size": self.layout.slots[slot].size,
                    "price": item.placement.spec.price,
                    "box": card_record["box"],
                    "quad": card_record["quad"],
                    "lines": lines,
                }
            )
        faces = []
        if self.face is not None:
            face = judged(project(homography, self.face))
            faces.append({k: face[k] for k in ("box", "quad", "occluded")})
        offset = self.camera.offsets[index]
        truth: dict[str, object] = {
            "frame": index,
            "time": round(index / c.fps, 4),
            "camera": {"offset": _round(offset)},
            "effects": {
                "motion_blur": round(length, 1),
                "focus_blur": round(sigma, 2),
                "focus_band": None if band is None or sigma == 0 else list(band),
                "glare": len(glares),
                "occluder": covered,
                "light": round(gain, 3),
                "jpeg_quality": quality,
            },
            "events": events,
            "faces": faces,
            "labels": labels,
        }
        return ShelfFrame(index, image, truth)

    def _label_height(self, slot: int, scale: float) -> float:
        return self.layout.slots[slot].height * scale

    def _arm(
        self, image: np.ndarray, e: Episode, index: int, homography: np.ndarray, scale: float
    ) -> np.ndarray:
        c = self.config
        slot = self.layout.slots[e.target]
        target = project(homography, np.array([slot.centre]))[0]
        h = self._label_height(e.target, scale)
        way = np.array([math.cos(e.angle), math.sin(e.angle)])  # towards where it comes from
        tip_end = target - way * e.strength * h
        origin = target + way * 1.5 * max(c.width, c.height)
        tip = origin + e.envelope(index) * (tip_end - origin)
        thickness = float(np.clip(0.7 * h, 0.05 * c.height, 0.12 * c.height))
        return draw_arm(image, (origin[0], origin[1]), (tip[0], tip[1]), thickness, e.seed)

    def _glare(
        self, e: Episode, index: int, homography: np.ndarray, scale: float
    ) -> tuple[tuple[float, float], float, float]:
        slot = self.layout.slots[e.target]
        centre = project(homography, np.array([slot.centre]))[0]
        h = self._label_height(e.target, scale)
        rng = np.random.default_rng(e.seed)
        radius = float(rng.uniform(0.45, 1.0)) * h
        drift = rng.uniform(-1, 1, size=2) * h
        centre = centre + drift * (e.progress(index) - 0.5)
        return (float(centre[0]), float(centre[1])), radius, e.strength * e.envelope(index)

    def _band(self, row: int, homography: np.ndarray) -> tuple[int, int]:
        """The frame rows a focus blur of shelf ``row`` covers: its rail and a third of
        a label's height around it."""
        r = self.layout.rows[row]
        pad = r.label_height / 3
        y0, y1 = r.rail[0] - pad, r.rail[1] + pad
        w = self.config.width
        ys = project(homography, np.array([(0, y0), (w, y0), (0, y1), (w, y1)]))[:, 1]
        return (max(0, math.floor(ys.min())), min(self.config.height, math.ceil(ys.max())))


def _meets_frame(quad: np.ndarray, width: int, height: int) -> bool:
    x0, y0 = quad.min(0)
    x1, y1 = quad.max(0)
    return bool(x1 > 0 and y1 > 0 and x0 < width and y0 < height)
