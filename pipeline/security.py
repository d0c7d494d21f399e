"""Per-site identities and what each may do: nats-server authorization blocks.

Every process logs in as a user whose subject permissions say what it may publish
and subscribe to, so a site's credentials only ever reach that site's subjects:

* on a **site server**, ``camera`` (frames in, results out) and ``edge`` (its
  streams, its results, and its answers from the cloud through the hub's domain);
* on the **hub**, ``cloud`` (the cloud's streams) and, for the leaf link of each site,
  a user ``leaf-<site>``. Its publish permissions limit what the site can send into
  the hub, and its subscribe permissions what the hub sends down to it.

TLS (``TlsFiles``) can be turned on for client ports and for the leaf link. docs/security.md
lists every permission and why it is needed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas import subjects
from schemas.codec import check_token

HUB_DOMAIN = "hub"  # the cloud's JetStream domain (pipeline.topology uses this one)

__all__ = [
    "Credentials",
    "Permissions",
    "hub_authorization",
    "site_authorization",
    "site_permissions",
    "TlsFiles",
]


@dataclass(frozen=True)
class Credentials:
    """A user name and password; ``url`` puts them into a NATS URL."""

    user: str
    password: str

    @classmethod
    def generate(cls, user: str) -> Credentials:
        return cls(user, secrets.token_urlsafe(18))

    def url(self, url: str) -> str:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{self.user}:{self.password}@{rest}"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def block(self) -> dict[str, dict[str, list[str]]]:
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
        }


def _replies_api(site: str, workers: Sequence[str]) -> list[str]:
    # Each edge worker reads its answers through its own durable consumer on the hub's
    # REPLIES stream: create/inspect it, pull from it, ack what it pulled. Subject
    # wildcards match whole tokens only, so every consumer is named.
    stream = subjects.REPLIES_STREAM
    api = f"$JS.{HUB_DOMAIN}.API"
    allowed = [f"{api}.STREAM.NAMES", f"{api}.STREAM.INFO.{stream}"]
    for worker in workers:
        consumer = subjects.reply_consumer(site, worker)
        allowed += [
            f"{api}.CONSUMER.CREATE.{stream}.{consumer}",
            f"{api}.CONSUMER.CREATE.{stream}.{consumer}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
            f"{api}.CONSUMER.INFO.{stream}.{consumer}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
            f"$JS.ACK.{stream}.{consumer}.>",
        ]
    return allowed


def site_permissions(site: str, workers: Sequence[str] = ("edge-1",)) -> dict[str, Permissions]:
    """What each role of a site may do on the site's own server; ``workers`` are the
    ids of the site's edge workers."""
    check_token(site, "site")
    own_streams = [
        subjects.site_escalations_stream(site),
        subjects.finals_stream(site),
        subjects.site_dlq_stream(site),
    ]
    local_api = [
        f"$JS.API.STREAM.{op}.{name}" for name in own_streams for op in ("CREATE", "UPDATE", "INFO")
    ]
    local_api += [
        f"$JS.API.CONSUMER.CREATE.{subjects.site_escalations_stream(site)}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{subjects.site_escalations_stream(site)}.>",
        "$JS.API.INFO",
    ]
    return {
        "camera": Permissions(
            publish=(f"frames.{site}.>", subjects.infer(site)),
            subscribe=(f"results.{site}.>", "_INBOX.>"),
        ),
        "edge": Permissions(
            publish=(
                f"results.{site}.>",
                f"escalations.{site}.>",
                f"finals.{site}.>",
                subjects.dead_letters("edge", site),
                "_INBOX.>",  # answers to infer.<site> requests
                *local_api,
                *_replies_api(site, workers),
            ),
            subscribe=(f"frames.{site}.>", subjects.infer(site), "_INBOX.>"),
        ),
    }


def leaf_permissions(site: str, workers: Sequence[str] = ("edge-1",)) -> Permissions:
    """The hub-side user of a site's leaf link: only that site's traffic crosses."""
    return Permissions(
        # Site -> hub: sourced escalations and flow control, API replies to the hub's
        # sourcing requests, and the edge's requests for its answers.
        publish=(
            f"sourcing.{site}.>",
            "$JSC.R.>",
            "$JS.FC.>",
            "_INBOX.>",
            *_replies_api(site, workers),
        ),
        # Hub -> site: the hub's sourcing requests to the site's JetStream, flow
        # control, and replies to the edge's requests.
        subscribe=(f"$JS.{site}.API.>", "$JS.FC.>", "$JSC.R.>", "_INBOX.>"),
    )


def _users(users: Iterable[tuple[Credentials, Permissions]]) -> str:
    entries = [{"user": c.user, "password": c.password, "permissions": p.block()} for c, p in users]
    # JSON is valid nats-server config syntax.
    return json.dumps(entries, indent=2)


def site_authorization(site: str, credentials: Mapping[str, Credentials]) -> str:
    """The ``authorization`` block of a site server; ``credentials`` maps role -> user."""
    permissions = site_permissions(site)
    unknown = set(credentials) - set(permissions)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(permissions)}")
    users = [(credentials[role], permissions[role]) for role in credentials]
    return f"authorization {{\n  users = {_users(users)}\n}}\n"


def hub_authorization(cloud: Credentials, leaves: Mapping[str, Credentials]) -> str:
    """The hub's ``authorization`` block: the cloud user and one user per site's leaf.

    A leaf link logs in like a client (the ``leafnodes`` block has no users of its
    own), and its user's permissions then bound what crosses that link.
    """
    cloud_permissions = Permissions(
        publish=("replies.>", "dlq.cloud.>", "$JS.API.>", "$JS.ACK.>", "_INBOX.>"),
        subscribe=("_INBOX.>", "replies.>"),
    )
    users = [(cloud, cloud_permissions)]
    users += [(c, leaf_permissions(site)) for site, c in leaves.items()]
    return f"authorization {{\n  users = {_users(users)}\n}}\n"


@dataclass(frozen=True)
class TlsFiles:
    """A server's (or a leaf link's) certificate, its key, and the CA that signs peers."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def block(self, *, verify: bool = False) -> str:
        """A ``tls { }`` block; ``verify`` requires peers to show a certificate too."""
        return (
            "tls {\n"
            f'  cert_file: "{self.cert_file}"\n'
            f'  key_file: "{self.key_file}"\n'
            f'  ca_file: "{self.ca_file}"\n'
            f"  verify: {'true' if verify else 'false'}\n"
            "}\n"
        )
