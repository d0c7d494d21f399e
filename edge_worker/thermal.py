"""Device temperature, and how much an edge worker should offload because of it.

* ``SysfsThermal`` reads the Linux thermal zones; ``SimulatedThermal`` models a device
  that heats with load, for machines without sensors (containers, CI) and for tests.
  ``thermal_sensor()`` picks one. Both have ``source`` and ``read_c()``.
* ``OffloadPressure`` turns temperature and queue fill into one number in 0..1 that
  the escalation policy can act on; ``raised_threshold`` and ``sheds`` are the two
  actions it is meant for.

Everything here is pure or reads a clock it is given, so it is tested without time
passing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from schemas.errors import ConfigError
from schemas.heartbeat import TemperatureSource

__all__ = [
    "SYSFS_ROOT",
    "OffloadPressure",
    "SimulatedThermal",
    "SysfsThermal",
    "ThermalSensor",
    "thermal_sensor",
]

SYSFS_ROOT = Path("/sys/class/thermal")
# Zones report nonsense when a sensor is absent or off (-273 °C, 0, 255 °C...).
_PLAUSIBLE_C = (-50.0, 200.0)


class ThermalSensor(Protocol):
    """A temperature source: ``read_c()`` in °C, None when there is no reading."""

    @property
    def source(self) -> TemperatureSource: ...

    def read_c(self) -> float | None: ...


class SysfsThermal:
    """The hottest Linux thermal zone: ``<root>/thermal_zone*/temp`` in millidegrees.

    Reading is a few small pseudo-file reads; a zone that cannot be read or reports
    an implausible value is left out. Call it once per heartbeat, not per frame: some
    drivers ask the sensor over a slow bus.
    """

    def __init__(self, root: Path = SYSFS_ROOT) -> None:
        self.root = Path(root)

    @property
    def source(self) -> TemperatureSource:
        return TemperatureSource.SYSFS

    def read_c(self) -> float | None:
        """Max over the zones in °C, or None when no zone gives a plausible reading."""
        readings = []
        for path in sorted(self.root.glob("thermal_zone*/temp")):
            try:
                celsius = int(path.read_text().strip()) / 1000
            except (OSError, ValueError):
                continue
            if _PLAUSIBLE_C[0] <= celsius <= _PLAUSIBLE_C[1]:
                readings.append(celsius)
        return max(readings, default=None)


class SimulatedThermal:
    """A device that heats with load: first-order lag towards ``ambient + gain * u``.

    ``u`` is the utilisation (0..1) set by ``set_utilisation``; the temperature moves
    towards its target with time constant ``time_constant_s`` (63% of the way in one
    time constant), integrated exactly between calls, so how often it is read does not
    change the curve. ``override_c``, when set, is what ``read_c`` returns: tests and
    demos use it to drive the device hot without waiting; the model keeps running
    underneath and takes over again when it is cleared.
    """

    def __init__(
        self,
        *,
        ambient_c: float = 35.0,
        gain_c: float = 45.0,
        time_constant_s: float = 60.0,
        initial_c: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not time_constant_s > 0:
            raise ConfigError(f"time_constant_s must be > 0, got {time_constant_s}")
        self.ambient_c = ambient_c
        self.gain_c = gain_c
        self.time_constant_s = time_constant_s
        self.override_c: float | None = None
        self._clock = clock
        self._temperature_c = ambient_c if initial_c is None else initial_c
        self._utilisation = 0.0
        self._last = clock()

    @property
    def source(self) -> TemperatureSource:
        return TemperatureSource.SIMULATED

    @property
    def utilisation(self) -> float:
        return self._utilisation

    @property
    def target_c(self) -> float:
        """Where the temperature settles if the utilisation stays as it is."""
        return self.ambient_c + self.gain_c * self._utilisation

    def set_utilisation(self, utilisation: float) -> None:
        """From now on the device works at ``utilisation`` (clamped to 0..1)."""
        if math.isnan(utilisation):
            raise ValueError("utilisation is NaN")
        self._advance()  # the time so far was spent at the old utilisation
        self._utilisation = min(1.0, max(0.0, utilisation))

    def read_c(self) -> float:
        """The temperature now (``override_c`` if set)."""
        self._advance()
        return self._temperature_c if self.override_c is None else self.override_c

    def _advance(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        target = self.target_c
        decay = math.exp(-elapsed / self.time_constant_s)
        self._temperature_c = target + (self._temperature_c - target) * decay


def thermal_sensor(
    prefer_sysfs: bool = True,
    *,
    root: Path = SYSFS_ROOT,
    clock: Callable[[], float] = time.monotonic,
) -> SysfsThermal | SimulatedThermal:
    """The real sensor if asked for and it gives a reading now, else a simulated one.

    The chosen sensor's ``source`` says which it is (``sysfs`` or ``simulated``).
    """
    if prefer_sysfs:
        real = SysfsThermal(root)
        if real.read_c() is not None:
            return real
    return SimulatedThermal(clock=clock)


class OffloadPressure:
    """How hard the edge should lean on the cloud: 0 (not at all) .. 1 (as much as it can).

    Two inputs; the pressure is the larger of the two:

    * **Heat**, with hysteresis. The device becomes *hot* when the temperature reaches
      ``hot_c`` and stops being hot only below ``hot_c - hysteresis_c`` (the *leave*
      point), so a temperature hovering at ``hot_c`` does not flap. While hot, thermal
      pressure rises linearly from 0 at the leave point to 1 at ``critical_c``: with
      the defaults (70, 85, 5) it is 0.25 on entering at 70 °C, 1.0 at 85 °C, and
      falls continuously to 0 as the device cools to 65 °C. While not hot it is 0.
    * **Load**: 0 until the queue is ``queue_start`` full, then linear to 1 at full.
      No hysteresis: the queue is measured, not estimated, and drains on its own.

    No temperature (``None``: no sensor) means no thermal pressure and not hot.
    """

    def __init__(
        self,
        hot_c: float = 70.0,
        critical_c: float = 85.0,
        *,
        hysteresis_c: float = 5.0,
        queue_start: float = 0.5,
    ) -> None:
        if not hysteresis_c > 0:
            raise ConfigError(f"hysteresis_c must be > 0, got {hysteresis_c}")
        if not critical_c > hot_c:
            raise ConfigError(f"critical_c ({critical_c}) must be above hot_c ({hot_c})")
        if not 0.0 <= queue_start < 1.0:
            raise ConfigError(f"queue_start must be in [0, 1), got {queue_start}")
        self.hot_c = hot_c
        self.critical_c = critical_c
        self.leave_c = hot_c - hysteresis_c
        self.queue_start = queue_start
        self._hot = False

    @property
    def hot(self) -> bool:
        """Whether the last update left the device in the hot state."""
        return self._hot

    def update(self, temperature_c: float | None, queue_depth: int, capacity: int) -> float:
        """Feed the latest readings; return the pressure in 0..1."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        return max(self._thermal(temperature_c), self._load(queue_depth / capacity))

    def _thermal(self, temperature_c: float | None) -> float:
        if temperature_c is None or math.isnan(temperature_c):
            self._hot = False
            return 0.0
        if temperature_c >= self.hot_c:
            self._hot = True
        elif temperature_c < self.leave_c:
            self._hot = False
        if not self._hot:
            return 0.0
        return _clamp((temperature_c - self.leave_c) / (self.critical_c - self.leave_c))

    def _load(self, fill: float) -> float:
        return _clamp((fill - self.queue_start) / (1.0 - self.queue_start))


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))
