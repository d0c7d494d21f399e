"""The NATS plumbing every worker shares: connecting, declaring streams, dead letters.

Kept in one place so that the durability settings of docs/architecture.md are
written down once.
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError

from pipeline.config import CloudSettings, NatsSettings, StreamSettings
from schemas import subjects
from schemas.codec import encode
from schemas.messages import DeadLetter

__all__ = [
    "DEAD_LETTER_MAX_DATA",
    "connect",
    "ensure_cloud_consumer",
    "ensure_streams",
    "publish_dead_letter",
]

log = logging.getLogger(__name__)

# A dead letter keeps the original bytes, cut to this size so the record itself fits
# in a NATS message even when the original was refused for being too large.
DEAD_LETTER_MAX_DATA = 1 << 20
_STREAM_IN_USE = 10058


async def connect(settings: NatsSettings, name: str) -> Client:
    """Connect and keep reconnecting forever: a worker outlives its server's restarts."""

    async def on_error(exc: Exception) -> None:
        log.warning("%s: NATS error: %s", name, exc)

    nc = Client()

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):  # a close we asked for is no news
            log.warning("%s: disconnected from NATS", name)

    async def on_reconnect() -> None:
        log.info("%s: reconnected to NATS", name)

    await nc.connect(
        settings.url,
        name=name,
        connect_timeout=settings.connect_timeout_s,  # type: ignore[arg-type]  # float works
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,  # type: ignore[arg-type]
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )
    return nc


async def _add_or_update(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise
        await js.update_stream(config)


async def ensure_streams(js: JetStreamContext, settings: StreamSettings) -> None:
    """Declare the escalation and dead-letter streams (idempotent)."""
    await _add_or_update(
        js,
        api.StreamConfig(
            name=subjects.ESCALATIONS_STREAM,
            subjects=[subjects.escalations()],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.WORK_QUEUE,
            # Refuse new escalations when full instead of silently dropping stored ones:
            # the edge then answers those frames itself, marked degraded.
            discard=api.DiscardPolicy.NEW,
            max_bytes=settings.max_bytes,
            max_age=settings.max_age_s,
            duplicate_window=settings.duplicate_window_s,
            num_replicas=settings.replicas,
        ),
    )
    await _add_or_update(
        js,
        api.StreamConfig(
            name=subjects.DLQ_STREAM,
            subjects=["dlq.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_bytes=min(settings.max_bytes, 1 << 30),
            max_age=7 * 86_400.0,
            num_replicas=settings.replicas,
        ),
    )


async def ensure_cloud_consumer(js: JetStreamContext, settings: CloudSettings) -> None:
    """Declare the one durable pull consumer all cloud workers share."""
    config = api.ConsumerConfig(
        durable_name=subjects.CLOUD_CONSUMER,
        filter_subject=subjects.escalations(),
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=max(1000, settings.fetch_batch * 8),
    )
    await js.add_consumer(subjects.ESCALATIONS_STREAM, config)


async def publish_dead_letter(
    js: JetStreamContext, *, stage: str, site: str, subject: str, reason: str, data: bytes
) -> None:
    """Store a refused message with its reason on ``dlq.<stage>.<site>``.

    A failure to store it is logged, never raised: a dead letter must not take the
    worker down with it.
    """
    if len(data) > DEAD_LETTER_MAX_DATA:
        reason = f"{reason} (original {len(data)} bytes, first {DEAD_LETTER_MAX_DATA} kept)"
        data = data[:DEAD_LETTER_MAX_DATA]
    record = DeadLetter(
        stage=stage, site=site, subject=subject, reason=reason, data=bytes(data), at=time.time()
    )
    try:
        await js.publish(subjects.dead_letters(stage, site), encode(record), timeout=5.0)
    except Exception as exc:
        log.error("could not store dead letter from %s (%s): %s", subject, reason, exc)
