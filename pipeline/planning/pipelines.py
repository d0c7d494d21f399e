"""Pipelines of stages: what runs where, and what crosses each tier boundary.

A pipeline is an ordered list of stages, each on a tier (device, edge, cloud), and
the two boundaries between the tiers, each with a transform saying what crosses it.
Device and edge are both on the site; only ``edge->cloud`` leaves it, so the privacy
class governs that boundary (:func:`may_leave`). :func:`parse_pipeline` builds the
declaration from parsed TOML (pure); pipeline/planning/pipelinefile.py reads the file and
pipeline/planning/validation.py checks that it can run. The format and the rules are in
``docs/pipelines.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar

from schemas.checks import is_number
from schemas.errors import ConfigError

__all__ = [
    "EMITS",
    "NEEDS",
    "PIXEL_TRANSFORMS",
    "Boundary",
    "BoundarySpec",
    "Data",
    "PipelineSpec",
    "Privacy",
    "Sanitize",
    "StageSpec",
    "Tier",
    "Transform",
    "may_leave",
    "parse_pipeline",
    "transform_for",
    "what_crosses",
]


class Tier(StrEnum):
    """Where a stage runs. Data flows device -> edge -> cloud, never back."""

    DEVICE = "device"  # the camera itself
    EDGE = "edge"  # the site's edge box
    CLOUD = "cloud"  # off the site

    @property
    def rank(self) -> int:
        """0, 1, 2 in the order data flows."""
        return _TIERS.index(self)


_TIERS: Final = (Tier.DEVICE, Tier.EDGE, Tier.CLOUD)


class Data(StrEnum):
    """What a stage consumes or produces."""

    FRAME = "frame"  # the camera's whole image
    REGIONS = "regions"  # rectangles of interest in the frame
    CROPS = "crops"  # the pixels inside the regions, with their rectangles
    EMBEDDING = "embedding"  # a feature vector; no pixels
    LABEL = "label"  # an answer


NEEDS: Final = (Data.FRAME, Data.REGIONS, Data.CROPS, Data.EMBEDDING)
EMITS: Final = (Data.LABEL, Data.REGIONS, Data.CROPS, Data.EMBEDDING)


class Transform(StrEnum):
    """What a tier boundary lets cross."""

    NOTHING = "nothing"
    DOWNSCALED = "downscaled"  # the whole frame at a lower resolution
    BLURRED_REGION = "blurred_region"  # the region crops, blurred
    CROP = "crop"  # the region crops
    EMBEDDING = "embedding"
    FRAME = "frame"  # the whole frame


class Sanitize(StrEnum):
    """What is done to pixels before they cross a boundary."""

    NONE = "none"
    FACE_BLUR = "face_blur"


class Privacy(StrEnum):
    """What of a frame may leave the site, least to most.

    ``none``, ``crop`` and ``frame`` are the frame-level ``PrivacyClass`` values
    ``local_only``, ``crop`` and ``full``; ``embedding`` lets a feature vector leave
    and no pixels.
    """

    NONE = "none"
    EMBEDDING = "embedding"
    CROP = "crop"
    FRAME = "frame"


class Boundary(StrEnum):
    """A tier boundary; ``key`` is its table name in the TOML file."""

    DEVICE_TO_EDGE = "device->edge"
    EDGE_TO_CLOUD = "edge->cloud"

    @property
    def key(self) -> str:
        """``device_to_edge`` or ``edge_to_cloud``."""
        return self.value.replace("->", "_to_")


PIXEL_TRANSFORMS: Final = frozenset(
    {Transform.DOWNSCALED, Transform.BLURRED_REGION, Transform.CROP, Transform.FRAME}
)
# What may leave the site (cross edge->cloud) under each privacy class. A downscaled
# frame is still the whole scene, so it needs privacy ``frame``.
_MAY_LEAVE: Final[Mapping[Privacy, frozenset[Transform]]] = {
    Privacy.NONE: frozenset({Transform.NOTHING}),
    Privacy.EMBEDDING: frozenset({Transform.NOTHING, Transform.EMBEDDING}),
    Privacy.CROP: frozenset(
        {Transform.NOTHING, Transform.EMBEDDING, Transform.CROP, Transform.BLURRED_REGION}
    ),
    Privacy.FRAME: frozenset(Transform),
}


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage: a model (a role in models/manifest.json) on a tier.

    ``latency_slo_ms`` is the longest acceptable time from a frame's capture to this
    stage's output; ``min_throughput_fps`` the frames per second it must keep up with.
    """

    name: str
    model: str
    tier: Tier
    needs: Data
    emits: Data
    latency_slo_ms: float | None = None
    min_throughput_fps: float | None = None


@dataclass(frozen=True, slots=True)
class BoundarySpec:
    """What crosses one tier boundary, and whether faces in its pixels are blurred."""

    boundary: Boundary
    transform: Transform
    sanitize: Sanitize = Sanitize.NONE


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A declared pipeline: its privacy class, its stages in order, its two boundaries.

    ``manifest``: the model manifest whose roles the stages name, relative to the
    pipeline file's folder; its models run as each tier's declared chain (docs/models.md).
    Empty: the shipped manifest, whose region classifiers run as they always do.
    """

    name: str
    privacy: Privacy
    stages: tuple[StageSpec, ...]
    device_to_edge: BoundarySpec
    edge_to_cloud: BoundarySpec
    manifest: str = ""

    def chain(self, tier: Tier) -> str:
        """The model roles of ``tier``'s stages in order, comma-separated (``edge.models``)."""
        roles: list[str] = []
        for stage in self.stages:
            if stage.tier is tier and stage.model not in roles:
                roles.append(stage.model)
        return ",".join(roles)

    @property
    def boundaries(self) -> tuple[BoundarySpec, BoundarySpec]:
        """Both boundaries, in the order data crosses them."""
        return (self.device_to_edge, self.edge_to_cloud)


def transform_for(data: Data) -> Transform:
    """The transform that carries ``data`` across a boundary (regions go as crops)."""
    return {
        Data.FRAME: Transform.FRAME,
        Data.REGIONS: Transform.CROP,
        Data.CROPS: Transform.CROP,
        Data.EMBEDDING: Transform.EMBEDDING,
        Data.LABEL: Transform.NOTHING,
    }[data]


def may_leave(privacy: Privacy, transform: Transform) -> bool:
    """Whether ``privacy`` lets ``transform`` cross edge->cloud, off the site."""
    return transform in _MAY_LEAVE[privacy]


def what_crosses(spec: PipelineSpec) -> dict[Boundary, Transform]:
    """Each boundary and what crosses it: the one-line privacy summary of a pipeline."""
    return {b.boundary: b.transform for b in spec.boundaries}


# ---------------------------------------------------------------- from TOML data

_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
E = TypeVar("E", bound=StrEnum)

_TOP_KEYS: Final = ("name", "privacy", "manifest", "stages", "boundaries")
_STAGE_KEYS: Final = (
    "name",
    "model",
    "tier",
    "needs",
    "emits",
    "latency_slo_ms",
    "min_throughput_fps",
)
_BOUNDARY_KEYS: Final = ("transform", "sanitize")


def parse_pipeline(data: Mapping[str, Any], where: str = "pipeline") -> PipelineSpec:
    """Build a :class:`PipelineSpec` from parsed TOML, checking keys and types only."""
    _known(data, _TOP_KEYS, where)
    name = _name(data, "name", where)
    stages_raw = data.get("stages", [])
    if not isinstance(stages_raw, list) or not all(isinstance(s, dict) for s in stages_raw):
        raise ConfigError(f"{where}: stages must be [[stages]] tables")
    stages = tuple(_stage(s, f"{where}: stages[{i}]") for i, s in enumerate(stages_raw))
    boundaries = data.get("boundaries")
    if not isinstance(boundaries, dict):
        raise ConfigError(
            f"{where}: [boundaries.device_to_edge] and [boundaries.edge_to_cloud] are "
            f"required; each says what crosses (transform = ...)"
        )
    _known(boundaries, tuple(b.key for b in Boundary), f"{where}: boundaries")
    manifest = data.get("manifest", "")
    if not isinstance(manifest, str):
        raise ConfigError(f"{where}: manifest must be a path, got {manifest!r}")
    return PipelineSpec(
        name=name,
        privacy=_choice(data, "privacy", Privacy, where),
        stages=stages,
        device_to_edge=_boundary(boundaries, Boundary.DEVICE_TO_EDGE, where),
        edge_to_cloud=_boundary(boundaries, Boundary.EDGE_TO_CLOUD, where),
        manifest=manifest,
    )


def _stage(raw: Mapping[str, Any], where: str) -> StageSpec:
    _known(raw, _STAGE_KEYS, where)
    name = _name(raw, "name", where)
    where = f"{where} ({name})"
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}: model must name a role of the model manifest")
    return StageSpec(
        name=name,
        model=model,
        tier=_choice(raw, "tier", Tier, where),
        needs=_choice(raw, "needs", Data, where, NEEDS),
        emits=_choice(raw, "emits", Data, where, EMITS),
        latency_slo_ms=_positive(raw, "latency_slo_ms", where),
        min_throughput_fps=_positive(raw, "min_throughput_fps", where),
    )


def _boundary(tables: Mapping[str, Any], boundary: Boundary, where: str) -> BoundarySpec:
    where = f"{where}: boundaries.{boundary.key}"
    raw = tables.get(boundary.key)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where} is required: a table saying what crosses {boundary} "
            f"(transform = one of {', '.join(Transform)})"
        )
    _known(raw, _BOUNDARY_KEYS, where)
    sanitize = Sanitize.NONE
    if "sanitize" in raw:
        sanitize = _choice(raw, "sanitize", Sanitize, where)
    return BoundarySpec(boundary, _choice(raw, "transform", Transform, where), sanitize)


def _known(raw: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(keys)}")


def _name(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{where}: {key} must be 1-64 letters, digits, '_' or '-', got {value!r}")
    return value


def _choice(
    raw: Mapping[str, Any], key: str, kind: type[E], where: str, only: tuple[E, ...] = ()
) -> E:
    value = raw.get(key)
    allowed = [m.value for m in only or kind]
    if value not in allowed:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return kind(value)


def _positive(raw: Mapping[str, Any], key: str, where: str) -> float | None:
    if key not in raw:
        return None
    value = raw[key]
    if not (is_number(value) and value > 0):
        raise ConfigError(f"{where}: {key} must be a number > 0, got {value!r}")
    return float(value)
