"""pipeline.planning.pipelines: the shipped pipelines validate; every refusal names what to fix.

Each test writes its own model manifest, so nothing here depends on which roles
models/manifest.json holds today.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.planning.pipelinefile import load_pipeline
from pipeline.planning.pipelines import (
    Boundary,
    BoundarySpec,
    Data,
    PipelineSpec,
    Privacy,
    Sanitize,
    StageSpec,
    Tier,
    Transform,
    what_crosses,
)
from pipeline.planning.roles import manifest_sizes
from pipeline.planning.validation import validate
from schemas.errors import ConfigError, ModelError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pipelines"
ROLES: dict[str, int | None] = {
    "edge": 11_395,
    "cloud": 235_877,
    "embed": 50_000,
    "cloud-embed": 2_000_000,
}


def write_manifest(folder: Path, roles: dict[str, int | None]) -> Path:
    path = folder / "manifest.json"
    models = {
        r: ({} if size is None else {"provenance": {"size_bytes": size}})
        for r, size in roles.items()
    }
    path.write_text(json.dumps({"schema": 2, "models": models}))
    return path


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path, ROLES)


def stage(name: str, tier: Tier, needs: Data, emits: Data, model: str = "edge") -> StageSpec:
    return StageSpec(name=name, model=model, tier=tier, needs=needs, emits=emits)


def crossing(boundary: Boundary, transform: Transform, blur: bool = False) -> BoundarySpec:
    return BoundarySpec(boundary, transform, Sanitize.FACE_BLUR if blur else Sanitize.NONE)


# Edge finds regions and classifies; the cloud classifies crops.
RETAIL = PipelineSpec(
    name="t",
    privacy=Privacy.CROP,
    stages=(
        stage("find", Tier.EDGE, Data.FRAME, Data.REGIONS),
        stage("classify", Tier.EDGE, Data.CROPS, Data.LABEL),
        stage("heavy", Tier.CLOUD, Data.CROPS, Data.LABEL, model="cloud"),
    ),
    device_to_edge=crossing(Boundary.DEVICE_TO_EDGE, Transform.FRAME),
    edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, Transform.CROP, blur=True),
)


def refused(spec: PipelineSpec, manifest: Path, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        validate(spec, manifest)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_shipped_pipelines_validate(manifest: Path) -> None:
    retail = load_pipeline(CONFIGS / "retail-shelf.toml", manifest)
    assert retail.privacy is Privacy.CROP
    assert [s.tier for s in retail.stages] == [Tier.EDGE, Tier.EDGE, Tier.CLOUD]
    assert what_crosses(retail) == {
        Boundary.DEVICE_TO_EDGE: Transform.FRAME,
        Boundary.EDGE_TO_CLOUD: Transform.CROP,
    }
    assert retail.edge_to_cloud.sanitize is Sanitize.FACE_BLUR

    embedding = load_pipeline(CONFIGS / "embedding.toml", manifest)
    assert embedding.privacy is Privacy.EMBEDDING
    assert [s.model for s in embedding.stages] == ["embed", "cloud-embed"]
    assert what_crosses(embedding)[Boundary.EDGE_TO_CLOUD] is Transform.EMBEDDING


def test_the_test_pipeline_is_valid(manifest: Path) -> None:
    validate(RETAIL, manifest)  # the base every refusal below changes one thing of


def test_stage_after_a_boundary_that_dropped_its_input(manifest: Path) -> None:
    # The cloud needs crops, but edge->cloud only sends embeddings.
    spec = replace(
        RETAIL,
        privacy=Privacy.EMBEDDING,
        stages=(
            stage("embed", Tier.EDGE, Data.FRAME, Data.EMBEDDING),
            stage("heavy", Tier.CLOUD, Data.CROPS, Data.LABEL, model="cloud"),
        ),
        edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, Transform.EMBEDDING),
    )
    refused(spec, manifest, "stage 'heavy'", "needs crops", "edge->cloud", "sends embedding")


def test_device_edge_boundary_can_drop_input_too(manifest: Path) -> None:
    spec = replace(RETAIL, device_to_edge=crossing(Boundary.DEVICE_TO_EDGE, Transform.NOTHING))
    refused(spec, manifest, "stage 'find'", "device->edge", "[boundaries.device_to_edge]")


@pytest.mark.parametrize(
    ("privacy", "transform", "allowed"),
    [
        (Privacy.EMBEDDING, Transform.CROP, "nothing, embedding"),
        (Privacy.NONE, Transform.EMBEDDING, "nothing leave"),
        (Privacy.CROP, Transform.FRAME, "nothing, blurred_region, crop, embedding leave"),
        (Privacy.CROP, Transform.DOWNSCALED, "nothing, blurred_region, crop, embedding leave"),
    ],
)
def test_privacy_forbids_what_the_boundary_sends(
    manifest: Path, privacy: Privacy, transform: Transform, allowed: str
) -> None:
    spec = replace(
        RETAIL, privacy=privacy, edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, transform, True)
    )
    refused(spec, manifest, "boundary edge->cloud", f"sends {transform}", allowed)


def test_privacy_none_still_lets_the_frame_reach_the_edge(manifest: Path) -> None:
    # device->edge stays on the site; only edge->cloud is what leaves it.
    spec = replace(
        RETAIL,
        privacy=Privacy.NONE,
        stages=RETAIL.stages[:2],
        edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, Transform.NOTHING),
    )
    validate(spec, manifest)


@pytest.mark.parametrize(
    ("privacy", "transform"),
    [
        (Privacy.CROP, Transform.CROP),
        (Privacy.CROP, Transform.BLURRED_REGION),
        (Privacy.FRAME, Transform.FRAME),
        (Privacy.FRAME, Transform.DOWNSCALED),
    ],
)
def test_pixels_leave_the_site_only_with_faces_blurred(
    manifest: Path, privacy: Privacy, transform: Transform
) -> None:
    spec = replace(
        RETAIL, privacy=privacy, edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, transform)
    )
    refused(spec, manifest, "boundary edge->cloud", 'sanitize = "face_blur"')
    validate(
        replace(spec, edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, transform, True)), manifest
    )


def test_embeddings_need_no_face_blur(manifest: Path) -> None:
    spec = replace(
        RETAIL,
        privacy=Privacy.EMBEDDING,
        stages=(
            stage("embed", Tier.EDGE, Data.FRAME, Data.EMBEDDING, model="embed"),
            stage("classify", Tier.CLOUD, Data.EMBEDDING, Data.LABEL, model="cloud-embed"),
        ),
        edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, Transform.EMBEDDING),
    )
    validate(spec, manifest)


def test_stages_out_of_tier_order(manifest: Path) -> None:
    spec = replace(RETAIL, stages=(RETAIL.stages[2], RETAIL.stages[0], RETAIL.stages[1]))
    refused(spec, manifest, "stage 'find' (tier edge)", "after stage 'heavy' (tier cloud)")


def test_unknown_model_role(tmp_path: Path, manifest: Path) -> None:
    spec = replace(
        RETAIL,
        stages=(*RETAIL.stages[:2], replace(RETAIL.stages[2], model="edge-v2")),
    )
    refused(spec, manifest, "stage 'heavy'", "'edge-v2'", "cloud, cloud-embed, edge, embed")
    # Read at validation time: the same spec is fine once the manifest has the role.
    validate(spec, write_manifest(tmp_path, {**ROLES, "edge-v2": None}))


def test_boundary_sends_what_does_not_reach_it(manifest: Path) -> None:
    # No stage finds regions, so the edge has no crops to send.
    spec = replace(RETAIL, stages=(RETAIL.stages[2],))
    refused(spec, manifest, "boundary edge->cloud", "sends crop", "only frame reach it")


def test_boundary_sends_data_no_stage_uses(manifest: Path) -> None:
    spec = replace(RETAIL, stages=RETAIL.stages[:2])
    refused(spec, manifest, "boundary edge->cloud", "no stage runs beyond it", '"nothing"')


def test_device_stage_needs_what_the_device_has(manifest: Path) -> None:
    spec = replace(RETAIL, stages=(stage("d", Tier.DEVICE, Data.CROPS, Data.LABEL),))
    refused(spec, manifest, "stage 'd' (tier device) needs crops", "only frame")


def test_crops_are_cut_where_regions_and_frame_meet(manifest: Path) -> None:
    # Regions found on the device, the frame crossing to the edge: the edge can cut crops.
    spec = replace(
        RETAIL,
        stages=(
            stage("find", Tier.DEVICE, Data.FRAME, Data.REGIONS),
            stage("classify", Tier.EDGE, Data.CROPS, Data.LABEL),
        ),
        edge_to_cloud=crossing(Boundary.EDGE_TO_CLOUD, Transform.NOTHING),
    )
    validate(spec, manifest)


def test_duplicate_stage_names(manifest: Path) -> None:
    spec = replace(RETAIL, stages=(RETAIL.stages[0], RETAIL.stages[0]))
    refused(spec, manifest, "two stages are named 'find'")


# ---------------------------------------------------------------- the TOML file

GOOD = """
name = "p"
privacy = "crop"
[[stages]]
name = "find"
model = "edge"
tier = "edge"
needs = "frame"
emits = "regions"
[boundaries.device_to_edge]
transform = "frame"
[boundaries.edge_to_cloud]
transform = "nothing"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_a_minimal_file_loads(tmp_path: Path, manifest: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD), manifest)
    assert spec.stages == (StageSpec("find", "edge", Tier.EDGE, Data.FRAME, Data.REGIONS),)
    assert spec.edge_to_cloud == BoundarySpec(Boundary.EDGE_TO_CLOUD, Transform.NOTHING)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ('tier = "edge"', 'tier = "fog"', "stages[0] (find): tier must be one of device, edge"),
        ('needs = "frame"', 'needs = "label"', "needs must be one of frame, regions, crops"),
        ('emits = "regions"', 'emits = "frame"', "emits must be one of label, regions"),
        ('model = "edge"', "", "model must name a role"),
        ('emits = "regions"', 'emits = "regions"\nlatency_slo_ms = -1', "latency_slo_ms must"),
        ('emits = "regions"', 'emits = "regions"\nmin_throughput_fps = true', "min_throughput"),
        ('emits = "regions"', 'emits = "regions"\nslo = 5', "unknown key 'slo'"),
        ('privacy = "crop"', 'privacy = "full"', "privacy must be one of none, embedding"),
        ('name = "p"', 'name = "a.b"', "name must be 1-64 letters"),
        ('transform = "nothing"', 'transform = "all"', "boundaries.edge_to_cloud: transform"),
        ('transform = "nothing"', 'transform = "nothing"\nsanitize = "pixelate"', "sanitize"),
        ("[boundaries.edge_to_cloud]", "[boundaries.cloud]", "unknown key 'cloud'"),
    ],
)
def test_file_errors_name_the_key(
    tmp_path: Path, manifest: Path, old: str, new: str, fragment: str
) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError, match=None) as info:
        load_pipeline(write(tmp_path, GOOD.replace(old, new, 1)), manifest)
    assert fragment in str(info.value)


def test_both_boundaries_are_required(tmp_path: Path, manifest: Path) -> None:
    text = GOOD.split("[boundaries.edge_to_cloud]")[0]
    with pytest.raises(ConfigError, match=r"boundaries\.edge_to_cloud is required"):
        load_pipeline(write(tmp_path, text), manifest)


def test_missing_and_broken_files(tmp_path: Path, manifest: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "absent.toml", manifest)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_pipeline(write(tmp_path, "name = "), manifest)


def test_manifest_sizes(tmp_path: Path) -> None:
    assert manifest_sizes(write_manifest(tmp_path, {"a": 5, "b": None})) == {"a": 5, "b": None}
    with pytest.raises(ModelError, match="not found"):
        manifest_sizes(tmp_path / "nothing.json")


def test_a_pipeline_naming_a_manifest_runs_its_stages_as_declared_chains() -> None:
    from pipeline.camera.simulator import CameraOptions
    from pipeline.cli.main import _apply_pipeline
    from pipeline.config import Settings
    from pipeline.planning.pipelinefile import manifest_of
    from pipeline.planning.pipelines import Tier

    path = Path(__file__).resolve().parents[2] / "configs" / "pipelines" / "shop-detect.toml"
    spec = load_pipeline(path)  # validated against the manifest it names
    manifest = manifest_of(spec, path)
    assert manifest is not None and manifest.resolve() == (
        path.parents[2] / "models" / "random" / "manifest.json"
    )
    assert (spec.chain(Tier.EDGE), spec.chain(Tier.CLOUD), spec.chain(Tier.DEVICE)) == (
        "detect",
        "classify",
        "",
    )
    with pytest.raises(ConfigError, match="not in the model manifest"):
        validate(spec)  # the shipped manifest has no role 'detect'
    _, settings = _apply_pipeline(path, CameraOptions(), Settings())
    assert (settings.edge.models, settings.cloud.models) == ("detect", "classify")
    assert settings.edge.model_manifest == settings.cloud.model_manifest == str(manifest)
    assert settings.edge.face_blur
