"""The NATS plumbing every worker shares: connecting, declaring streams, dead letters.

Kept in one place so that the durability settings of docs/topology.md are
written down once.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Callable

from nats.aio.client import Client
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError, NotFoundError

from pipeline.config import CloudSettings, EdgeSettings, NatsSettings, StreamSettings
from schemas import subjects
from schemas.codec import encode
from schemas.messages import DeadLetter

__all__ = [
    "DEAD_LETTER_MAX_DATA",
    "client_tls",
    "connect",
    "ensure_cloud_streams",
    "ensure_frames_stream",
    "ensure_site_streams",
    "publish_dead_letter",
]

log = logging.getLogger(__name__)

# A dead letter keeps the original bytes, cut to this size so the record itself fits
# in a NATS message even when the original was refused for being too large.
DEAD_LETTER_MAX_DATA = 1 << 20
_STREAM_IN_USE = 10058


def client_tls(settings: NatsSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for, or None for plain TCP."""
    if not settings.tls_ca_file:
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca_file)
    if settings.tls_cert_file:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    return context


async def connect(
    settings: NatsSettings,
    name: str,
    *,
    on_slow_consumer: Callable[[SlowConsumerError], None] | None = None,
) -> Client:
    """Connect and keep reconnecting forever: a worker outlives its server's restarts.

    ``on_slow_consumer`` is called for each message the client drops because a
    subscription's buffer is full (instead of a warning per message).
    """

    async def on_error(exc: Exception) -> None:
        if on_slow_consumer is not None and isinstance(exc, SlowConsumerError):
            on_slow_consumer(exc)
            return
        log.warning("%s: NATS error: %s", name, exc)

    nc = Client()

    async def on_disconnect() -> None:
        if not (nc.is_closed or nc.is_draining):  # a close we asked for is no news
            log.warning("%s: disconnected from NATS", name)

    async def on_reconnect() -> None:
        log.info("%s: reconnected to NATS", name)

    await nc.connect(
        [url.strip() for url in settings.url.split(",")],
        tls=client_tls(settings),
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


async def ensure_site_streams(js: JetStreamContext, site: str, settings: StreamSettings) -> None:
    """Declare a site's streams on its own server (idempotent). The edge calls it.

    * ``ESCALATIONS_<site>``: escalations wait here, on the site's disk, until the
      cloud side has them. Work-queue retention with the durable ``to-cloud``
      consumer that the cloud's stream sources through, so the stream holds only
      what has not crossed yet; discard ``new``, so a full stream refuses rather than
      drops what it accepted.
    * ``FINALS_<site>``: one message per escalated frame, its final result, written
      with an expected-last-subject-sequence of 0: the server lets only one through.
    * ``DLQ_EDGE_<site>``: what the site's edge workers refused.
    """
    await _add_or_update(
        js,
        api.StreamConfig(
            name=subjects.site_escalations_stream(site),
            subjects=[subjects.escalations(site)],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.WORK_QUEUE,
            discard=api.DiscardPolicy.NEW,
            max_bytes=settings.max_bytes,
            max_age=settings.max_age_s,
            duplicate_window=settings.duplicate_window_s,
        ),
    )
    with contextlib.suppress(BadRequestError):  # exists already, with this config
        await js.add_consumer(
            subjects.site_escalations_stream(site),
            api.ConsumerConfig(
                durable_name=subjects.SOURCE_CONSUMER,
                deliver_subject=subjects.sourcing(site),
                # Durable sourcing (nats-server >= 2.14): the hub acks by flow control,
                # so nothing is removed here before the hub has stored it.
                ack_policy=api.AckPolicy.FLOW_CONTROL,
                flow_control=True,
                idle_heartbeat=1.0,
                # The hub's flow-control ack, which removes forwarded escalations
                # here, comes when this many are unacked (or after an idle heartbeat):
                # a small window, so forwarded escalations never fill the stream.
                max_ack_pending=_source_window(settings.max_bytes),
                max_deliver=-1,
            ),
        )
    await _add_or_update(
        js,
        api.StreamConfig(
            name=subjects.finals_stream(site),
            subjects=[f"finals.{site}.*"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            # Outlives any escalation, so a cloud answer however late finds its claim.
            max_age=settings.max_age_s + 3600,
            max_msgs_per_subject=1,
            discard=api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
        ),
    )
    await _add_or_update(
        js, _dead_letter_stream(subjects.site_dlq_stream(site), subjects.dead_letters("edge", site))
    )


async def ensure_frames_stream(
    js: JetStreamContext, site: str, edge: EdgeSettings
) -> api.ConsumerInfo:
    """Declare ``FRAMES_<site>`` and the consumer the site's edge workers share on it
    (idempotent); return the consumer's info. The edge calls it with ``edge.intake =
    "stream"`` (docs/reliability.md, "Slow consumers").

    The stream is a bounded buffer in front of the edge, not a queue that must deliver:
    it captures the cameras' plain core-NATS publishes on ``frames.<site>.*`` (the wire
    contract is unchanged), in memory (a frame is worth its deadline, not a disk write),
    keeps at most ``edge.intake_stream_*`` and discards the oldest beyond them. So the
    backlog of a slow site waits here, bounded, instead of in the server's buffer for a
    worker's connection, where at 64 MiB the server cuts the worker off and the backlog
    vanishes uncounted. No duplicate window is set: cameras send no ``Nats-Msg-Id``.

    The consumer ``edge-workers`` is pulled (the server sends only what a worker asks
    for) with no acks: a frame is delivered once, and a frame a worker took but never
    answered (it crashed) is not redelivered, as with core NATS. It starts at the
    stream's first frame when it is made, and that start is kept in its config: every
    stream sequence from there on is either delivered or was discarded unread, which is
    how the discarded frames are counted exactly (edge_worker/framepull.py).
    """
    name = subjects.frames_stream(site)
    await _add_or_update(
        js,
        api.StreamConfig(
            name=name,
            subjects=[subjects.frames(site)],
            storage=api.StorageType.MEMORY,
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_msgs=edge.intake_stream_frames,
            max_bytes=edge.intake_stream_bytes,
            max_msgs_per_subject=edge.intake_stream_frames_per_camera or -1,
            max_age=edge.intake_stream_max_age_s,
            num_replicas=1,
        ),
    )
    info: api.ConsumerInfo
    with contextlib.suppress(NotFoundError):
        info = await js.consumer_info(name, subjects.FRAMES_CONSUMER)
        return info
    first = (await js.stream_info(name)).state.first_seq
    try:
        info = await js.add_consumer(
            name,
            api.ConsumerConfig(
                durable_name=subjects.FRAMES_CONSUMER,
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, first),
            ),
        )
    except APIError:  # another worker made it first, from another first frame
        info = await js.consumer_info(name, subjects.FRAMES_CONSUMER)
    return info


# A crop escalation is about 1.4 kB; the window may hold at most an eighth of the stream.
_ESCALATION_BYTES = 1400


def _source_window(max_bytes: int) -> int:
    """``max_ack_pending`` of a site's ``to-cloud`` consumer, from the stream's size.

    Escalations the hub has stored stay in the site stream until the hub acks them by
    flow control, which comes when ``max_ack_pending`` are unacked or when the stream
    has been idle for a heartbeat. Under steady traffic a window larger than the stream
    would fill it with escalations the hub already holds, and new ones would be refused
    while the link is up. 16 to 256: 16 crops in flight still move hundreds of
    escalations a second over a 50 ms WAN round trip.
    """
    return max(16, min(256, max_bytes // 8 // _ESCALATION_BYTES))


def _hub_work_queue(name: str, stream: StreamSettings) -> api.StreamConfig:
    """A cloud-side stream that holds each message until one worker has taken it.

    Replicated as the hub's size allows. The dedup window is the server's default: for
    ``REPLIES`` 2 minutes; for ``ESCALATIONS``, which sources the sites, none
    (nats-server >= 2.10). Setting one there was tried and taken back: a full test run
    then lost escalations between a site and the hub after a WAN cut
    (docs/reliability.md, "What is and is not deduplicated across a hub restart").
    """
    return api.StreamConfig(
        name=name,
        retention=api.RetentionPolicy.WORK_QUEUE,
        max_bytes=stream.max_bytes,
        max_age=stream.max_age_s,
        storage=api.StorageType.FILE,
        num_replicas=stream.replicas,
    )


def _dead_letter_stream(name: str, subject: str) -> api.StreamConfig:
    return api.StreamConfig(
        name=name,
        subjects=[subject],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        discard=api.DiscardPolicy.OLD,
        max_bytes=1 << 30,
        max_age=7 * 86_400.0,
    )


async def ensure_cloud_streams(
    js: JetStreamContext, stream: StreamSettings, cloud: CloudSettings
) -> None:
    """Declare the cloud side's streams and consumers (idempotent). The cloud calls it.

    ``ESCALATIONS`` has no subjects of its own: it sources every site's stream
    through that site's ``to-cloud`` consumer (across the leaf link when sites are
    JetStream domains). ``REPLIES`` keeps the cloud's answers until each edge worker
    has read its own, so answers survive a WAN outage or an edge restart.
    """
    sources = []
    for site in cloud.site_list:
        external = None
        if cloud.sites_are_domains:
            external = api.ExternalStream(api=f"$JS.{site}.API", deliver="")
        sources.append(
            api.StreamSource(
                name=subjects.site_escalations_stream(site),
                external=external,
                consumer=api.StreamConsumerSource(
                    name=subjects.SOURCE_CONSUMER, deliver_subject=subjects.sourcing(site)
                ),
            )
        )
    escalations = _hub_work_queue(subjects.ESCALATIONS_STREAM, stream)
    escalations.sources = sources
    await _add_or_update(js, escalations)
    replies = _hub_work_queue(subjects.REPLIES_STREAM, stream)
    replies.subjects = [subjects.replies()]
    await _add_or_update(js, replies)
    dlq = _dead_letter_stream(subjects.CLOUD_DLQ_STREAM, "dlq.cloud.*")
    dlq.num_replicas = stream.replicas
    await _add_or_update(js, dlq)
    # Advisories are core NATS messages: kept in a stream so none is missed while no
    # cloud worker is listening.
    await _add_or_update(
        js,
        api.StreamConfig(
            name=subjects.ADVISORIES_STREAM,
            subjects=[
                subjects.max_deliveries_advisory(
                    subjects.ESCALATIONS_STREAM, subjects.CLOUD_CONSUMER
                )
            ],
            retention=api.RetentionPolicy.WORK_QUEUE,
            max_age=stream.max_age_s,
            storage=api.StorageType.FILE,
            num_replicas=stream.replicas,
        ),
    )
    await js.add_consumer(
        subjects.ESCALATIONS_STREAM,
        api.ConsumerConfig(
            durable_name=subjects.CLOUD_CONSUMER,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=cloud.ack_wait_s,
            max_deliver=cloud.max_deliver,
            backoff=cloud.backoff or None,
            max_ack_pending=max(1000, cloud.fetch_batch * 8),
        ),
    )
    await js.add_consumer(
        subjects.ADVISORIES_STREAM,
        api.ConsumerConfig(
            durable_name=subjects.ADVISORY_CONSUMER,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30.0,
        ),
    )


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
