"""Video files: ``file:`` URLs and plain paths. A file is recorded, not live: it ends
(or, with the camera's ``loop``, plays again)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.camera.sources.base import Target
from pipeline.camera.sources.registry import SourceKind, register
from schemas.errors import ConfigError

__all__ = ["FileKind"]


@register
class FileKind(SourceKind):
    """``file:///abs/path.mp4``, ``file:relative.mp4`` or a path."""

    schemes = ("file",)

    def target(self, url: str, options: Mapping[str, str]) -> Target:
        path = url
        if url.lower().startswith("file:"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise ConfigError(f"{url!r}: a file URL names no host; write file:///path")
            path = unquote(parts.path)
        if not path:
            raise ConfigError(f"{url!r} names no file")
        return Target(path, live=False, options=dict(options))

    def check(self, target: Target) -> None:
        if not Path(target.location).is_file():
            raise ConfigError(f"video file {target.location} does not exist")
