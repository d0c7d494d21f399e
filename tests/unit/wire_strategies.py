"""What the property tests of the wire decoders draw, and how they change a map.

``scalar_values`` draws any value a decoded map may hold, weighted towards the values at
the contract's edges (the bounds of priorities, regions, classes, shapes, sequence
numbers, times, detections and text; names of enum values and unsafe subject tokens;
the first bytes of JPEG and PNG files). ``frames``, ``results`` and ``escalations``
draw valid messages of every shape version 3 allows (raw grey and colour pixels,
encoded images, detections, text lines, crops of either kind), built from ``pixels``,
``detections`` and ``text_lines``. ``key_paths`` lists every place in a decoded map and
``replaced`` puts another value there, or removes the key, the way a faulty or hostile
writer would.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection
from typing import Any

import numpy as np
from hypothesis import strategies as st

from schemas import messages
from schemas.limits import MAX_CLASSES, MAX_LABEL_CHARS, MAX_TEXT_CHARS, MAX_UNIX_TIME
from tests.unit.wire_samples import (
    DELETE,
    make_escalation,
    make_frame,
    make_result,
    sample_embedding,
    sample_jpeg,
    sample_png,
)

EDGE_INTS = [0, 1, 2, 3, 4, -1, 63, 64, 65, 128, 129, 256, 257, 299, 300, 301, 999, 1000, 65536,
             65537, 2**63 - 1, 2**63, 2**64 - 1]  # fmt: skip
EDGE_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 0.5, 1.0, 1.0000001, 5e-324, 1e308,
               -1.0, MAX_UNIX_TIME, MAX_UNIX_TIME + 1]  # fmt: skip
EDGE_TEXT = [
    "", "a.b", "*", ">", "a b", "x" * 65, "local_only", "embedding", "crop", "full", "uint8",
    "float32", "frame", "result", "escalation", "dead_letter", "device", "edge", "cloud",
    "confident", "unchanged", "jpeg", "png", "JPEG", "gif", "gray", "rgb", "bgr", "x" * 129,
    "x" * 257, "Straße", "\u00e9" * 257,
]  # fmt: skip
# The first bytes of encoded images: whole signatures, cut ones and another format's.
EDGE_BYTES = [b"\xff\xd8\xff", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a", b"GIF89a",
              b"\xff\xd8\xff\xe0" + bytes(12)]  # fmt: skip


def scalar_values(*, json: bool = False) -> st.SearchStrategy[Any]:
    """Any scalar a decoded map may hold; with ``json``, only what JSON can carry.

    JSON has no NaN, no infinity and no bytes.
    """
    floats = [v for v in EDGE_FLOATS if math.isfinite(v)] if json else EDGE_FLOATS
    parts: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.sampled_from(EDGE_INTS),
        st.floats(allow_nan=not json, allow_infinity=not json),
        st.sampled_from(floats),
        st.text(max_size=12),
        st.sampled_from(EDGE_TEXT),
    ]
    if not json:
        parts += [st.binary(max_size=64), st.sampled_from(EDGE_BYTES)]
    return st.one_of(*parts)


# ------------------------------------------------------------------ valid v3 messages

SOURCES = st.sampled_from(list(messages.Source))
SHARES = st.floats(0.0, 1.0) | st.sampled_from([0.0, 1.0, 0.5])


@st.composite
def raw_images(draw: st.DrawFn, *, colour: bool | None = None) -> np.ndarray:
    """A uint8 image, H x W (grey) or H x W x 3, 0 to 6 pixels a side."""
    rows, columns = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    is_colour = draw(st.booleans()) if colour is None else colour
    shape = (rows, columns, 3) if is_colour else (rows, columns)
    data = draw(st.binary(min_size=math.prod(shape), max_size=math.prod(shape)))
    return np.frombuffer(data, np.uint8).reshape(shape)


@st.composite
def encoded_images(draw: st.DrawFn) -> messages.Encoded:
    """An encoded image: a real JPEG or PNG, or a signature and any bytes after it."""
    if draw(st.booleans()):
        return draw(st.sampled_from([sample_jpeg(), sample_jpeg(0), sample_png()]))
    encoding = draw(st.sampled_from(list(messages.Encoding)))
    return messages.Encoded(encoding.signature + draw(st.binary(max_size=24)), encoding)


def pixels() -> st.SearchStrategy[messages.Pixels]:
    return st.one_of(raw_images(), encoded_images())


def boxes(*, within: tuple[int, int] | None = None) -> st.SearchStrategy[messages.Region]:
    """A region; with ``within`` (rows, columns), one inside an image of that size."""
    if within is None:
        side = st.integers(0, 2**31)
        return st.builds(messages.Region, side, side, st.integers(1, 2**31), st.integers(1, 2**31))
    rows, columns = within

    @st.composite
    def inside(draw: st.DrawFn) -> messages.Region:
        x, y = draw(st.integers(0, columns - 1)), draw(st.integers(0, rows - 1))
        w, h = draw(st.integers(1, columns - x)), draw(st.integers(1, rows - y))
        return messages.Region(x, y, w, h)

    return inside()


def detections() -> st.SearchStrategy[messages.Detection]:
    return st.builds(
        messages.Detection,
        box=boxes(),
        label=st.text(min_size=1, max_size=MAX_LABEL_CHARS),
        label_index=st.integers(0, MAX_CLASSES - 1),
        score=SHARES,
        source=SOURCES,
    )


def text_lines() -> st.SearchStrategy[messages.TextLine]:
    return st.builds(
        messages.TextLine,
        box=boxes(),
        text=st.text(max_size=MAX_TEXT_CHARS) | st.sampled_from(["", "x" * MAX_TEXT_CHARS]),
        confidence=SHARES,
        source=SOURCES,
    )


def _regions_of(draw: st.DrawFn, image: messages.Pixels) -> tuple[messages.Region, ...]:
    """0 to 3 regions: inside a raw image; anywhere on an encoded one (the edge checks)."""
    if isinstance(image, messages.Encoded):
        return tuple(draw(st.lists(boxes(), max_size=3)))
    rows, columns = image.shape[:2]
    if rows == 0 or columns == 0:
        return ()
    return tuple(draw(st.lists(boxes(within=(rows, columns)), max_size=3)))


@st.composite
def frames(draw: st.DrawFn) -> messages.Frame:
    """A valid frame: grey, RGB or BGR raw pixels or an encoded image, with regions."""
    image = draw(pixels())
    if isinstance(image, messages.Encoded):
        colour = messages.Colour.RGB
    elif image.ndim == 2:
        colour = messages.Colour.GRAY
    else:
        colour = draw(st.sampled_from([messages.Colour.RGB, messages.Colour.BGR]))
    return make_frame(
        image=image,
        colour=colour,
        regions=_regions_of(draw, image),
        privacy=draw(st.sampled_from(list(messages.PrivacyClass))),
        threshold=draw(st.none() | SHARES),
    )


@st.composite
def results(draw: st.DrawFn) -> messages.InferenceResult:
    """A valid result: a classifier's labels and scores, or none, with detections and lines."""
    labels = tuple(draw(st.lists(st.integers(0, MAX_CLASSES - 1), max_size=3)))
    classes = draw(st.integers(0 if not labels else 1, 4))
    scores = np.full((len(labels), classes), 1 / 8, np.float32)
    return make_result(
        labels=labels,
        scores=scores,
        confidence=draw(SHARES),
        detections=tuple(draw(st.lists(detections(), max_size=4))),
        lines=tuple(draw(st.lists(text_lines(), max_size=4))),
    )


@st.composite
def escalations(draw: st.DrawFn) -> messages.Escalation:
    """A valid escalation of any privacy class that may leave, its pixels of any kind."""
    privacy = draw(st.sampled_from([messages.PrivacyClass.CROP, messages.PrivacyClass.FULL,
                                    messages.PrivacyClass.EMBEDDING]))  # fmt: skip
    if privacy is messages.PrivacyClass.EMBEDDING:
        regions = tuple(draw(st.lists(boxes(), max_size=3)))
        embedding = sample_embedding(len(regions), 4) if draw(st.booleans()) else None
        if embedding is None or not regions:
            embedding = sample_embedding(1, 4)[0]
        return make_escalation(privacy, regions=regions, embedding=embedding)
    if privacy is messages.PrivacyClass.FULL:
        image = draw(pixels())
        return make_escalation(privacy, image=image, regions=_regions_of(draw, image))
    regions = tuple(draw(st.lists(boxes(within=(6, 6)), max_size=3)))
    crops: list[messages.Pixels] = []
    for r in regions:
        if draw(st.booleans()):
            crops.append(draw(encoded_images()))
        else:
            shape = (r.h, r.w, 3) if draw(st.booleans()) else (r.h, r.w)
            crops.append(np.full(shape, draw(st.integers(0, 255)), np.uint8))
    return make_escalation(privacy, regions=regions, crops=tuple(crops))


def key_paths(
    value: Any, prefix: tuple[Any, ...] = (), *, skip: Collection[str] = ()
) -> list[tuple[Any, ...]]:
    """Every key path in a decoded document, depth first; none that ends in ``skip``."""
    out: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if key not in skip:
            out.append((*prefix, key))
        if isinstance(child, dict | list):
            out.extend(key_paths(child, (*prefix, key), skip=skip))
    return out


def value_at(raw: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in a decoded document."""
    for key in path:
        raw = raw[key]
    return raw


def replaced(raw: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``raw`` with ``value`` at ``path``, or without it for ``DELETE``."""
    out = copy.deepcopy(raw)
    parent = value_at(out, path[:-1])
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out
