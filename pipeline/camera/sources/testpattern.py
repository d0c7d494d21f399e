"""A numbered test pattern: video whose every frame shows its own number.

For tests, demos and checking a deployment without a camera: ``write_video`` writes
one to a file (H.264, yuv420p), ``push_rtsp`` pushes one to an RTSP server or to a
camera whose source listens (``rtsp_flags = "listen"``), and ``number_of`` reads the
number back from a decoded (and JPEG-compressed, resized) frame. The number is drawn
as 12 bits in vertical stripes between a white and a black guard stripe, bold enough
to survive compression.

``python -m pipeline.camera.sources.testpattern URL`` pushes a pattern from its own
process, as a camera would: PyAV cannot push and listen in one process (it holds the
GIL while it connects; see pipeline/camera/sources/pyav.py).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import av
import av.error
import numpy as np

__all__ = ["BITS", "number_of", "pattern", "push_rtsp", "write_video"]

BITS = 12  # numbers 0..4095
_STRIPES = BITS + 2  # a white guard, the bits (most significant first), a black guard


def pattern(number: int, width: int = 320, height: int = 240) -> np.ndarray:
    """The RGB picture of ``number`` (taken modulo 2**BITS)."""
    bits = [1, *((number >> (BITS - 1 - i)) & 1 for i in range(BITS)), 0]
    columns = np.arange(width) * _STRIPES // width
    row = np.array(bits, dtype=np.uint8)[columns] * 255
    return np.ascontiguousarray(np.broadcast_to(row[None, :, None], (height, width, 3)))


def number_of(image: np.ndarray) -> int | None:
    """The number drawn in ``image`` (H x W x 3 or H x W), None if it shows no pattern."""
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    width = grey.shape[1]
    levels = []
    for stripe in range(_STRIPES):
        left, right = stripe * width // _STRIPES, (stripe + 1) * width // _STRIPES
        quarter = max(0, (right - left) // 4)
        levels.append(float(grey[:, left + quarter : right - quarter].mean()))
    bits = [level > 127.5 for level in levels]
    if not bits[0] or bits[-1]:
        return None
    return sum(bit << (BITS - 1 - i) for i, bit in enumerate(bits[1:-1]))


def _stream(
    container: av.container.OutputContainer, width: int, height: int, fps: int
) -> av.VideoStream:
    stream = container.add_stream(
        "libx264", rate=fps, options={"preset": "ultrafast", "tune": "zerolatency"}
    )
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    return stream


def write_video(
    path: Path | str,
    frames: int,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    start: int = 0,
) -> None:
    """Write frames ``start`` .. ``start + frames - 1`` of the pattern to ``path``
    (the container from its extension: .mp4, .ts, .mkv), ``fps`` frames a second."""
    with av.open(str(path), "w") as container:
        stream = _stream(container, width, height, fps)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(start + index, width, height), "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def push_rtsp(
    url: str,
    frames: int,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    start: int = 0,
    connect_timeout_s: float = 10.0,
) -> None:
    """Push the pattern to ``url`` in real time, frames ``start`` on, over RTSP/TCP.

    Connecting is retried until ``connect_timeout_s`` has passed (the listener may
    not be up yet); then raises what refused it.
    """
    give_up = time.monotonic() + connect_timeout_s
    while True:
        container = av.open(url, "w", format="rtsp", options={"rtsp_transport": "tcp"})
        stream = _stream(container, width, height, fps)
        try:
            container.start_encoding()  # connects and announces the stream
            break
        except (av.error.FFmpegError, OSError):
            container.close()
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)
    with container:
        began = time.monotonic()
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(start + index, width, height), "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
            time.sleep(max(0.0, began + (index + 1) / fps - time.monotonic()))
        container.mux(stream.encode(None))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m pipeline.camera.sources.testpattern URL [--frames N] [--start N] [--fps N]``."""
    parser = argparse.ArgumentParser(description="Push a numbered test pattern over RTSP.")
    parser.add_argument("url")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)
    push_rtsp(
        args.url, args.frames, width=args.width, height=args.height, fps=args.fps, start=args.start
    )


if __name__ == "__main__":
    main()
