"""Real video sources for cameras: RTSP, HTTP, files, local devices and the simulator.

``open_source(url)`` opens any of them (pipeline/camera/sources/registry.py); the
kinds register themselves when their modules are imported, which this package does.
``VideoCamera`` and ``load_cameras`` are a camera's settings; ``VideoCameras`` and
``run_cameras`` (pipeline/camera/sources/cameras.py) publish a site's cameras, each
through a feed (pipeline/camera/feed.py). docs/cameras.md has the whole story.
"""

from pipeline.camera.sources import devices, files, network, sim
from pipeline.camera.sources.base import (
    DecodedFrame,
    SourceError,
    SourceUnavailable,
    Target,
    VideoSource,
)
from pipeline.camera.sources.config import VideoCamera, load_cameras
from pipeline.camera.sources.metrics import CameraMetrics
from pipeline.camera.sources.registry import SourceKind, kind_for, open_source, register

__all__ = [
    "CameraMetrics",
    "DecodedFrame",
    "SourceError",
    "SourceKind",
    "SourceUnavailable",
    "Target",
    "VideoCamera",
    "VideoSource",
    "kind_for",
    "load_cameras",
    "open_source",
    "register",
]

del devices, files, network, sim  # imported to register their kinds
