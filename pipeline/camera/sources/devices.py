"""Local capture devices (webcams, capture cards) through FFmpeg's ``v4l2`` input.

``/dev/video2`` or ``device:2``. Live: an unplugged device is reopened. The device's
mode is chosen with FFmpeg's v4l2 options, e.g. ``video_size = "1280x720"``,
``framerate = "30"``, ``input_format = "mjpeg"``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.camera.sources.base import Target
from pipeline.camera.sources.registry import SourceKind, register
from schemas.errors import ConfigError

__all__ = ["DeviceKind"]


@register
class DeviceKind(SourceKind):
    """A Video4Linux2 device, by path or by number."""

    schemes = ("device",)

    def target(self, url: str, options: Mapping[str, str]) -> Target:
        path = url
        if url.lower().startswith("device:"):
            number = url.partition(":")[2]
            if not number.isdecimal():
                raise ConfigError(f"{url!r}: write device:<number>, e.g. device:0")
            path = f"/dev/video{int(number)}"
        return Target(path, live=True, format="v4l2", options=dict(options))
