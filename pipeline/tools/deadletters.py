"""Stored dead letters: list them, and redrive them to where they were going.

Each stage stores what it refused as a ``DeadLetter`` (``pipeline.messaging.natsio``
``publish_dead_letter``): the edge on ``dlq.edge.<site>`` in ``DLQ_EDGE_<site>`` on the
site's server, the cloud on ``dlq.cloud.<site>`` in ``DLQ_CLOUD`` on the hub (on the
one server of ``hybridfleet site``). A record keeps the original subject and bytes.

``redrive`` publishes a record's original bytes to its original subject (as JSON, with
``Content-Type: application/json``, when they are JSON), then deletes the record unless
told to keep it. Escalations go through JetStream and wait for the stream's ack; frames
are core NATS. What was refused for its content is refused again (and stored again):
redrive after fixing what refused it, e.g. a model or a worker upgraded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from schemas import subjects
from schemas.codec import decode_dead_letter
from schemas.errors import ConfigError, SchemaError
from schemas.messages import DeadLetter
from schemas.subjects import check_token

__all__ = ["StoredLetter", "dead_letter_stream", "read_letters", "redrive", "letter_record"]

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class StoredLetter:
    """A dead letter and where it is stored (its stream and sequence number)."""

    stream: str
    seq: int
    letter: DeadLetter | None  # None: the record itself could not be decoded
    error: str = ""


def dead_letter_stream(stage: str, site: str) -> tuple[str, str]:
    """The stream that holds ``stage``'s dead letters of ``site`` (``*``: every site
    of the cloud), and the subject filter."""
    if stage == "edge":
        if site == "*":
            raise ConfigError("edge dead letters are kept per site: name one with --site")
        return subjects.site_dlq_stream(site), subjects.dead_letters("edge", site)
    if stage == "cloud":
        token = "*" if site == "*" else check_token(site, "site")
        return subjects.CLOUD_DLQ_STREAM, f"dlq.cloud.{token}"
    raise ConfigError(f"stage must be edge or cloud, got {stage!r}")


async def read_letters(
    js: JetStreamContext, stream: str, subject: str, *, limit: int, first_seq: int = 1
) -> AsyncIterator[StoredLetter]:
    """The stored dead letters on ``subject`` in ``stream``, oldest first, at most ``limit``."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        raise ConfigError(
            f"stream {stream} does not exist on this server: is this the right server "
            "(a site's for edge dead letters, the hub for the cloud's)?"
        ) from None
    seq = max(first_seq, info.state.first_seq)
    found = 0
    while found < limit and seq <= info.state.last_seq:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return  # nothing more on that subject
        if raw.seq is None:
            return
        yield _stored(stream, raw.seq, raw.data or b"")
        found += 1
        seq = raw.seq + 1


def _stored(stream: str, seq: int, data: bytes) -> StoredLetter:
    try:
        return StoredLetter(stream, seq, decode_dead_letter(data))
    except SchemaError as exc:
        return StoredLetter(stream, seq, None, str(exc))


async def fetch_letters(
    js: JetStreamContext, stream: str, seqs: Collection[int]
) -> list[StoredLetter]:
    """The records with the sequence numbers ``seqs``; a missing one is an error."""
    letters = []
    for seq in sorted(seqs):
        try:
            raw = await js.get_msg(stream, seq=seq)
        except NotFoundError:
            raise ConfigError(f"{stream} has no message {seq}: list them again") from None
        letters.append(_stored(stream, seq, raw.data or b""))
    return letters


def letter_record(stored: StoredLetter) -> dict[str, Any]:
    """A stored dead letter as a JSON-ready object (the original bytes as a count)."""
    record: dict[str, Any] = {"stream": stored.stream, "seq": stored.seq}
    letter = stored.letter
    if letter is None:
        return {**record, "error": stored.error}
    return {
        **record,
        "stage": letter.stage,
        "site": letter.site,
        "subject": letter.subject,
        "reason": letter.reason,
        "at": letter.at,
        "bytes": len(letter.data),
    }


@dataclass(frozen=True)
class Redriven:
    """What ``redrive`` did with one record: ``published``, ``duplicate`` (an escalation
    the stream already holds under its frame id) or ``skipped`` (with why)."""

    stored: StoredLetter
    outcome: str
    detail: str = ""


async def redrive(
    nc: Client,
    js: JetStreamContext,
    letters: list[StoredLetter],
    *,
    keep: bool = False,
    publisher: Callable[[DeadLetter], Awaitable[Client]] | None = None,
) -> list[Redriven]:
    """Publish each letter's original bytes to its original subject; delete it after
    (unless ``keep``). ``publisher`` picks the connection to publish on per letter (a
    cloud dead letter of a fleet goes to its site's server); default ``nc``."""
    done = []
    for stored in letters:
        letter = stored.letter
        if letter is None:
            done.append(Redriven(stored, "skipped", f"unreadable record: {stored.error}"))
            continue
        target = nc if publisher is None else await publisher(letter)
        headers = _JSON if letter.data[:1] == b"{" else None
        outcome = "published"
        if letter.subject.startswith("escalations."):
            ack = await target.jetstream().publish(
                letter.subject, letter.data, timeout=5.0, headers=headers
            )
            outcome = "duplicate" if ack.duplicate else "published"
        else:
            await target.publish(letter.subject, letter.data, headers=headers)
            await target.flush()
        if not keep:
            await js.delete_msg(stored.stream, stored.seq)
        done.append(Redriven(stored, outcome, letter.subject))
    return done
