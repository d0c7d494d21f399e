"""Wire maps to messages: ``from_map``, the checks both wire forms share.

Strict: any deviation from docs/wire-format.md raises one ``SchemaError`` that names
the field and what is wrong with it. The checks work on the decoded map, not on its
form; only how binary values are carried differs between msgpack and JSON, and that is
the ``binary`` reader ``from_map`` is given. Arrays are read with ``numpy.frombuffer``
and so share memory with the bytes they were carried in (read-only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from schemas.errors import SchemaError
from schemas.fields import BinaryReader, Fields, bytes_value, check_colour, check_inside
from schemas.limits import MAX_REGIONS, SCHEMA_VERSION
from schemas.messages import (
    KINDS,
    Colour,
    DeadLetter,
    Escalation,
    Frame,
    InferenceResult,
    M,
    Message,
    PrivacyClass,
    Reason,
    Source,
)
from schemas.scalars import SCALARS
from schemas.subjects import check_token

__all__ = ["from_map"]

_FRAME_ID = re.compile(r"[A-Za-z0-9_.:/-]{1,128}")
_SUBJECT = re.compile(r"[A-Za-z0-9_.$-]{1,256}")


def from_map(kind: type[M], raw: Any, *, binary: BinaryReader = bytes_value) -> M:
    """Check a decoded map against the contract and build the message ``kind`` from it.

    Every rule of docs/wire-format.md is checked here, whichever form the map came in;
    ``binary`` reads the values at binary positions (by default: msgpack ``bin``,
    i.e. ``bytes``). Raises ``SchemaError`` naming the field and what is wrong.
    """
    f = _envelope(raw, KINDS[kind], binary)
    message = _READERS[kind](f)
    assert isinstance(message, kind)
    return message


def _envelope(raw: Any, kind: str, binary: BinaryReader) -> Fields:
    if not isinstance(raw, dict):
        raise SchemaError(f"{kind}: expected a map, got {type(raw).__name__}")
    if "v" not in raw:
        raise SchemaError(
            f"{kind}.v: missing; every message carries its schema version as the integer "
            f"key 'v' (this reader speaks {SCHEMA_VERSION})"
        )
    version = raw["v"]
    if isinstance(version, bool) or not isinstance(version, int):  # True == 1, 2.0 == 2
        raise SchemaError(
            f"{kind}.v: expected an integer, got {type(version).__name__}; the schema "
            f"version is an integer (this reader speaks {SCHEMA_VERSION})"
        )
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{kind}.v: schema version {version} is not supported; this reader speaks "
            f"{SCHEMA_VERSION}"
        )
    got = raw.get("type")
    if got != kind:
        raise SchemaError(f"{kind}.type: {got!r}, expected {kind!r}")
    return Fields(raw, kind, binary)


def _frame_ids(f: Fields) -> dict[str, Any]:
    """Which frame a message is about: its id, and the site and camera it came from."""
    return {
        "frame_id": f.text("frame_id", _FRAME_ID),
        "site": check_token(f.text("site"), f"{f.path}.site"),
        "camera": check_token(f.text("camera"), f"{f.path}.camera"),
    }


def _frame(f: Fields) -> Frame:
    image = f.pixels("image")
    regions = f.regions("regions")
    # The regions of an encoded image are checked by the edge once it has decoded it.
    if isinstance(image, np.ndarray):
        check_inside("frame.regions", regions, image)
    colour = f.enum("colour", Colour)
    check_colour("frame.colour", image, colour)
    return Frame(
        **_frame_ids(f),
        image=image,
        regions=regions,
        privacy=f.enum("privacy", PrivacyClass),
        path=f.tiers("path"),
        colour=colour,
        **SCALARS[Frame](f),
    )


def _result(f: Fields) -> InferenceResult:
    labels = f.labels("labels")
    scores = f.array("scores", "float32", 2)
    if scores.shape[0] != len(labels):
        raise SchemaError(
            f"result.scores: {scores.shape[0]} rows for {len(labels)} labels; need one per label"
        )
    edge_labels = f.optional("edge_labels", f.labels)
    source = f.enum("source", Source)
    path = f.tiers("path")
    if path and path[-1] is not source:
        raise SchemaError(
            f"result.path: ends with {path[-1].value!r} but source is {source.value!r}; "
            "the path ends with the tier that answered"
        )
    return InferenceResult(
        **_frame_ids(f),
        labels=labels,
        scores=scores,
        source=source,
        model=f.text("model", max_len=128),
        model_version=f.text("model_version", max_len=64),
        reason=f.enum("reason", Reason),
        degraded=f.flag("degraded"),
        edge_labels=edge_labels,
        path=path,
        **SCALARS[InferenceResult](f),
    )


def _escalation(f: Fields) -> Escalation:
    privacy = f.enum("privacy", PrivacyClass)
    regions = f.regions("regions")
    crops = tuple(
        f.pixels_at(c, f"escalation.crops[{i}]")
        for i, c in enumerate(f.items("crops", MAX_REGIONS))
    )
    image = f.optional("image", f.pixels)
    embedding = f.optional("embedding", lambda k: f.array(k, "float32", (1, 2)))
    if privacy is PrivacyClass.LOCAL_ONLY:
        raise SchemaError("escalation.privacy: a local_only frame must never be escalated")
    if privacy is PrivacyClass.EMBEDDING:
        _check_embedding(embedding, len(regions), len(crops), image is not None)
    elif embedding is not None:
        raise SchemaError(f"escalation.embedding: privacy {privacy.value!r} carries no embedding")
    if privacy is PrivacyClass.CROP and (image is not None or len(crops) != len(regions)):
        raise SchemaError(
            "escalation: privacy 'crop' carries one crop per region and no image, got "
            f"{len(crops)} crops for {len(regions)} regions"
            + (" and an image" if image is not None else "")
        )
    if privacy is PrivacyClass.FULL and (image is None or crops):
        raise SchemaError("escalation: privacy 'full' carries the image and no crops")
    # Raw pixels are checked against the regions here; encoded ones by the cloud, once
    # it has decoded them.
    for i, (r, crop) in enumerate(zip(regions, crops, strict=False)):
        if isinstance(crop, np.ndarray) and crop.shape[:2] != (r.h, r.w):
            raise SchemaError(
                f"escalation.crops[{i}]: shape {list(crop.shape)} does not match region "
                f"{[r.x, r.y, r.w, r.h]} ({r.h} rows, {r.w} columns)"
            )
    if isinstance(image, np.ndarray):
        check_inside("escalation.regions", regions, image)
    return Escalation(
        **_frame_ids(f),
        privacy=privacy,
        regions=regions,
        crops=crops,
        image=image,
        reply_to=f.text("reply_to", _SUBJECT),
        edge_labels=f.labels("edge_labels"),
        embedding=embedding,
        **SCALARS[Escalation](f),
    )


def _check_embedding(
    embedding: np.ndarray | None, regions: int, crops: int, has_image: bool
) -> None:
    """The rules of privacy ``embedding``: an embedding, and not one pixel."""
    if crops or has_image:
        raise SchemaError(
            "escalation: privacy 'embedding' carries the embedding and no crops or image, got "
            + " and ".join(
                ([f"{crops} crops"] if crops else []) + (["an image"] if has_image else [])
            )
        )
    if embedding is None:
        raise SchemaError("escalation.embedding: privacy 'embedding' needs an embedding, got nil")
    shape = list(embedding.shape)
    if shape[-1] < 1:
        raise SchemaError(f"escalation.embedding: shape {shape} has no values per embedding")
    if embedding.ndim == 2 and shape[0] != regions:
        raise SchemaError(
            f"escalation.embedding: {shape[0]} rows for {regions} regions; "
            "a 2-D embedding has one row per region"
        )


def _dead_letter(f: Fields) -> DeadLetter:
    return DeadLetter(
        stage=f.text("stage", max_len=64),
        site=f.text("site", max_len=64),
        subject=f.text("subject", max_len=256),
        reason=f.text("reason", max_len=4096),
        data=f.binary("data"),
        **SCALARS[DeadLetter](f),
    )


_READERS: dict[type[Any], Callable[[Fields], Message]] = {
    Frame: _frame,
    InferenceResult: _result,
    Escalation: _escalation,
    DeadLetter: _dead_letter,
}
