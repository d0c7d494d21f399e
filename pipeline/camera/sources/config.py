"""Per-camera settings: ``VideoCamera``, and ``load_cameras`` for a ``[[cameras]]`` file.

``VideoCamera`` is declared (:mod:`pipeline.declared`): its fields' metadata state the
ranges, ``load_cameras`` builds each table with them, so a wrong value, a wrong type
or an unknown key is a ``ConfigError`` naming the file, the table (``cameras[2]``)
and the key (docs/cameras.md); a camera made in code is held to the same ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.camera.sources.registry import kind_for
from pipeline.config import read_toml
from pipeline.declared import build, checked, ranged, validate
from schemas.errors import ConfigError, SchemaError
from schemas.limits import MAX_DEADLINE_MS
from schemas.messages import PrivacyClass
from schemas.subjects import check_token

__all__ = ["VideoCamera", "load_cameras"]

MAX_RATE_HZ = 1000.0
MAX_SIDE = 16384
MAX_TIMEOUT_S = 3600.0


def _source(value: str) -> str | None:
    return None if value else "must be a URL or a path, got ''"


@dataclass(frozen=True)
class VideoCamera:
    """One camera: where its video comes from, how it is sent, what it asks of a frame.

    ``source`` is a URL (docs/cameras.md). ``rate_hz`` is the most frames a second it
    sends. ``width`` / ``height`` resize before encoding (one alone keeps the aspect
    ratio; neither: the source's size). ``loop`` plays a file again at its end;
    ``realtime`` plays a file at its own pace, else as fast as it decodes.
    ``timeout_s`` bounds opening and each read. ``options`` go to the backend (FFmpeg
    options for PyAV), over the source kind's defaults; a file writes them as a table.
    ``privacy``, ``priority`` and ``deadline_ms`` are copied into every frame.
    """

    name: str
    source: str = checked(_source)
    rate_hz: float = ranged(5.0, lo=0.0, hi=MAX_RATE_HZ, lo_open=True)
    width: int | None = ranged(None, lo=1, hi=MAX_SIDE)
    height: int | None = ranged(None, lo=1, hi=MAX_SIDE)
    jpeg_quality: int = ranged(80, lo=1, hi=100)
    privacy: PrivacyClass = PrivacyClass.CROP
    priority: int = ranged(2, lo=1, hi=3)
    deadline_ms: int = ranged(250, lo=1, hi=MAX_DEADLINE_MS)
    loop: bool = False
    realtime: bool = True
    timeout_s: float = ranged(10.0, lo=0.0, hi=MAX_TIMEOUT_S, lo_open=True)
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        try:
            check_token(self.name, "camera name")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None
        where = f"camera {self.name}"
        validate(self, where, error=ConfigError)
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
    cameras = tuple(_camera(str(path), f"cameras[{i}]", table) for i, table in enumerate(tables))
    names = [c.name for c in cameras]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: two cameras are named {twice[0]!r}; names must differ")
    return cameras


def _camera(where: str, at: str, table: Any) -> VideoCamera:
    """One ``[[cameras]]`` table, its ``options`` table read as pairs first."""
    if isinstance(table, Mapping) and "options" in table:
        table = {**table, "options": _options(where, f"{at}.options", table["options"])}
    return build(VideoCamera, table, where, path=at, error=ConfigError)


def _options(where: str, at: str, table: object) -> tuple[tuple[str, str], ...]:
    """An ``options`` table as sorted pairs, numbers written as FFmpeg reads them."""
    if not isinstance(table, Mapping):
        raise ConfigError(
            f'{where}: {at} must be a table, e.g. options = {{ rtsp_transport = "tcp" }}, '
            f"got {table!r}"
        )
    pairs = []
    for key, value in sorted(table.items()):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: {at}.{key} must be a string or a number, got {value!r}")
        pairs.append((key, str(value)))
    return tuple(pairs)
