"""What happens to the labels over the video: prices change now and then, labels are
taken away and new ones put up in empty slots.

``plan_story`` decides it all up front from a seeded generator: the labels in the
slots at frame 0 and, per later frame, the changes made just before it is shot. A
label keeps its id (the track id in the ground truth) while its price changes; a new
label gets a new id. Every video of 4 frames or more has at least one price change,
one label taken away and one put up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pipeline.camera.shelf.labels import LabelSpec, random_label, reprice
from pipeline.camera.shelf.layout import Slot

__all__ = ["Change", "Placement", "Story", "plan_story"]

# per label (or empty slot) and second
PRICE_RATE = 1 / 25
REMOVE_RATE = 1 / 45
FILL_RATE = 1 / 2.5
OCCUPIED = 0.88  # the share of slots with a label at frame 0


@dataclass(frozen=True)
class Placement:
    """A label hanging in a slot: its id, what it says, how high it is drawn (canvas
    pixels) and how it hangs (a small rotation, degrees, and a drop, pixels)."""

    track: int
    slot: int
    spec: LabelSpec
    height: int
    angle: float
    drop: float


@dataclass(frozen=True)
class Change:
    """Before frame ``frame``: ``slot`` gets ``placement`` (None: emptied). ``kind`` is
    ``"price"``, ``"remove"`` or ``"add"``. Changes of one frame apply in order: a slot
    may lose its label and get a new one in the same frame."""

    frame: int
    slot: int
    kind: str
    placement: Placement | None


@dataclass(frozen=True)
class Story:
    initial: dict[int, Placement]
    changes: tuple[tuple[Change, ...], ...]  # per frame; changes[0] is empty


def _new(slot: Slot, track: int, rng: np.random.Generator) -> Placement:
    spec = random_label(rng)
    height = max(8, round(slot.height * rng.uniform(0.9, 1.0)))
    # the card must fit the slot
    height = min(height, int(slot.width / spec.aspect))
    angle = float(np.clip(rng.normal(0, 1.0), -2.5, 2.5))
    drop = float(rng.uniform(0, 0.05) * slot.height)
    return Placement(track, slot.index, spec, height, angle, drop)


def plan_story(slots: Sequence[Slot], frames: int, fps: float, rng: np.random.Generator) -> Story:
    """Who hangs where at frame 0 and what changes before each later frame."""
    state: dict[int, Placement | None] = {}
    next_track = 1
    initial: dict[int, Placement] = {}
    for slot in slots:
        if rng.random() < OCCUPIED:
            initial[slot.index] = _new(slot, next_track, rng)
            next_track += 1
            state[slot.index] = initial[slot.index]
        else:
            state[slot.index] = None
    p_price, p_remove, p_fill = (
        1 - float(np.exp(-rate / fps)) for rate in (PRICE_RATE, REMOVE_RATE, FILL_RATE)
    )
    forced: dict[int, str] = {}
    if frames >= 4:
        forced = {frames // 4: "price", frames // 2: "remove", (3 * frames) // 4: "add"}
    changes: list[tuple[Change, ...]] = [()]
    for frame in range(1, frames):
        now: list[Change] = []
        for slot in slots:
            here = state[slot.index]
            draw = rng.random()
            if here is not None and draw < p_price:
                now.append(Change(frame, slot.index, "price", _repriced(here, rng)))
            elif here is not None and draw < p_price + p_remove:
                now.append(Change(frame, slot.index, "remove", None))
            elif here is None and draw < p_fill:
                now.append(Change(frame, slot.index, "add", _new(slot, next_track, rng)))
                next_track += 1
        kind = forced.get(frame)
        if kind is not None and not any(c.kind == kind for c in now):
            touched = {c.slot for c in now}
            free = [s for s in slots if s.index not in touched]
            occupied = [s for s in free if state[s.index] is not None]
            empty = [s for s in free if state[s.index] is None]
            if kind == "add":
                # an empty slot if there is one; else one whose label goes first
                pool, replacing = (empty, False) if empty else (occupied, True)
                if pool:
                    slot = pool[int(rng.integers(len(pool)))]
                    if replacing:
                        now.append(Change(frame, slot.index, "remove", None))
                    now.append(Change(frame, slot.index, "add", _new(slot, next_track, rng)))
                    next_track += 1
            elif occupied:
                slot = occupied[int(rng.integers(len(occupied)))]
                here = state[slot.index]
                assert here is not None
                placement = _repriced(here, rng) if kind == "price" else None
                now.append(Change(frame, slot.index, kind, placement))
        for change in now:
            state[change.slot] = change.placement
        changes.append(tuple(now))
    return Story(initial, tuple(changes))


def _repriced(here: Placement, rng: np.random.Generator) -> Placement:
    return replace(here, spec=reprice(here.spec, rng))
