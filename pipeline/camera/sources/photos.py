"""A colour test video from real photographs: a slow pan across the photographs
scikit-learn ships (``load_sample_images``: a temple in China, a flower), for demos
and tests that need colour video without a camera.

``write_photo_video`` writes it (H.264, yuv420p; the container from the extension);
``hybridfleet video write OUT`` is the command.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

__all__ = ["photo_frames", "write_photo_video"]


def _photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images  # the dev/models extra

    return [np.ascontiguousarray(p) for p in load_sample_images().images]


def photo_frames(frames: int, width: int, height: int) -> list[np.ndarray]:
    """``frames`` RGB pictures of ``width`` x ``height``: each photograph in turn,
    panned left to right and back in a window of two thirds of its width."""
    photos = _photos()
    per_photo = max(1, frames // len(photos))
    out = []
    for i in range(frames):
        photo = photos[min(i // per_photo, len(photos) - 1)]
        h, w = photo.shape[:2]
        window_w, window_h = (2 * w) // 3, (2 * h) // 3
        phase = (i % per_photo) / per_photo
        x = round((w - window_w) * (1 - abs(2 * phase - 1)))
        y = (h - window_h) // 2
        view = photo[y : y + window_h, x : x + window_w]
        out.append(cv2.resize(view, (width, height), interpolation=cv2.INTER_AREA))
    return out


def write_photo_video(
    path: Path | str, frames: int, *, width: int = 640, height: int = 360, fps: int = 25
) -> None:
    """Write the pan (``photo_frames``) to ``path``, ``fps`` frames a second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, picture in enumerate(photo_frames(frames, width, height)):
            frame = av.VideoFrame.from_ndarray(picture, "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
