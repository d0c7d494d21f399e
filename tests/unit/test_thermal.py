"""Thermal sensors (sysfs and the simulated device) and the offload pressure."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_worker.thermal import (
    OffloadPressure,
    SimulatedThermal,
    SysfsThermal,
    thermal_sensor,
)
from schemas.errors import ConfigError
from schemas.heartbeat import TemperatureSource


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def zones(root: Path, *contents: str) -> Path:
    for i, text in enumerate(contents):
        zone = root / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(text)
    return root


# ---------------------------------------------------------------- sysfs


def test_sysfs_takes_the_hottest_plausible_zone(tmp_path: Path) -> None:
    root = zones(tmp_path, "45000\n", "61500\n", "-273000\n", "garbage\n", "255000\n")
    unreadable = root / "thermal_zone9"
    (unreadable / "temp").mkdir(parents=True)  # reading a directory fails
    sensor = SysfsThermal(root)
    assert sensor.read_c() == 61.5
    assert sensor.source is TemperatureSource.SYSFS


def test_sysfs_without_zones_reads_none(tmp_path: Path) -> None:
    assert SysfsThermal(tmp_path).read_c() is None
    assert SysfsThermal(tmp_path / "missing").read_c() is None
    assert SysfsThermal(zones(tmp_path / "bogus", "-273000")).read_c() is None


def test_thermal_sensor_prefers_a_real_zone(tmp_path: Path) -> None:
    real = zones(tmp_path / "real", "50000")
    assert thermal_sensor(root=real).source is TemperatureSource.SYSFS
    assert thermal_sensor(False, root=real).source is TemperatureSource.SIMULATED
    assert thermal_sensor(root=tmp_path / "none").source is TemperatureSource.SIMULATED


# ---------------------------------------------------------------- simulated


def test_simulated_starts_at_ambient_and_stays_there_idle() -> None:
    clock = FakeClock()
    sensor = SimulatedThermal(ambient_c=30.0, clock=clock)
    assert sensor.read_c() == 30.0
    clock.now += 3600
    assert sensor.read_c() == 30.0


def test_simulated_heats_with_load_by_a_first_order_lag() -> None:
    clock = FakeClock()
    sensor = SimulatedThermal(ambient_c=30.0, gain_c=40.0, time_constant_s=60.0, clock=clock)
    sensor.set_utilisation(1.0)
    assert sensor.target_c == 70.0
    clock.now += 60.0
    assert sensor.read_c() == pytest.approx(30.0 + 40.0 * (1 - math.exp(-1)))
    clock.now += 600.0
    assert sensor.read_c() == pytest.approx(70.0, abs=1e-3)
    sensor.set_utilisation(0.0)  # cools back the same way
    clock.now += 60.0
    assert sensor.read_c() == pytest.approx(30.0 + 40.0 * math.exp(-1), abs=1e-3)


def test_half_load_settles_half_way() -> None:
    clock = FakeClock()
    sensor = SimulatedThermal(ambient_c=30.0, gain_c=40.0, clock=clock)
    sensor.set_utilisation(0.5)
    clock.now += 10_000.0
    assert sensor.read_c() == pytest.approx(50.0)


@given(st.lists(st.floats(0.1, 100.0), min_size=1, max_size=20))
def test_how_often_it_is_read_does_not_change_the_curve(steps: list[float]) -> None:
    often, once = FakeClock(), FakeClock()
    read_often = SimulatedThermal(clock=often, initial_c=20.0)
    read_once = SimulatedThermal(clock=once, initial_c=20.0)
    read_often.set_utilisation(0.8)
    read_once.set_utilisation(0.8)
    for step in steps:
        often.now += step
        read_often.read_c()
    once.now += sum(steps)
    assert read_often.read_c() == pytest.approx(read_once.read_c())


def test_override_wins_and_the_model_keeps_running_underneath() -> None:
    clock = FakeClock()
    sensor = SimulatedThermal(ambient_c=30.0, gain_c=40.0, time_constant_s=10.0, clock=clock)
    sensor.set_utilisation(1.0)
    sensor.override_c = 95.0
    clock.now += 1000.0
    assert sensor.read_c() == 95.0
    sensor.override_c = None
    assert sensor.read_c() == pytest.approx(70.0)


def test_utilisation_is_clamped_and_nan_refused() -> None:
    sensor = SimulatedThermal(clock=FakeClock())
    sensor.set_utilisation(1.7)
    assert sensor.utilisation == 1.0
    sensor.set_utilisation(-0.2)
    assert sensor.utilisation == 0.0
    with pytest.raises(ValueError, match="NaN"):
        sensor.set_utilisation(float("nan"))
    with pytest.raises(ConfigError, match="time_constant_s"):
        SimulatedThermal(time_constant_s=0.0)


# ---------------------------------------------------------------- pressure


def test_cool_and_idle_is_no_pressure() -> None:
    pressure = OffloadPressure(70.0, 85.0)
    assert pressure.update(50.0, 0, 100) == 0.0
    assert not pressure.hot


def test_thermal_pressure_with_hysteresis() -> None:
    pressure = OffloadPressure(70.0, 85.0, hysteresis_c=5.0)
    assert pressure.update(69.9, 0, 100) == 0.0  # warming, not hot yet
    assert pressure.update(70.0, 0, 100) == pytest.approx(0.25)  # enters: (70-65)/(85-65)
    assert pressure.hot
    assert pressure.update(68.0, 0, 100) == pytest.approx(0.15)  # still hot until < 65
    assert pressure.update(65.0, 0, 100) == 0.0
    assert pressure.hot  # at the leave point, not below it
    assert pressure.update(64.9, 0, 100) == 0.0
    assert not pressure.hot
    assert pressure.update(68.0, 0, 100) == 0.0  # warming again: not hot below 70
    assert not pressure.hot
    assert pressure.update(85.0, 0, 100) == 1.0
    assert pressure.update(120.0, 0, 100) == 1.0


def test_load_pressure_from_queue_fill() -> None:
    pressure = OffloadPressure(queue_start=0.5)
    assert pressure.update(None, 50, 100) == 0.0
    assert pressure.update(None, 75, 100) == pytest.approx(0.5)
    assert pressure.update(None, 100, 100) == 1.0
    assert pressure.update(None, 150, 100) == 1.0


def test_pressure_is_the_larger_of_heat_and_load() -> None:
    pressure = OffloadPressure(70.0, 85.0, queue_start=0.5)
    assert pressure.update(70.0, 90, 100) == pytest.approx(0.8)  # load 0.8 > heat 0.25
    assert pressure.update(80.0, 60, 100) == pytest.approx(0.75)  # heat 0.75 > load 0.2


def test_no_sensor_is_never_hot() -> None:
    pressure = OffloadPressure()
    pressure.update(90.0, 0, 10)
    assert pressure.hot
    assert pressure.update(None, 0, 10) == 0.0
    assert not pressure.hot


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"hot_c": 80.0, "critical_c": 80.0}, "critical_c"),
        ({"hysteresis_c": 0.0}, "hysteresis_c"),
        ({"queue_start": 1.0}, "queue_start"),
    ],
)
def test_pressure_settings_are_checked(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        OffloadPressure(**kwargs)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        OffloadPressure().update(50.0, 0, 0)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.floats(-40, 150)), st.integers(0, 2000), st.integers(1, 1000)
        ),
        max_size=30,
    )
)
def test_pressure_always_in_unit_interval(readings: list[tuple[float | None, int, int]]) -> None:
    pressure = OffloadPressure()
    for temperature, depth, capacity in readings:
        assert 0.0 <= pressure.update(temperature, depth, capacity) <= 1.0
