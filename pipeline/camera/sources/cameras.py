"""``VideoCameras``: a site's video cameras in one process, every frame they send
published to NATS as a JPEG ``Frame``; ``run_cameras`` runs them until they end or are
told to stop.

Each camera is a ``Feed`` (pipeline/camera/feed.py) with its own reader thread; the
publishing tasks share one ``asyncio.TaskGroup``, so a camera whose file cannot be
read stops the others and ``wait()`` raises why. A frame the NATS client refuses (over
the server's max_payload, or its outbound buffer full while reconnecting) is dropped
and counted (``publish_refused``); the camera goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client

from pipeline.camera.feed import Backoff, CameraImage, Feed, FeedCounts, Opener
from pipeline.camera.sources.config import VideoCamera
from pipeline.camera.sources.metrics import CameraMetrics
from pipeline.camera.sources.registry import kind_for
from pipeline.service import Service
from schemas import subjects
from schemas.codec import encode
from schemas.errors import ConfigError, SchemaError
from schemas.messages import Colour, Encoded, Encoding, Frame

__all__ = ["CameraCounts", "VideoCameras", "run_cameras"]

log = logging.getLogger(__name__)

# Refusals of one frame by the NATS client; the connection itself is still usable.
_REFUSED = (nats.errors.MaxPayloadError, nats.errors.OutboundBufferLimitError)


@dataclass(frozen=True)
class CameraCounts:
    """What each camera did (``FeedCounts`` by camera name), and the totals."""

    cameras: Mapping[str, FeedCounts]

    @property
    def published(self) -> int:
        return sum(c.published for c in self.cameras.values())

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.cameras.values())

    @property
    def reconnects(self) -> int:
        return sum(c.reconnects for c in self.cameras.values())


class VideoCameras(Service):
    """Publishes ``cameras``' frames on ``frames.<site>.<camera>`` through ``nc``.

    The connection is the caller's: closing the service does not close it. ``opener``
    replaces how sources are opened (tests); ``metrics`` is where the counters go.
    """

    def __init__(
        self,
        nc: Client,
        cameras: Sequence[VideoCamera],
        site: str,
        *,
        metrics: CameraMetrics | None = None,
        backoff: Backoff | None = None,
        opener: Opener | None = None,
    ) -> None:
        try:
            subjects.check_token(site, "site")
        except SchemaError as exc:
            raise ConfigError(str(exc)) from None
        if not cameras:
            raise ConfigError("no cameras to run; configure at least one")
        names = [c.name for c in cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"two cameras are named {twice[0]!r}; names must differ")
        self._nc = nc
        self._site = site
        self.metrics = metrics or CameraMetrics()
        backoff = backoff or Backoff()
        self._feeds = [
            Feed(c, metrics=self.metrics, backoff=backoff, opener=opener) for c in cameras
        ]
        self._run_id = secrets.token_hex(4)  # frame ids stay unique across restarts
        self._seq = dict.fromkeys(names, 0)

    @property
    def name(self) -> str:
        return f"cameras-{self._site}"

    def counts(self) -> CameraCounts:
        """What every camera did so far."""
        return CameraCounts({f.camera.name: f.counts for f in self._feeds})

    def stop(self) -> None:
        """Stop every camera; ``wait()`` returns once the frames in hand are published."""
        for feed in self._feeds:
            feed.stop()

    async def _open(self) -> None:
        """Check what can be checked before reading: every file exists."""
        for feed in self._feeds:
            camera = feed.camera
            kind = kind_for(camera.source)
            try:
                kind.check(kind.target(camera.source, camera.backend_options))
            except ConfigError as exc:
                raise ConfigError(f"camera {camera.name}: source: {exc}") from None

    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        for feed in self._feeds:
            publish = functools.partial(self._publish, feed)
            tasks.create_task(feed.run(publish), name=f"camera-{feed.camera.name}")

    async def _stop_taking(self) -> None:
        self.stop()

    async def _release(self) -> None:
        self.stop()
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
            await self._nc.flush(timeout=2)

    async def _publish(self, feed: Feed, image: CameraImage) -> bool:
        camera = feed.camera
        seq = self._seq[camera.name]
        self._seq[camera.name] = seq + 1
        frame = Frame(
            frame_id=f"{self._site}-{camera.name}-{self._run_id}-{seq}",
            site=self._site,
            camera=camera.name,
            seq=seq,
            captured_at=image.captured_at,
            image=Encoded(image.jpeg, Encoding.JPEG),
            priority=camera.priority,
            deadline_ms=camera.deadline_ms,
            privacy=camera.privacy,
            colour=Colour.RGB,
        )
        try:
            await self._nc.publish(subjects.frames(self._site, camera.name), encode(frame))
        except _REFUSED as exc:
            feed.drop("publish_refused")
            log.warning("camera %s: frame %d not sent: %s", camera.name, seq, exc)
            return False
        return True


async def run_cameras(
    nc: Client,
    cameras: Sequence[VideoCamera],
    site: str,
    *,
    stop: asyncio.Event | None = None,
    metrics: CameraMetrics | None = None,
) -> CameraCounts:
    """Publish ``cameras``' frames to ``site`` until every source ended (files without
    ``loop``) or ``stop`` is set; what each camera did.

    Raises ``ConfigError`` for a camera whose source is wrong (a missing file) and
    ``SourceError`` for a file that cannot be read; live sources are reconnected.
    """
    service = VideoCameras(nc, cameras, site, metrics=metrics)
    async with service:
        stopper = None if stop is None else asyncio.create_task(_stop_on(stop, service))
        try:
            await service.wait()
        finally:
            if stopper is not None:
                stopper.cancel()
    return service.counts()


async def _stop_on(stop: asyncio.Event, service: VideoCameras) -> None:
    await stop.wait()
    service.stop()
