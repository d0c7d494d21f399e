"""Network streams: RTSP(S) cameras and HTTP(S) streams (MPEG-TS, HLS, MJPEG, ...).

Both are live: a stream that ends or fails is reopened. RTSP is read over TCP by
default (``rtsp_transport = "tcp"``: no lost UDP packets, no firewall holes); a camera's
``options`` override it. With ``rtsp_flags = "listen"`` and ``listen_timeout`` (seconds)
the camera's source is the RTSP server and a publisher pushes to it
(docs/cameras.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pipeline.camera.sources.base import Target, redact
from pipeline.camera.sources.registry import SourceKind, register
from schemas.errors import ConfigError

__all__ = ["HttpKind", "RtspKind"]


def _network_target(url: str, options: Mapping[str, str]) -> Target:
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # .port checks the port
    except ValueError as exc:  # a malformed port or address
        raise ConfigError(f"{redact(url)!r} is not a valid URL: {exc}") from None
    if not host:
        raise ConfigError(f"{redact(url)!r} names no host; write scheme://host[:port]/path")
    return Target(url, live=True, options=dict(options))


@register
class RtspKind(SourceKind):
    """An RTSP or RTSPS stream, such as an IP camera's."""

    schemes = ("rtsp", "rtsps")

    def target(self, url: str, options: Mapping[str, str]) -> Target:
        return _network_target(url, {"rtsp_transport": "tcp", **options})


@register
class HttpKind(SourceKind):
    """A stream served over HTTP or HTTPS."""

    schemes = ("http", "https")

    def target(self, url: str, options: Mapping[str, str]) -> Target:
        return _network_target(url, options)
