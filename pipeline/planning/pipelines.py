"""Pipelines of stages, declared in TOML: what runs where, and what crosses each tier boundary.

A pipeline is an ordered list of stages, each on a tier (device, edge, cloud), and
the two boundaries between the tiers, each with a transform saying what crosses it.
Device and edge are both on the site; only ``edge->cloud`` leaves it, so the privacy
class governs that boundary. :func:`validate` refuses a pipeline that could not run
as declared or that would send off the site more than its privacy class allows; the
rules are in ``docs/pipelines.md``.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar

from schemas.errors import ConfigError, ModelError

__all__ = [
    "Boundary",
    "BoundarySpec",
    "Data",
    "PipelineSpec",
    "Privacy",
    "Sanitize",
    "StageSpec",
    "Tier",
    "Transform",
    "load_pipeline",
    "manifest_sizes",
    "may_leave",
    "parse_pipeline",
    "transform_for",
    "validate",
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


# What each transform carries across a boundary.
_CARRIES: Final[Mapping[Transform, frozenset[Data]]] = {
    Transform.NOTHING: frozenset(),
    Transform.DOWNSCALED: frozenset({Data.FRAME}),
    Transform.BLURRED_REGION: frozenset({Data.CROPS}),
    Transform.CROP: frozenset({Data.CROPS}),
    Transform.EMBEDDING: frozenset({Data.EMBEDDING}),
    Transform.FRAME: frozenset({Data.FRAME}),
}
# What must be on the near side for the transform to be made there.
_MADE_FROM: Final[Mapping[Transform, Data]] = {
    Transform.DOWNSCALED: Data.FRAME,
    Transform.BLURRED_REGION: Data.CROPS,
    Transform.CROP: Data.CROPS,
    Transform.EMBEDDING: Data.EMBEDDING,
    Transform.FRAME: Data.FRAME,
}
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
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    """A declared pipeline: its privacy class, its stages in order, its two boundaries."""

    name: str
    privacy: Privacy
    stages: tuple[StageSpec, ...]
    device_to_edge: BoundarySpec
    edge_to_cloud: BoundarySpec

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


# ---------------------------------------------------------------- validation


def _derive(available: set[Data]) -> set[Data]:
    """``available`` plus what follows from it on the same tier at no cost."""
    out = set(available)
    if {Data.FRAME, Data.REGIONS} <= out:
        out.add(Data.CROPS)  # cut the regions out of the frame
    if Data.CROPS in out:
        out.add(Data.REGIONS)  # crops travel with their rectangles
    return out


def _listed(values: Collection[StrEnum], kind: type[StrEnum]) -> str:
    """``values`` in the order ``kind`` declares them, e.g. ``nothing, embedding``."""
    return ", ".join(v.value for v in kind if v in values) or "nothing"


def validate(spec: PipelineSpec, manifest: Path | None = None) -> None:
    """Raise :class:`ConfigError` unless ``spec`` can run as declared within its privacy class.

    Model roles are looked up in ``manifest`` (default: the shipped models/manifest.json)
    at call time, so roles added there later are accepted. Each message names the
    stage or boundary at fault and says what to change.
    """
    where = f"pipeline {spec.name}"
    if not spec.stages:
        raise ConfigError(f"{where}: no stages; add at least one [[stages]] table")
    seen: set[str] = set()
    for stage in spec.stages:
        if stage.name in seen:
            raise ConfigError(f"{where}: two stages are named {stage.name!r}; rename one")
        seen.add(stage.name)
    for before, after in zip(spec.stages, spec.stages[1:], strict=False):
        if after.tier.rank < before.tier.rank:
            raise ConfigError(
                f"{where}: stage {after.name!r} (tier {after.tier}) comes after stage "
                f"{before.name!r} (tier {before.tier}); stages run in tier order device, "
                f"edge, cloud: move {after.name!r} earlier or change one of the tiers"
            )
    roles = manifest_sizes(manifest)
    for stage in spec.stages:
        if stage.model not in roles:
            raise ConfigError(
                f"{where}: stage {stage.name!r}: model role {stage.model!r} is not in the "
                f"model manifest (roles: {', '.join(sorted(roles))}); add it to the "
                f"manifest or use one of those"
            )
    _check_leaving(spec)
    _check_flow(spec)


def _check_leaving(spec: PipelineSpec) -> None:
    """The privacy class and the face-blur rule, on the one boundary that leaves the site."""
    out = spec.edge_to_cloud
    where = _at(spec, out)
    if not may_leave(spec.privacy, out.transform):
        allowed = _listed(_MAY_LEAVE[spec.privacy], Transform)
        raise ConfigError(
            f"{where} sends {out.transform}, but privacy {spec.privacy} lets only {allowed} "
            f"leave the site; change its transform or the pipeline's privacy"
        )
    # Pixels leave the site only with faces blurred, whatever else was done to them:
    # a blurred region or a downscaled frame can still show a recognisable face.
    if out.transform in PIXEL_TRANSFORMS and out.sanitize is not Sanitize.FACE_BLUR:
        raise ConfigError(
            f"{where} sends {out.transform} (pixels) off the site without blurring faces; "
            f'add sanitize = "face_blur" to it'
        )


def _check_flow(spec: PipelineSpec) -> None:
    """Every stage finds what it needs; every boundary sends only what exists and is used."""
    available: set[Data] = {Data.FRAME}  # the camera's frame, on the device
    stages = list(spec.stages)
    for tier, boundary in zip(_TIERS, (*spec.boundaries, None), strict=True):
        here = [s for s in stages if s.tier is tier]
        for stage in here:
            if stage.needs not in _derive(available):
                raise ConfigError(_missing_input(spec, stage, available))
            available.add(stage.emits)
        if boundary is None:
            break
        have = _derive(available)
        sends = boundary.transform
        if sends is not Transform.NOTHING:
            if _MADE_FROM[sends] not in have:
                raise ConfigError(
                    f"{_at(spec, boundary)} sends {sends}, but only "
                    f"{_listed(have - {Data.LABEL}, Data)} reach it; emit "
                    f"{_MADE_FROM[sends]} from a stage before it or send something else"
                )
            if not any(s.tier.rank > tier.rank for s in stages):
                raise ConfigError(
                    f"{_at(spec, boundary)} sends {sends}, but no stage runs beyond it; "
                    f'set transform = "nothing"'
                )
        available = set(_CARRIES[sends])
        if sends in PIXEL_TRANSFORMS and Data.REGIONS in have:
            available.add(Data.REGIONS)  # rectangles travel with the pixels


def _at(spec: PipelineSpec, boundary: BoundarySpec) -> str:
    """Where an error is: the pipeline, the boundary, and its table in the file."""
    b = boundary.boundary
    return f"pipeline {spec.name}: boundary {b} ([boundaries.{b.key}])"


def _missing_input(spec: PipelineSpec, stage: StageSpec, available: set[Data]) -> str:
    has = _listed(_derive(available) - {Data.LABEL}, Data)
    if stage.tier is Tier.DEVICE:
        return (
            f"pipeline {spec.name}: stage {stage.name!r} (tier device) needs {stage.needs}, "
            f"but the device has only {has}; emit {stage.needs} from an earlier device "
            f"stage or change what the stage needs"
        )
    boundary = spec.device_to_edge if stage.tier is Tier.EDGE else spec.edge_to_cloud
    return (
        f"pipeline {spec.name}: stage {stage.name!r} (tier {stage.tier}) needs "
        f"{stage.needs}, but boundary {boundary.boundary} ([boundaries."
        f"{boundary.boundary.key}]) sends {boundary.transform}, so the {stage.tier} has "
        f"only {has}; send what it needs across {boundary.boundary} (transform "
        f"{transform_for(stage.needs)}), or move the stage before that boundary"
    )


# ---------------------------------------------------------------- the manifest


def manifest_sizes(manifest: Path | None = None) -> dict[str, int | None]:
    """Every model role in the manifest and its ``size_bytes`` (None where not recorded)."""
    if manifest is None:
        from pipeline.inference.model import DEFAULT_MANIFEST

        manifest = DEFAULT_MANIFEST
    try:
        document = json.loads(Path(manifest).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{manifest}: model manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest}: cannot read the model manifest: {exc}") from exc
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{manifest}: key 'models' is missing or not an object")
    sizes: dict[str, int | None] = {}
    for role, entry in models.items():
        size = entry.get("size_bytes") if isinstance(entry, dict) else None
        ok = isinstance(size, int) and not isinstance(size, bool) and size >= 0
        sizes[role] = size if ok else None
    return sizes


# ---------------------------------------------------------------- reading TOML

E = TypeVar("E", bound=StrEnum)

_TOP_KEYS: Final = ("name", "privacy", "stages", "boundaries")
_STAGE_KEYS: Final = (
    "name", "model", "tier", "needs", "emits", "latency_slo_ms", "min_throughput_fps"
)
_BOUNDARY_KEYS: Final = ("transform", "sanitize")


def load_pipeline(path: Path | str, manifest: Path | None = None) -> PipelineSpec:
    """Read a pipeline TOML file and :func:`validate` it against ``manifest``.

    Raises :class:`ConfigError` naming the key, stage or boundary at fault.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"pipeline file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"pipeline file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pipeline file {path} is not valid TOML: {exc}") from None
    spec = parse_pipeline(data, where=str(path))
    validate(spec, manifest)
    return spec


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
    return PipelineSpec(
        name=name,
        privacy=_choice(data, "privacy", Privacy, where),
        stages=stages,
        device_to_edge=_boundary(boundaries, Boundary.DEVICE_TO_EDGE, where),
        edge_to_cloud=_boundary(boundaries, Boundary.EDGE_TO_CLOUD, where),
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
        raise ConfigError(
            f"{where}: {key} must be 1-64 letters, digits, '_' or '-', got {value!r}"
        )
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
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{where}: {key} must be a number > 0, got {value!r}")
    return float(value)
