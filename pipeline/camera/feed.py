"""One camera's feed: a reader thread decodes its source, the event loop takes the
newest frame.

The reader thread opens the camera's source, decodes it, keeps the frames that hold
the camera's rate (pipeline/camera/sources/pacing.py), resizes and JPEG-encodes them
and puts each in a one-frame slot. A frame the consumer has not taken when the next
one is ready is replaced by it and counted as dropped (``superseded``): the camera
never queues more than the frame being published and the one after it.

A live source that ends, fails or cannot be opened is reopened after a backoff (0.5 s
doubling to 10 s, back to 0.5 s once frames flow); each reopening is counted and
logged at WARNING with the reason. A file ends the feed at its end, or plays again
with ``loop``; an error in a file ends the feed with ``SourceError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace

from prometheus_client import Counter

from pipeline.camera.sources.base import DecodedFrame, SourceError, VideoSource, redact
from pipeline.camera.sources.config import VideoCamera
from pipeline.camera.sources.image import resize
from pipeline.camera.sources.metrics import CameraMetrics
from pipeline.camera.sources.pacing import Pacer
from pipeline.camera.sources.registry import open_source
from pipeline.inference.images import encode_jpeg

__all__ = ["Backoff", "CameraImage", "Feed", "FeedCounts", "Opener"]

log = logging.getLogger(__name__)

# Opens a camera's source (blocking; called in the reader thread).
Opener = Callable[[VideoCamera], VideoSource]

# How long stopping waits for a reader thread; one blocked in a read ends at the
# camera's timeout_s.
_JOIN_S = 2.0


def _open(camera: VideoCamera) -> VideoSource:
    return open_source(camera.source, options=camera.backend_options, timeout_s=camera.timeout_s)


@dataclass(frozen=True)
class Backoff:
    """Waits between reopenings: ``first_s``, doubled each time up to ``max_s``."""

    first_s: float = 0.5
    max_s: float = 10.0

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield delay
            delay = min(self.max_s, delay * 2)


@dataclass(frozen=True, eq=False)
class CameraImage:
    """A frame ready to publish: its JPEG, size, Unix capture time and stream time."""

    jpeg: bytes
    width: int
    height: int
    captured_at: float
    time_s: float | None


@dataclass(frozen=True)
class FeedCounts:
    """What a feed did: frames decoded, skipped for the rate, dropped, published, and
    reopenings of its source."""

    decoded: int = 0
    skipped: int = 0
    dropped: int = 0
    published: int = 0
    reconnects: int = 0


class _Slot:
    """The one-frame hand-off from the reader thread to the loop: newest wins."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._item: CameraImage | None = None
        self._closed = False
        self._ready = asyncio.Event()

    def put(self, item: CameraImage) -> bool:
        """Offer ``item`` (any thread); True when it replaced a frame not yet taken."""
        with self._lock:
            replaced = self._item is not None
            self._item = item
        if not replaced:
            self._wake()
        return replaced

    def close(self) -> None:
        """No more frames: ``get`` returns None once the last one is taken."""
        with self._lock:
            self._closed = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> CameraImage | None:
        while True:
            self._ready.clear()
            with self._lock:
                item, self._item = self._item, None
                closed = self._closed
            if item is not None or closed:
                return item
            await self._ready.wait()


class Feed:
    """Reads one camera's source in a thread and hands its frames to ``run``'s consumer."""

    def __init__(
        self,
        camera: VideoCamera,
        *,
        metrics: CameraMetrics | None = None,
        backoff: Backoff = Backoff(),
        opener: Opener | None = None,
    ) -> None:
        self.camera = camera
        self._metrics = metrics or CameraMetrics()
        self._backoff = backoff
        self._opener = opener or _open
        self._live = camera.live
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._counts = FeedCounts()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def counts(self) -> FeedCounts:
        with self._lock:
            return self._counts

    def stop(self) -> None:
        """Stop reading (any thread); ``run`` returns after the frame in hand."""
        self._halt.set()

    def drop(self, reason: str) -> None:
        """Count a frame dropped at the camera (any thread), and why: ``superseded``
        by a newer one, or ``publish_refused`` by the NATS client."""
        self._add("dropped")
        self._metrics.dropped_frames.labels(camera=self.camera.name, reason=reason).inc()

    def _add(self, field: str, metric: Counter | None = None) -> None:
        """One more in ``field`` of the counts (any thread), and in ``metric``."""
        with self._lock:
            self._counts = replace(self._counts, **{field: getattr(self._counts, field) + 1})
        if metric is not None:
            metric.labels(camera=self.camera.name).inc()

    async def run(self, consume: Callable[[CameraImage], Awaitable[bool]]) -> None:
        """Read the source in a thread and await ``consume`` for each frame taken;
        ``consume`` says whether it sent the frame (counted as published).

        Returns when a file ended or ``stop`` was called; raises what ended the reader
        otherwise (``SourceError`` for a file that cannot be read). Run once.
        """
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera.name}: a feed runs once")
        slot = _Slot(asyncio.get_running_loop())
        self._thread = threading.Thread(
            target=self._read, args=(slot,), name=f"camera-{self.camera.name}", daemon=True
        )
        self._thread.start()
        try:
            while (image := await slot.get()) is not None:
                if await consume(image):
                    self._add("published", self._metrics.published_frames)
        finally:
            self._halt.set()
            await asyncio.to_thread(self._thread.join, _JOIN_S)
            if self._thread.is_alive():
                log.info(
                    "camera %s: reader still in a read; it ends at its timeout", self.camera.name
                )
        if self._failure is not None:
            raise self._failure

    def _read(self, slot: _Slot) -> None:
        """The reader thread: everything blocking or CPU-heavy happens here."""
        try:
            self._read_until_done(slot)
        except BaseException as exc:  # handed to run(), which raises it
            self._failure = exc
        finally:
            slot.close()

    def _read_until_done(self, slot: _Slot) -> None:
        camera = self.camera
        pacer = Pacer(camera.rate_hz, live=self._live, realtime=camera.realtime)
        delays = self._backoff.delays()
        while not self._halt.is_set():
            pacer.new_pass()  # each opening starts its timestamps over
            frames = 0
            try:
                with self._opener(camera) as source:
                    log.info(
                        "camera %s: reading %s with %s",
                        camera.name,
                        redact(camera.source),
                        source.backend,
                    )
                    for decoded in source.frames():
                        if self._halt.is_set():
                            return
                        frames += 1
                        if frames == 1:  # flowing: the next loss waits the first delay again
                            delays = self._backoff.delays()
                        self._offer(decoded, pacer, slot)
            except SourceError as exc:
                if not (self._live and exc.retriable):
                    raise
                reason = str(exc)
            else:
                if not self._live:
                    if not camera.loop:
                        return
                    if frames == 0:
                        raise SourceError(f"{camera.source} has no frames to loop", retriable=False)
                    continue
                reason = "the stream ended"
            delay = next(delays)
            log.warning("camera %s: %s; reconnecting in %.1f s", camera.name, reason, delay)
            if self._halt.wait(delay):
                return
            self._add("reconnects", self._metrics.reconnects)

    def _offer(self, decoded: DecodedFrame, pacer: Pacer, slot: _Slot) -> None:
        self._add("decoded")
        wait_s = pacer.admit(decoded.time_s, time.monotonic())
        if wait_s is None:
            self._add("skipped", self._metrics.skipped_frames)
            return
        if wait_s > 0 and self._halt.wait(wait_s):
            return
        captured_at = time.time()
        camera = self.camera
        picture = resize(decoded.image, camera.width, camera.height)
        image = CameraImage(
            jpeg=encode_jpeg(picture, camera.jpeg_quality).data,
            width=picture.shape[1],
            height=picture.shape[0],
            captured_at=captured_at,
            time_s=decoded.time_s,
        )
        if slot.put(image):
            self.drop("superseded")
