"""Threshold sweep, target choice, signal comparison and the config writer."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.config import load_settings
from pipeline.planning import curves, retrain
from pipeline.planning import sizes as sizes_module
from pipeline.planning.costs import CostModel, Mode
from pipeline.planning.curves import (
    OperatingPoint,
    Target,
    TargetKind,
    TuningError,
    area_under_curve,
    best_signal,
    choose,
    sweep,
    with_mix,
)
from pipeline.planning.retrain import TuningData
from pipeline.planning.sizes import MessageSizes, measure_message_sizes
from pipeline.planning.tomledit import dump_toml, update_config
from pipeline.planning.tune import format_result, tune
from schemas.errors import ConfigError

# Five frames, sorted by confidence. The edge is wrong on the two least confident;
# the cloud is wrong on the most confident one only.
CONF = np.array([0.5, 0.6, 0.6, 0.8, 1.0])
EDGE = np.array([False, False, True, True, True])
CLOUD = np.array([True, True, True, True, False])
SIZES = MessageSizes(frame=300_000, crop_escalation=1000, full_escalation=300_100, reply=300)


def _points() -> tuple[OperatingPoint, ...]:
    return sweep(CONF, EDGE, CLOUD)


def test_sweep_by_hand() -> None:
    points = _points()
    got = [(p.threshold, p.escalated, p.accuracy) for p in points]
    # No threshold escalates the frame with confidence 1.0: four points, not five.
    assert got == [(0.0, 0, 0.6), (0.53, 1, 0.8), (0.7, 3, 1.0), (0.9, 4, 1.0)]
    assert [p.escalation_share for p in points] == [0.0, 0.2, 0.6, 0.8]
    assert all(p.frames == 5 for p in points)


def test_thresholds_separate_exactly_as_the_policy_does() -> None:
    rng = np.random.default_rng(3)
    conf = np.round(rng.random(200), 3)  # many ties
    for p in sweep(conf, np.ones(200, bool), np.ones(200, bool)):
        assert int((conf < p.threshold).sum()) == p.escalated
        assert 0.0 <= p.threshold <= 1.0


def test_escalate_all_threshold_is_one() -> None:
    points = sweep(np.array([0.2, 0.4]), np.array([True, False]), np.array([True, True]))
    assert points[-1].threshold == 1.0 and points[-1].escalation_share == 1.0


def test_nice_thresholds_stay_short_and_inside() -> None:
    assert curves._nice_threshold(0.9, 0.95) == 0.92
    t = curves._nice_threshold(0.123456789, 0.123456790)
    assert 0.123456789 < t <= 0.123456790


def test_choose_min_accuracy() -> None:
    p = choose(_points(), Target(TargetKind.MIN_ACCURACY, 0.75))
    assert (p.threshold, p.escalation_share) == (0.53, 0.2)
    assert choose(_points(), Target(TargetKind.MIN_ACCURACY, 1.0)).threshold == 0.7
    assert choose(_points(), Target(TargetKind.MIN_ACCURACY, 0.0)).threshold == 0.0


def test_choose_max_escalation_prefers_fewer_escalations_among_equals() -> None:
    assert choose(_points(), Target(TargetKind.MAX_ESCALATION, 0.5)).threshold == 0.53
    # 0.6 and 0.8 both give 100%: the smaller share wins.
    assert choose(_points(), Target(TargetKind.MAX_ESCALATION, 1.0)).threshold == 0.7
    assert choose(_points(), Target(TargetKind.MAX_ESCALATION, 0.0)).threshold == 0.0


def test_choose_max_cost() -> None:
    def cost(share: float) -> float:
        return 1.0 + 10.0 * share

    assert choose(_points(), Target(TargetKind.MAX_COST, 3.5), cost).threshold == 0.53
    with pytest.raises(TuningError, match=r"even escalating nothing costs \$1"):
        choose(_points(), Target(TargetKind.MAX_COST, 0.5), cost)


def test_unreachable_accuracy_says_what_is_reachable() -> None:
    points = sweep(CONF, EDGE, np.zeros(5, bool))
    with pytest.raises(TuningError, match=r"the best is 60.00% at escalation share 0.0%"):
        choose(points, Target(TargetKind.MIN_ACCURACY, 0.9))


def test_targets_validate() -> None:
    with pytest.raises(ConfigError, match="--min-accuracy is a share"):
        Target(TargetKind.MIN_ACCURACY, 98.0)
    with pytest.raises(ConfigError, match="--max-cost-per-million must be"):
        Target(TargetKind.MAX_COST, -1.0)


def test_area_under_curve_by_hand() -> None:
    points = _points()
    # Trapezoids: 0..0.2 mean 0.7, 0.2..0.6 mean 0.9, 0.6..0.8 at 1.0.
    assert area_under_curve(points, 0.8) == pytest.approx((0.2 * 0.7 + 0.4 * 0.9 + 0.2) / 0.8)
    assert area_under_curve(points, 0.1) == pytest.approx(0.65)  # up to the midpoint
    assert area_under_curve(points, 0.0) == 0.6
    with pytest.raises(ValueError, match="ends at share"):
        area_under_curve(points, 0.9)


def test_best_signal_counts_differences_under_one_frame_as_ties() -> None:
    areas = {"max_probability": 0.95, "margin": 0.9504, "entropy": 0.94}
    assert best_signal(areas, frames=1000) == "max_probability"  # 0.0004 < 1/1000
    assert best_signal(areas, frames=10_000) == "margin"


def test_with_mix() -> None:
    point = OperatingPoint(0.9, 0.1, 0.99, 10, 100)
    share, accuracy = with_mix(point, edge_accuracy=0.95, escalatable=0.5)
    assert share == pytest.approx(0.05)
    assert accuracy == pytest.approx(0.97)


def _data() -> TuningData:
    # Frame 0 and 1 confidently right, frame 2 uncertain and wrong on the edge.
    proba = np.array([[0.95, 0.05], [0.1, 0.9], [0.55, 0.45]], dtype=np.float32)
    return TuningData(
        truth=np.array([0, 1, 1]), edge_proba=proba, cloud_labels=np.array([0, 1, 1]), source="t"
    )


def test_tune_picks_and_reports() -> None:
    result = tune(_data(), Target(TargetKind.MIN_ACCURACY, 1.0), signal="best", sizes=SIZES)
    assert result.signal == "max_probability"  # all signals tie on this data
    assert result.point.escalated == 1
    assert result.edge_accuracy == pytest.approx(2 / 3) and result.cloud_accuracy == 1.0
    text = format_result(result)
    assert "max_probability >= " in text and "escalated     33.3% of frames" in text
    cost = CostModel().cost_per_million(Mode.HYBRID, 1 / 3, 1000, bytes_per_reply=300).total
    assert f"hybrid ${cost:.2f} crop" in text
    with pytest.raises(ConfigError, match="unknown signal"):
        tune(_data(), Target(TargetKind.MIN_ACCURACY, 1.0), signal="x", sizes=SIZES)


def test_toml_writer_round_trips() -> None:
    data = {
        "top": 1,
        "nats": {"url": 'nats://h:4222 "q" \\ é \x7f', "connect_timeout_s": 2.5},
        "edge": {"default_threshold": 1e-05, "flag": True, "list": [1, 2.0, "x"], "a b": 0},
        "stream": {"big": float("inf")},
    }
    text = dump_toml(data)
    assert tomllib.loads(text) == data
    assert text.index("top = 1") < text.index("[nats]")
    with pytest.raises(TuningError, match="nested"):
        dump_toml({"edge": {"inner": {"x": 1}}})


def test_update_config_edits_in_place_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    before = (
        '# site 7\n[nats]\nurl = "nats://10.0.0.1:4222"\n\n[edge]  # this box\n'
        "max_batch_size = 8\ndefault_threshold = 0.5  # old\n\n[cloud]\nfetch_batch = 16\n"
    )
    path.write_text(before)
    assert update_config(path, 0.72, "max_probability") == [
        "[edge] default_threshold = 0.72",
        '[edge] confidence_signal = "max_probability"',
    ]
    assert path.read_text() == before.replace(
        "[edge]  # this box\n", '[edge]  # this box\nconfidence_signal = "max_probability"\n'
    ).replace("default_threshold = 0.5  # old", "default_threshold = 0.72")
    settings = load_settings(path, env={})
    assert settings.edge.default_threshold == 0.72
    assert (settings.edge.max_batch_size, settings.cloud.fetch_batch) == (8, 16)
    assert settings.nats.url == "nats://10.0.0.1:4222"


def test_update_config_adds_the_key_or_the_section(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[edge]\nmax_batch_size = 8\n[cloud]\nfetch_batch = 16")
    update_config(path, 0.6, "max_probability")
    signal = 'confidence_signal = "max_probability"\n'
    assert path.read_text() == (
        "[edge]\ndefault_threshold = 0.6\n"
        + signal
        + "max_batch_size = 8\n[cloud]\nfetch_batch = 16\n"
    )
    path.write_text("# only comments\n")
    update_config(path, 0.6, "max_probability")
    assert path.read_text() == "# only comments\n\n[edge]\ndefault_threshold = 0.6\n" + signal
    fresh = tmp_path / "new.toml"
    update_config(fresh, 0.5, "margin")
    assert fresh.read_text() == '[edge]\ndefault_threshold = 0.5\nconfidence_signal = "margin"\n'


def test_update_config_rewrites_an_unusual_layout_without_losing_settings(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("# dotted keys\nedge.default_threshold = 0.5\nedge.max_batch_size = 8\n")
    written = update_config(path, 0.7, "max_probability")
    assert "comments were not kept" in written[-1]
    assert tomllib.loads(path.read_text()) == {
        "edge": {
            "default_threshold": 0.7,
            "max_batch_size": 8,
            "confidence_signal": "max_probability",
        }
    }


def test_update_config_never_leaves_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("[edge]\nmax_batch_sise = 8\n")
    with pytest.raises(ConfigError, match="max_batch_sise"):
        update_config(path, 0.5, "max_probability")
    assert path.read_text() == "[edge]\nmax_batch_sise = 8\n"
    assert list(tmp_path.iterdir()) == [path]


def test_message_sizes_are_measured_with_the_codec() -> None:
    sizes = measure_message_sizes()
    assert 640 * 480 < sizes.frame < sizes.full_escalation < 640 * 480 + 1000
    assert 32 * 32 < sizes.crop_escalation < 2000
    assert 100 < sizes.reply < 1000
    assert sizes.escalation("crop") == sizes.crop_escalation
    with pytest.raises(ValueError, match="never sent"):
        sizes.escalation("local_only")


def test_cli_tune_writes_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command's own data step retrains 10 models; the wiring is what is tested here.
    monkeypatch.setattr(retrain, "cross_validated_data", _data)
    monkeypatch.setattr(sizes_module, "measure_message_sizes", lambda: SIZES)
    path = tmp_path / "edge.toml"
    assert cli.main(["tune", "--max-escalation", "0.5", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "wrote           [edge] default_threshold = " in out
    assert 0.55 < load_settings(path, env={}).edge.default_threshold <= 0.9
    with pytest.raises(SystemExit):  # exactly one target
        cli.main(["tune", "--min-accuracy", "0.5", "--max-escalation", "0.1"])
