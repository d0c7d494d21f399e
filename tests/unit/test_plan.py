"""pipeline.planning.placement: hard constraints exclude, soft ones score, and every reason
cites its figure.

Figures are built here (``Figures.assumed`` plus test model sizes) or loaded from
bench files written into a temp folder, so no test depends on this checkout's results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.plan import add_plan_command
from pipeline.planning.assumptions import Fleet, TierCapabilities, Weights
from pipeline.planning.figures import Figure, Figures
from pipeline.planning.pipelines import (
    NEEDS,
    Boundary,
    BoundarySpec,
    Data,
    PipelineSpec,
    Privacy,
    StageSpec,
    Tier,
    Transform,
    may_leave,
    transform_for,
)
from pipeline.planning.placement import plan
from pipeline.planning.scores import render_plan
from schemas.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
MB = 1_000_000


def figures(**sizes: int) -> Figures:
    """The stated assumptions, a 50 ms cloud round trip, and the given model sizes."""
    models = {role: Figure(size, "B", "measured: test manifest") for role, size in sizes.items()}
    return replace(Figures.assumed(50.0), model_bytes=models)


def spec(privacy: Privacy, *stages: StageSpec) -> PipelineSpec:
    # Boundaries do not matter to the plan: it scores placements, not the declaration.
    return PipelineSpec(
        name="t",
        privacy=privacy,
        stages=stages,
        device_to_edge=BoundarySpec(Boundary.DEVICE_TO_EDGE, Transform.FRAME),
        edge_to_cloud=BoundarySpec(Boundary.EDGE_TO_CLOUD, Transform.NOTHING),
    )


def stage(name: str, tier: Tier, needs: Data, emits: Data, model: str, **kw: float) -> StageSpec:
    return StageSpec(name, model, tier, needs, emits, **kw)


@pytest.mark.parametrize("privacy", list(Privacy))
@pytest.mark.parametrize("needs", NEEDS)
def test_a_privacy_forbidden_tier_is_never_recommended(privacy: Privacy, needs: Data) -> None:
    # The consumer's model is too big for the device and the edge, so the cloud is the
    # only tier left: it must be chosen exactly when privacy lets the input leave.
    producer = () if needs is Data.FRAME else (stage("p", Tier.EDGE, Data.FRAME, needs, "small"),)
    consumer = stage("c", Tier.CLOUD, needs, Data.LABEL, "huge", min_throughput_fps=5000)
    result = plan(spec(privacy, *producer, consumer), figures(small=1000, huge=200 * MB)).stage("c")
    cloud = result.tiers[Tier.CLOUD.rank]
    if may_leave(privacy, transform_for(needs)):
        assert result.recommended is Tier.CLOUD
        assert cloud.score is not None
    else:
        assert result.recommended is None
        assert cloud.score is None
        assert cloud.excluded is not None
        assert f"would leave the site as {transform_for(needs)}" in cloud.excluded
        assert f"privacy {privacy} forbids" in cloud.excluded


def test_a_stage_no_tier_can_take_is_said_so() -> None:
    s = stage("c", Tier.EDGE, Data.FRAME, Data.LABEL, "huge")
    result = plan(spec(Privacy.NONE, s), figures(huge=200 * MB))
    assert result.stage("c").recommended is None
    assert "declared edge -> recommended none: every tier is excluded" in render_plan(result)


def test_a_model_too_big_for_the_device_is_not_placed_there() -> None:
    detector = stage("d", Tier.DEVICE, Data.FRAME, Data.REGIONS, "m")
    big = plan(spec(Privacy.NONE, detector), figures(m=5 * MB)).stage("d")
    assert big.recommended is Tier.EDGE
    device = big.tiers[Tier.DEVICE.rank]
    assert device.score is None and device.excluded is not None
    assert "'m' is 5,000,000 B (measured: test manifest)" in device.excluded
    assert "over the device limit of 1,000,000 B" in device.excluded
    # At the limit it fits; with a larger limit the device is allowed again.
    fits = plan(spec(Privacy.NONE, detector), figures(m=MB)).stage("d")
    assert fits.scores[Tier.DEVICE] is not None
    roomy = TierCapabilities(device_max_model_bytes=10 * MB)
    assert (
        plan(spec(Privacy.NONE, detector), figures(m=5 * MB), capabilities=roomy)
        .stage("d")
        .scores[Tier.DEVICE]
        is not None
    )


def test_a_model_too_big_for_the_edge_goes_to_the_cloud_if_privacy_allows() -> None:
    s = stage("c", Tier.EDGE, Data.EMBEDDING, Data.LABEL, "big")
    embed = stage("e", Tier.EDGE, Data.FRAME, Data.EMBEDDING, "small")
    result = plan(spec(Privacy.EMBEDDING, embed, s), figures(small=1000, big=300 * MB))
    assert result.stage("c").recommended is Tier.CLOUD
    assert "over the edge limit of 100,000,000 B" in (result.stage("c").tiers[1].excluded or "")


def test_a_latency_slo_below_the_cloud_round_trip_pushes_to_the_edge() -> None:
    embed = stage("embed", Tier.EDGE, Data.FRAME, Data.EMBEDDING, "small")

    def classify(slo: float) -> StageSpec:
        return stage(
            "classify",
            Tier.CLOUD,
            Data.EMBEDDING,
            Data.LABEL,
            "small",
            latency_slo_ms=slo,
            min_throughput_fps=1000,
        )

    f = figures(small=1000)
    loose = plan(spec(Privacy.EMBEDDING, embed, classify(1000)), f).stage("classify")
    assert loose.recommended is Tier.CLOUD  # more throughput, one deployment to update
    tight = plan(spec(Privacy.EMBEDDING, embed, classify(10)), f).stage("classify")
    assert tight.recommended is Tier.EDGE
    cloud, edge = tight.tiers[Tier.CLOUD.rank], tight.tiers[Tier.EDGE.rank]
    assert cloud.factors["latency"] == 0.0 and edge.factors["latency"] == 0.5
    assert any(
        "p50 and p99 50 ms (assumed: edge.cloud_round_trip_prior_ms) against the SLO of 10 ms: "
        "misses it even at p50" in r
        for r in cloud.reasons
    )
    assert any("meets it at p50 but not at p99" in r for r in edge.reasons)


def test_a_stage_is_not_placed_below_where_its_input_comes_from() -> None:
    find = stage("find", Tier.EDGE, Data.FRAME, Data.REGIONS, "big")
    classify = stage("classify", Tier.EDGE, Data.CROPS, Data.LABEL, "small")
    result = plan(spec(Privacy.NONE, find, classify), figures(big=5 * MB, small=1000))
    assert result.stage("find").recommended is Tier.EDGE  # too big for the device
    device = result.stage("classify").tiers[Tier.DEVICE.rank]
    assert device.score is None
    assert "comes from stage 'find' on the edge" in (device.excluded or "")


def test_operational_burden_counts_units_to_update() -> None:
    s = stage("s", Tier.EDGE, Data.FRAME, Data.LABEL, "small")
    fleet = Fleet(sites=3, cameras_per_site=5)
    result = plan(spec(Privacy.NONE, s), figures(small=1000), fleet=fleet)
    tiers = result.stage("s").tiers
    assert any("15 units to update (3 sites x 5 cameras" in r for r in tiers[0].reasons)
    assert any("3 units to update (3 sites" in r for r in tiers[1].reasons)
    assert tiers[0].factors["operations"] < tiers[1].factors["operations"]


def test_reasons_cite_measured_figures_and_their_files(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "edge_throughput.json").write_text(
        json.dumps(
            {
                "models": {
                    "edge": {
                        "name": "m",
                        "worker": {"1": {"frames_per_s": 700.5}, "8": {"frames_per_s": 900.0}},
                    }
                }
            }
        )
    )
    (results / "latency.json").write_text(
        json.dumps(
            {
                "results": {
                    "edge_only": {"latency_ms": {"p50": 4.0, "p95": 8.0, "p99": 9.0}},
                    "cloud_only": {"latency_ms": {"p50": 61.0, "p95": 80.0, "p99": 95.0}},
                }
            }
        )
    )
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "manifest.json").write_text(
        json.dumps({"schema": 2, "models": {"edge": {"provenance": {"size_bytes": 11395}}}})
    )
    f = Figures.load(tmp_path)
    assert f.throughput_fps[Tier.EDGE] == Figure(
        700.5,
        "frames/s",
        "measured: bench/results/edge_throughput.json",
        "m in the edge worker through NATS; lowest of batch caps 1, 8",
    )
    assert f.latency_p99_ms[Tier.CLOUD].value == 95.0
    assert f.model_bytes["edge"].source == "measured: models/manifest.json"
    s = stage(
        "c", Tier.EDGE, Data.FRAME, Data.LABEL, "edge", latency_slo_ms=30, min_throughput_fps=100
    )
    tiers = plan(spec(Privacy.FRAME, s), f).stage("c").tiers
    edge, cloud = tiers[Tier.EDGE.rank].reasons, tiers[Tier.CLOUD.rank].reasons
    assert any(
        "p50 4 ms (measured: bench/results/latency.json), p99 9 ms "
        "(measured: bench/results/latency.json) against the SLO of 30 ms: meets it at p99" in r
        for r in edge
    )
    assert any("700.5 frames/s (measured: bench/results/edge_throughput.json)" in r for r in edge)
    assert any("p50 61 ms (measured: bench/results/latency.json)" in r for r in cloud)
    assert any("11,395 B (measured: models/manifest.json)" in r for r in edge)
    assert any("307,481 B out and 298 B back (measured: docs/cost-model.md)" in r for r in cloud)


def test_without_bench_files_every_figure_says_it_is_assumed(tmp_path: Path) -> None:
    f = Figures.load(tmp_path, cloud_round_trip_prior_ms=80.0)
    assert f.latency_p50_ms[Tier.CLOUD] == Figure(
        80.0,
        "ms",
        "assumed: edge.cloud_round_trip_prior_ms",
        "the prior in pipeline/config.py; no figure in bench/results/latency.json",
    )
    assert not f.throughput_fps[Tier.EDGE].measured
    assert "no figure in bench/results/edge_throughput.json" in f.throughput_fps[Tier.EDGE].note
    assert f.model_bytes == {}
    s = stage("s", Tier.EDGE, Data.FRAME, Data.LABEL, "edge")
    text = render_plan(plan(spec(Privacy.NONE, s), f))
    assert "model 'edge': size unknown, so capacity is not checked" in text
    assert re.search(r"edge latency p50 +5\.88 ms  assumed \(one `make demo` run", text)


def test_the_plan_is_deterministic_and_serialisable() -> None:
    find = stage("find", Tier.EDGE, Data.FRAME, Data.REGIONS, "a")
    heavy = stage("heavy", Tier.CLOUD, Data.CROPS, Data.LABEL, "b", latency_slo_ms=100)
    s, f = spec(Privacy.CROP, find, heavy), figures(a=10_000, b=300 * MB)
    first, second = plan(s, f), plan(s, f)
    assert first == second
    assert render_plan(first) == render_plan(second)
    data = json.loads(json.dumps(first.to_dict()))
    assert [x["recommended"] for x in data["stages"]] == ["edge", "cloud"]
    assert data["stages"][1]["tiers"]["edge"]["excluded"].startswith("model 'b' is 300,000,000 B")
    assert {x["name"] for x in data["figures"]} >= {"cloud latency p50", "model 'b'"}


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hybridfleet")
    add_plan_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def test_the_plan_command_on_the_shipped_retail_pipeline(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("HYBRIDFLEET_")]:
        monkeypatch.delenv(name)
    # Its roles (edge, cloud) are in the shipped manifest.
    assert run_cli(["plan", str(REPO / "configs/pipelines/retail-shelf.toml"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pipeline"] == "retail-shelf"
    first = data["stages"][0]
    assert first["stage"] == "find-regions"
    assert first["tiers"]["cloud"]["excluded"].endswith("which privacy crop forbids")
    assert run_cli(["plan", str(REPO / "configs/pipelines/retail-shelf.toml")]) == 0
    assert "stage 1 find-regions" in capsys.readouterr().out


def test_the_plan_command_refuses_an_invalid_pipeline(tmp_path: Path) -> None:
    text = (REPO / "configs/pipelines/retail-shelf.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('sanitize = "face_blur"', ""))
    with pytest.raises(ConfigError, match="face_blur"):
        run_cli(["plan", str(bad)])


def test_message_sizes_come_from_the_bytes_benchmark_when_present(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "bytes.json").write_text(
        json.dumps(
            {
                "message_bytes": {
                    "frame": 307_408,
                    "crop_escalation": 1_400,
                    "full_escalation": 300_000,
                    "reply": 300,
                }
            }
        )
    )
    f = Figures.load(tmp_path)
    assert f.crossing_bytes[Data.CROPS] == f.crossing_bytes[Data.REGIONS]
    assert f.crossing_bytes[Data.CROPS].value == 1_400
    assert f.crossing_bytes[Data.FRAME].cite() == "300,000 B (measured: bench/results/bytes.json)"
    assert f.reply_bytes.value == 300 and f.reply_bytes.measured
    assert not f.crossing_bytes[Data.EMBEDDING].measured


@pytest.mark.parametrize(
    "make",
    [
        lambda: Weights(latency=-1.0),
        lambda: Weights(cost_scale_per_million=0.0),
        lambda: Weights(0.0, 0.0, 0.0, 0.0, 0.0),
        lambda: Fleet(sites=0),
        lambda: Fleet(cameras_per_site=True),
    ],
)
def test_weights_and_fleet_are_checked(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()
