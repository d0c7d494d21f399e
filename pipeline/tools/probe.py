"""An operator's tools without the ``nats`` CLI: one frame in (``infer``), and what a
site says (``tail``). ``pipeline.cli.ops`` puts them on the command line.

* ``load_image`` reads a grayscale image: PNG or JPEG through OpenCV, or a 2-D
  ``.npy`` array of uint8.
* ``image_frame`` and ``simulated_frame`` make the ``Frame`` that ``infer`` sends to
  ``infer.<site>``; ``infer`` sends it and returns the final result.
* ``follow`` subscribes to a site's results, dead letters and health events and hands
  each, decoded, to a callback; ``describe`` turns one into a line or a JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from schemas import subjects
from schemas.codec import decode_dead_letter, decode_result, encode
from schemas.errors import ConfigError, HybridfleetError, SchemaError
from schemas.jsonform import to_json
from schemas.messages import DeadLetter, Frame, InferenceResult, PrivacyClass, Region
from schemas.subjects import check_token

__all__ = [
    "Event",
    "NoAnswerError",
    "describe",
    "follow",
    "image_frame",
    "infer",
    "load_image",
    "parse_region",
    "result_line",
    "simulated_frame",
    "tail_subjects",
]


class NoAnswerError(HybridfleetError):
    """An ``infer.<site>`` request got no answer; the message says where to look."""


def load_image(path: Path) -> np.ndarray:
    """A 2-D uint8 grayscale image from a PNG or JPEG file, or from a ``.npy`` array."""
    if not path.is_file():
        raise ConfigError(f"image {path} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ConfigError(f"{path} is not a NumPy array file ({exc})") from exc
        if array.ndim != 2 or array.dtype != np.uint8:
            raise ConfigError(
                f"{path} holds a {array.dtype} array of shape {list(array.shape)}; a frame is "
                "a 2-D uint8 grayscale image (rows, columns): convert it first"
            )
        return np.ascontiguousarray(array)
    import cv2  # opencv-python-headless; imported here, it is slow to load

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ConfigError(f"OpenCV cannot read {path} as an image; use a PNG, a JPEG or a .npy")
    return np.ascontiguousarray(image, dtype=np.uint8)


def parse_region(text: str) -> Region:
    """``x,y,w,h`` in pixels -> ``Region``."""
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"a region is x,y,w,h in whole pixels, got {text!r}") from None
    return Region(x, y, w, h)


@dataclass(frozen=True)
class FrameRequest:
    """What the caller asks of a frame it sends with ``infer``."""

    site: str = "site1"
    camera: str = "cli"
    priority: int = 2
    deadline_ms: int = 1000
    privacy: PrivacyClass = PrivacyClass.CROP
    threshold: float | None = None


def image_frame(
    image: np.ndarray, request: FrameRequest, regions: tuple[Region, ...] = ()
) -> Frame:
    """A frame of ``image``; with no ``regions``, the whole image is the one region."""
    height, width = image.shape
    return Frame(
        frame_id=f"{request.camera}-{secrets.token_hex(6)}",
        site=check_token(request.site, "site"),
        camera=check_token(request.camera, "camera"),
        seq=0,
        captured_at=time.time(),
        image=image,
        regions=regions or (Region(0, 0, width, height),),
        priority=request.priority,
        deadline_ms=request.deadline_ms,
        threshold=request.threshold,
        privacy=request.privacy,
    )


def simulated_frame(request: FrameRequest, seed: int) -> tuple[Frame, tuple[int, ...]]:
    """A camera simulator's frame (640x480, one held-out digit) and its true label."""
    from pipeline.camera.simulator import CameraOptions, CameraSimulator

    simulator = CameraSimulator(CameraOptions(site=request.site, cameras=1, seed=seed))
    frame, truth = simulator.make_frame(simulator.camera_names[0], 0, time.time())
    frame = replace(
        frame,
        frame_id=f"{request.camera}-{secrets.token_hex(6)}",
        camera=check_token(request.camera, "camera"),
        priority=request.priority,
        deadline_ms=request.deadline_ms,
        privacy=request.privacy,
        threshold=request.threshold,
    )
    return frame, truth


async def infer(nc: Client, frame: Frame, timeout_s: float) -> InferenceResult:
    """Send ``frame`` to ``infer.<site>`` and return its final result."""
    subject = subjects.infer(frame.site)
    try:
        reply = await nc.request(subject, encode(frame), timeout=timeout_s)
    except NoRespondersError:
        raise NoAnswerError(
            f"no edge worker subscribes to {subject}: is the site running, and is this "
            "the site's server?"
        ) from None
    except (TimeoutError, NatsTimeoutError):
        raise NoAnswerError(
            f"no answer on {subject} within {timeout_s:g} s: the edge worker may have refused "
            f"the frame; `hybridfleet dead-letters list --site {frame.site}` shows why"
        ) from None
    return decode_result(reply.data)


def result_line(result: InferenceResult) -> str:
    """One line for a final result."""
    degraded = " degraded" if result.degraded else ""
    return (
        f"{result.site}/{result.camera} frame {result.frame_id} labels {list(result.labels)} "
        f"confidence {result.confidence:.3f} from {result.source.value} "
        f"({result.model}@{result.model_version}) reason {result.reason.value}{degraded} "
        f"latency {result.latency_ms:.1f} ms"
    )


# ---------------------------------------------------------------- tail


@dataclass(frozen=True)
class Event:
    """One message ``follow`` saw: its kind (``result``, ``dead_letter``, ``health`` or
    ``unreadable``), subject, when it arrived (Unix s) and what it says."""

    kind: str
    subject: str
    at: float
    message: InferenceResult | DeadLetter | dict[str, Any] | str


def tail_subjects(site: str) -> dict[str, str]:
    """What ``tail`` follows for ``site`` (``*``: every site), by kind."""
    token = "*" if site == "*" else check_token(site, "site")
    return {
        "result": f"results.{token}.>",
        "dead_letter": f"dlq.*.{token}",
        "health": f"health.{token}",
    }


def _decode(kind: str, msg: Msg) -> Event:
    at = time.time()
    try:
        message: InferenceResult | DeadLetter | dict[str, Any]
        if kind == "result":
            message = decode_result(msg.data)
        elif kind == "dead_letter":
            message = decode_dead_letter(msg.data)
        else:
            message = orjson.loads(msg.data)
            if not isinstance(message, dict):
                raise SchemaError(f"a health event is a JSON object, got {type(message).__name__}")
    except (SchemaError, orjson.JSONDecodeError) as exc:
        return Event("unreadable", msg.subject, at, f"{kind}: {exc}")
    return Event(kind, msg.subject, at, message)


async def follow(
    nc: Client,
    site: str,
    on_event: Callable[[Event], None],
    *,
    count: int | None = None,
    seconds: float | None = None,
    ready: Callable[[], None] | None = None,
) -> int:
    """Pass each result, dead letter and health event of ``site`` to ``on_event``, until
    ``count`` events or ``seconds`` (both None: until cancelled). Returns the count.

    ``ready`` is called once the subscriptions are in place at the server.
    """
    seen = 0
    done = asyncio.Event()

    def handler(kind: str) -> Callable[[Msg], Any]:
        async def on_msg(msg: Msg) -> None:
            nonlocal seen
            if done.is_set():
                return
            on_event(_decode(kind, msg))
            seen += 1
            if count is not None and seen >= count:
                done.set()

        return on_msg

    subs = [
        await nc.subscribe(subject, cb=handler(kind))
        for kind, subject in tail_subjects(site).items()
    ]
    try:
        await nc.flush()
        if ready is not None:
            ready()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), seconds)
    finally:
        for sub in subs:
            await sub.unsubscribe()
    return seen


def describe(event: Event) -> tuple[str, dict[str, Any]]:
    """The event as one line of text, and as one JSON-ready object."""
    clock = (
        time.strftime("%H:%M:%S", time.localtime(event.at)) + f".{int(event.at * 1000) % 1000:03d}"
    )
    head = {"kind": event.kind, "subject": event.subject, "at": event.at}
    message = event.message
    if isinstance(message, InferenceResult):
        return f"{clock} result      {result_line(message)}", {
            **head,
            "message": orjson.loads(to_json(message)),
        }
    if isinstance(message, DeadLetter):
        line = (
            f"{clock} dead letter {message.stage} {message.site} from {message.subject}: "
            f"{message.reason} ({len(message.data)} bytes)"
        )
        data = {
            "stage": message.stage,
            "site": message.site,
            "subject": message.subject,
            "reason": message.reason,
            "at": message.at,
            "bytes": len(message.data),
        }
        return line, {**head, "message": data}
    if isinstance(message, dict):
        return f"{clock} health      {event.subject} {orjson.dumps(message).decode()}", {
            **head,
            "message": message,
        }
    return f"{clock} unreadable  {event.subject}: {message}", {**head, "error": message}
