"""The fallback backend: OpenCV's ``VideoCapture`` opens what PyAV cannot.

OpenCV takes no per-source FFmpeg options (only a process-wide environment variable),
so a target's options are ignored here, with a warning. It cannot tell the end of a
stream from a failed read: both end ``frames``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import cv2

from pipeline.camera.sources.base import DecodedFrame, SourceError, Target, VideoSource, redact

__all__ = ["OpenCvSource"]

log = logging.getLogger(__name__)

# FFmpeg input formats that OpenCV opens through another of its own backends.
_APIS = {"v4l2": cv2.CAP_V4L2}


class OpenCvSource(VideoSource):
    """``target`` read by ``cv2.VideoCapture``, frames converted from BGR to RGB."""

    backend = "opencv"

    def __init__(self, target: Target, timeout_s: float) -> None:
        self._target = target
        where = redact(target.location)
        if target.options:
            log.warning("%s: OpenCV ignores the options %s", where, sorted(target.options))
        ms = max(1, round(timeout_s * 1000))
        api = _APIS.get(target.format or "", cv2.CAP_FFMPEG)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        self._capture = cv2.VideoCapture(target.location, api, params)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"OpenCV cannot open {where}", retriable=target.live)

    def frames(self) -> Iterator[DecodedFrame]:
        while True:
            ok, bgr = self._capture.read()
            if not ok:
                return
            position_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)
            yield DecodedFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), position_ms / 1000.0)

    def close(self) -> None:
        self._capture.release()
