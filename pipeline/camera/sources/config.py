"""Per-camera settings: ``VideoCamera``, and ``load_cameras`` for a ``[[cameras]]`` file.

Validated when made: a wrong value is a ``ConfigError`` that names the camera, the key
and what is allowed; an unknown key in the file is one too (docs/cameras.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.camera.sources.registry import kind_for
from pipeline.config import read_toml
from schemas.errors import ConfigError, SchemaError
from schemas.limits import MAX_DEADLINE_MS
from schemas.messages import PrivacyClass
from schemas.subjects import check_token

__all__ = ["VideoCamera", "load_cameras"]

MAX_RATE_HZ = 1000.0
MAX_SIDE = 16384


@dataclass(frozen=True)
class VideoCamera:
    """One camera: where its video comes from, how it is sent, what it asks of a frame.

    ``source`` is a URL (docs/cameras.md). ``rate_hz`` is the most frames a second it
    sends. ``width`` / ``height`` resize before encoding (one alone keeps the aspect
    ratio; neither: the source's size). ``loop`` plays a file again at its end;
    ``realtime`` plays a file at its own pace, else as fast as it decodes.
    ``timeout_s`` bounds opening and each read. ``options`` go to the backend (FFmpeg
    options for PyAV), over the source kind's defaults. ``privacy``, ``priority`` and
    ``deadline_ms`` are copied into every frame.
    """

    name: str
    source: str
    rate_hz: float = 5.0
    width: int | None = None
    height: int | None = None
    jpeg_quality: int = 80
    privacy: PrivacyClass = PrivacyClass.CROP
    priority: int = 2
    deadline_ms: int = 250
    loop: bool = False
    realtime: bool = True
    timeout_s: float = 10.0
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        try:
            check_token(self.name, "camera name")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None
        where = f"camera {self.name}"
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"{where}: source must be a URL or a path, got {self.source!r}")
        _number(where, "rate_hz", self.rate_hz, MAX_RATE_HZ)
        _number(where, "timeout_s", self.timeout_s, 3600.0)
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None:
                _integer(where, key, value, 1, MAX_SIDE)
        _integer(where, "jpeg_quality", self.jpeg_quality, 1, 100)
        _integer(where, "priority", self.priority, 1, 3)
        _integer(where, "deadline_ms", self.deadline_ms, 1, MAX_DEADLINE_MS)
        if not isinstance(self.privacy, PrivacyClass):
            raise ConfigError(f"{where}: privacy must be a PrivacyClass, got {self.privacy!r}")
        for key in ("loop", "realtime"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{where}: {key} must be true or false")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.options):
            raise ConfigError(f"{where}: options must map names to strings")
        try:
            live = self.live
        except ConfigError as exc:
            raise ConfigError(f"{where}: source: {exc}") from None
        if self.loop and live:
            raise ConfigError(f"{where}: loop applies to files; a live source reconnects")

    @property
    def backend_options(self) -> dict[str, str]:
        """``options`` as a mapping."""
        return dict(self.options)

    @property
    def live(self) -> bool:
        """True for a camera or stream (reconnected), False for a file (it ends)."""
        return kind_for(self.source).target(self.source, self.backend_options).live


def _number(where: str, key: str, value: object, high: float) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0 < value <= high):  # type: ignore[arg-type,operator]
        raise ConfigError(f"{where}: {key} must be a number in (0, {high:g}], got {value!r}")


def _integer(where: str, key: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} must be an integer in [{low}, {high}], got {value!r}")


_KEYS = {f.name for f in dataclasses.fields(VideoCamera)}


def load_cameras(path: Path | str) -> tuple[VideoCamera, ...]:
    """The cameras of a TOML file's ``[[cameras]]`` tables, in order.

    Raises ``ConfigError`` naming the file, the table (``cameras[2]``) and the key for
    an unknown key, a wrong value, or two cameras with one name.
    """
    document = read_toml(path, "camera file")
    unknown = sorted(set(document) - {"cameras"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; list cameras as [[cameras]]")
    tables = document.get("cameras")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no cameras; add at least one [[cameras]] table")
    cameras: list[VideoCamera] = []
    for index, table in enumerate(tables):
        try:
            cameras.append(_camera(table))
        except ConfigError as exc:
            raise ConfigError(f"{path}: cameras[{index}]: {exc}") from None
    names = [c.name for c in cameras]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: two cameras are named {twice[0]!r}; names must differ")
    return tuple(cameras)


def _camera(table: Mapping[str, Any]) -> VideoCamera:
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_KEYS))}")
    for key in ("name", "source"):
        if key not in table:
            raise ConfigError(f"{key} is missing")
    values = dict(table)
    for key in ("rate_hz", "timeout_s"):  # TOML writes 5 for 5.0
        if isinstance(values.get(key), int) and not isinstance(values[key], bool):
            values[key] = float(values[key])
    if "privacy" in values:
        classes = [c.value for c in PrivacyClass]
        if values["privacy"] not in classes:
            raise ConfigError(f"privacy must be one of {', '.join(classes)}")
        values["privacy"] = PrivacyClass(values["privacy"])
    if "options" in values:
        values["options"] = _options(values["options"])
    return VideoCamera(**values)


def _options(table: object) -> tuple[tuple[str, str], ...]:
    """An ``options`` table as pairs, numbers written as FFmpeg reads them."""
    if not isinstance(table, dict):
        raise ConfigError('options must be a table, e.g. options = { rtsp_transport = "tcp" }')
    pairs = []
    for key, value in sorted(table.items()):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"options.{key} must be a string or a number, got {value!r}")
        pairs.append((key, str(value)))
    return tuple(pairs)
