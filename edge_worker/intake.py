"""Whether a decoded frame may enter this edge worker: pure rules, no I/O.

The codec already refused what no receiver could accept (schemas/codec.py). What is
left depends on the receiver: the site and camera it serves, and its clock. A frame
refused here is dead-lettered with the message of the ``SchemaError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.errors import SchemaError
from schemas.messages import Frame, Source

__all__ = ["Request", "check_frame"]


@dataclass(frozen=True, slots=True)
class Request:
    """A frame accepted by the worker, with who asked for its result."""

    frame: Frame
    reply_to: str | None  # the caller's inbox for request/reply on infer.<site>
    accept: str | None = None  # the caller's Accept header (JSON or msgpack reply)


def check_frame(frame: Frame, subject: str, site: str, now: float, max_skew_s: float) -> None:
    """Raise ``SchemaError`` unless ``frame``, received on ``subject``, may enter.

    * it speaks only for this ``site`` and, on ``frames.<site>.<camera>``, that camera;
    * only a device tier comes before the edge (``path``);
    * it was captured within ``max_skew_s`` of this worker's clock ``now``, either way:
      a capture time far off would give it a deadline in the far future or past, and a
      latency no reader accepts.
    """
    if frame.site != site:
        raise SchemaError(f"frame.site: {frame.site!r} but this is site {site!r}")
    if frame.path not in ((), (Source.DEVICE.value,)):
        raise SchemaError(
            f"frame.path: {[str(t) for t in frame.path]} but only a device comes before the edge"
        )
    tokens = subject.split(".")
    if tokens[0] == "frames" and tokens[-1] != frame.camera:
        raise SchemaError(f"frame.camera: {frame.camera!r} but it came on {subject!r}")
    skew = frame.captured_at - now
    if not math.isfinite(skew) or abs(skew) > max_skew_s:
        raise SchemaError(
            f"frame.captured_at: {frame.captured_at!r} is {skew:+.3g} s from this worker's "
            f"clock; at most {max_skew_s:g} s either way is accepted (edge.max_clock_skew_s): "
            "set the camera's clock (NTP)"
        )
