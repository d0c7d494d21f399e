"""Proof that an escalation was made by this site's edge: an HMAC tag per frame id.

Anyone who can publish on ``escalations.<site>.*`` could otherwise have the cloud
answer a frame the site never accepted, and that answer would become a final result.
The edge therefore tags every escalation it stores (header ``Hf-Edge-Tag``), the cloud
copies the tag onto its answer, and the edge turns an answer whose tag is missing or
wrong into a dead letter instead of a final result.

The key is the site's, shared by its edge workers and kept across restarts (an answer
may reach the next incarnation of a worker) in the site server's KV bucket
``HF_SITE``: the first worker creates it, the others read it. Camera users have no
access to that bucket when site permissions are on (docs/security.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError

from schemas import subjects

__all__ = ["TAG_HEADER", "EscalationTags", "site_tag_key"]

TAG_HEADER = subjects.EDGE_TAG_HEADER
_KEY_BYTES = 32


class EscalationTags:
    """Tags and checks escalations of one site with the site's key."""

    __slots__ = ("_key", "_site")

    def __init__(self, site: str, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("an escalation tag key needs at least 16 bytes")
        self._site = site
        self._key = key

    def tag(self, frame_id: str) -> str:
        message = f"{self._site}\x00{frame_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def verify(self, frame_id: str, tag: str | None) -> bool:
        return tag is not None and hmac.compare_digest(self.tag(frame_id), tag)


async def site_tag_key(js: JetStreamContext, site: str) -> bytes:
    """The site's escalation tag key: read from ``HF_SITE``, created by the first worker."""
    try:
        kv = await js.key_value(subjects.SITE_BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(
            bucket=subjects.SITE_BUCKET,
            description="hybridfleet site secrets (edge_worker/tags.py)",
            history=1,
        )
    key = f"{site}.escalation-tag-key"
    with contextlib.suppress(KeyWrongLastSequenceError):  # another worker made it first
        await kv.create(key, secrets.token_bytes(_KEY_BYTES))
    entry = await kv.get(key)
    if not entry.value:
        raise RuntimeError(f"KV {subjects.SITE_BUCKET} key {key!r} is empty; delete it to renew")
    return entry.value
