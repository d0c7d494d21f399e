"""The first backend: PyAV (FFmpeg) opens and decodes a source.

``timeout_s`` bounds the open and every read (PyAV's interrupt callback), so a stalled
stream ends with ``SourceError`` instead of blocking its reader thread for ever.

PyAV holds the GIL while it writes an output header, and its interrupt callback takes
the GIL: a PyAV RTSP publisher in the same process as a listening reader deadlocks.
Publish from another process (pipeline/camera/sources/testvideo.py does).
"""

from __future__ import annotations

from collections.abc import Iterator

import av
import av.error

from pipeline.camera.sources.base import (
    DecodedFrame,
    SourceError,
    SourceUnavailable,
    Target,
    VideoSource,
    redact,
)

__all__ = ["PyAvSource"]

# The source is not there (PyAV's errors subclass the builtin ones): no other backend
# would find it. ExitError is the interrupt callback's timeout.
_ABSENT = (FileNotFoundError, ConnectionError, TimeoutError, av.error.ExitError)


def _why(exc: BaseException) -> str:
    """What went wrong, without the URL (PyAV's message repeats it, password and all)."""
    strerror = getattr(exc, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else type(exc).__name__


class PyAvSource(VideoSource):
    """The first video stream of ``target``, decoded by PyAV to RGB."""

    backend = "pyav"

    def __init__(self, target: Target, timeout_s: float) -> None:
        self._target = target
        where = redact(target.location)
        try:
            self._container = av.open(
                target.location,
                format=target.format,
                options=dict(target.options),
                timeout=(timeout_s, timeout_s),
            )
        except _ABSENT as exc:
            raise SourceUnavailable(f"{where}: {_why(exc)}", retriable=target.live) from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(
                f"PyAV cannot open {where}: {_why(exc)}", retriable=target.live
            ) from exc
        except ValueError as exc:  # e.g. an unknown input format, named in the message
            raise SourceError(f"PyAV cannot open {where}: {exc}", retriable=target.live) from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{where} has no video stream", retriable=target.live)
        self._stream = self._container.streams.video[0]

    def frames(self) -> Iterator[DecodedFrame]:
        try:
            for frame in self._container.decode(self._stream):
                yield DecodedFrame(frame.to_ndarray(format="rgb24"), frame.time)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            what = "timed out" if isinstance(exc, _ABSENT) else f"failed: {_why(exc)}"
            raise SourceError(
                f"reading {redact(self._target.location)} {what}", retriable=self._target.live
            ) from exc

    def close(self) -> None:
        self._container.close()
