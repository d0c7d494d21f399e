"""Is a declared pipeline runnable as declared, and within its privacy class?

:func:`validate` refuses a pipeline whose stages are out of tier order, name a model
role the manifest does not have, need data that does not reach them, send across a
boundary what is not there or not used, or send off the site more than the privacy
class allows (or pixels without blurring faces). Each message names the stage or
boundary at fault and says what to change; the rules are in ``docs/pipelines.md``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Final

from pipeline.planning.pipelines import (
    PIXEL_TRANSFORMS,
    BoundarySpec,
    Data,
    PipelineSpec,
    Sanitize,
    StageSpec,
    Tier,
    Transform,
    may_leave,
    transform_for,
)
from pipeline.planning.roles import manifest_sizes
from schemas.errors import ConfigError

__all__ = ["validate"]

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
        allowed = _listed({t for t in Transform if may_leave(spec.privacy, t)}, Transform)
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
    for tier, boundary in zip(Tier, (*spec.boundaries, None), strict=True):
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
