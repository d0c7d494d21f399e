"""What every video source is: an opened stream of decoded RGB frames, and its errors.

A source is opened by a backend (PyAV, OpenCV, the simulator) for a ``Target`` that a
source kind (pipeline/camera/sources/registry.py) made from a camera's URL. Opening and
reading block: a source is used from one reader thread (pipeline/camera/feed.py),
never from the event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from schemas.errors import HybridfleetError

__all__ = [
    "DecodedFrame",
    "SourceError",
    "SourceUnavailable",
    "Target",
    "VideoSource",
    "redact",
]


class SourceError(HybridfleetError):
    """A video source could not be opened or read.

    ``retriable`` is True for a live source, which may come back (a camera or stream
    that is down, a read that timed out), False for a recorded one, whose bytes fail
    the same way again. The message names the source (password hidden) and what went
    wrong.
    """

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class SourceUnavailable(SourceError):
    """The source is not there: not found, refused, timed out. Another backend would
    not find it either, so none is tried."""


def redact(url: str) -> str:
    """``url`` without its password, for logs and messages (``rtsp://user:***@host/``)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


@dataclass(frozen=True)
class Target:
    """What a backend opens: a URL or file name, an FFmpeg input format (None: guess),
    the backend's options (FFmpeg's, for PyAV), and whether the source is live.

    A live source (a camera, a stream) has no end: when it ends or fails it is reopened.
    A recorded one (a file) ends at its end.
    """

    location: str
    live: bool
    format: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """One decoded picture: RGB uint8, H x W x 3, and its presentation time in seconds
    from the start of the stream (None when the stream does not say)."""

    image: np.ndarray
    time_s: float | None


class VideoSource(abc.ABC):
    """An opened source; ``frames`` decodes it in order, ``close`` releases it.

    ``frames`` ends when a recorded source ends and raises ``SourceError`` when reading
    fails. Usable as a context manager (closes on exit).
    """

    backend: str  # names what decodes it, for the logs: "pyav", "opencv", "sim"

    @abc.abstractmethod
    def frames(self) -> Iterator[DecodedFrame]:
        """The decoded frames, in presentation order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the stream; harmless twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
