"""Per-site identities and what each may do: nats-server authorization blocks.

Every process logs in as a user whose subject permissions say what it may publish
and subscribe to, so a site's credentials only ever reach that site's subjects:

* on a **site server**, ``camera`` (frames in, results out), ``edge`` (its
  streams, its results, its health and heartbeats, its key-value buckets, and its
  answers from the cloud through the hub's domain) and ``operator`` (the site's
  administrator: anything on the site's own server, for ``hybridfleet infer``,
  ``tail`` and ``dead-letters``);
* on the **hub**, ``cloud`` (the cloud's streams, heartbeats) and, for the leaf link of
  each site, a user ``leaf-<site>``. Its publish permissions limit what the site can
  send into the hub, and its subscribe permissions what the hub sends down to it.

Subject wildcards match whole tokens only, so every edge worker's answer consumer is
named in the edge and leaf permissions: give those users ``Credentials.workers``.

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
from schemas.subjects import check_token

HUB_DOMAIN = "hub"  # the cloud's JetStream domain (pipeline.messaging.topology uses this one)

__all__ = [
    "DEFAULT_WORKERS",
    "SITE_ROLES",
    "Credentials",
    "Permissions",
    "TlsFiles",
    "cloud_permissions",
    "hub_authorization",
    "leaf_permissions",
    "site_authorization",
    "site_permissions",
]

# The roles of a site server's users, and the edge worker ids allowed when none are given.
SITE_ROLES = ("camera", "edge", "operator")
DEFAULT_WORKERS: tuple[str, ...] = ("edge-1",)
# The key-value buckets an edge worker keeps on its site's server: heartbeats
# (pipeline/fleet/heartbeat.py), the daily budget ledger (edge_worker/budget.py) and the
# site's secrets (edge_worker/tags.py). Their keys start with the site's name
# (``worker.<site>.`` for heartbeats).
_EDGE_BUCKETS = {
    subjects.FLEET_BUCKET: "worker.{site}.>",
    subjects.BUDGET_BUCKET: "{site}.>",
    subjects.SITE_BUCKET: "{site}.>",
}
_FLEET_EVENTS = subjects.FLEET_EVENTS


@dataclass(frozen=True)
class Credentials:
    """A user name and password; ``url`` puts them into a NATS URL.

    ``workers`` matters for a site's ``edge`` user and its leaf link's user only: the
    ids of the site's edge workers, whose answer consumers on the hub they may use
    (empty: ``DEFAULT_WORKERS``).
    """

    user: str
    password: str
    workers: tuple[str, ...] = ()

    @classmethod
    def generate(cls, user: str, workers: Sequence[str] = ()) -> Credentials:
        return cls(user, secrets.token_urlsafe(18), tuple(workers))

    def url(self, url: str) -> str:
        """``url`` (one, or several comma-separated) with this user and password in it."""
        parts = []
        for one in url.split(","):
            scheme, rest = one.strip().split("://", 1)
            parts.append(f"{scheme}://{self.user}:{self.password}@{rest}")
        return ",".join(parts)

    @property
    def worker_ids(self) -> tuple[str, ...]:
        """``workers``, or ``DEFAULT_WORKERS`` when none are named."""
        return self.workers or DEFAULT_WORKERS


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


def _bucket_api(site: str) -> list[str]:
    # Declare and read the edge's buckets (a KV get is a direct get, or a message get on
    # servers without direct access), and put only under the site's own keys.
    allowed = []
    for bucket, keys in _EDGE_BUCKETS.items():
        stream = f"KV_{bucket}"
        allowed += [f"$JS.API.STREAM.{op}.{stream}" for op in ("CREATE", "UPDATE", "INFO")]
        allowed += [
            f"$JS.API.DIRECT.GET.{stream}.$KV.{bucket}.{keys.format(site=site)}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$KV.{bucket}.{keys.format(site=site)}",
        ]
    return allowed


def site_permissions(site: str, workers: Sequence[str] = DEFAULT_WORKERS) -> dict[str, Permissions]:
    """What each role of a site may do on the site's own server; ``workers`` are the
    ids of the site's edge workers.

    * ``camera``: publish frames and ``infer`` requests of its site; read its results.
    * ``edge``: everything an edge worker does (docs/security.md), nothing more.
    * ``operator``: the site's administrator, for ``hybridfleet infer``, ``tail`` and
      ``dead-letters``: anything on the site's own server. What it publishes reaches
      the hub only as far as the leaf link's user allows.
    """
    check_token(site, "site")
    frames = subjects.frames_stream(site)
    own_streams = [
        subjects.site_escalations_stream(site),
        subjects.finals_stream(site),
        subjects.site_dlq_stream(site),
        frames,
    ]
    local_api = [
        f"$JS.API.STREAM.{op}.{name}" for name in own_streams for op in ("CREATE", "UPDATE", "INFO")
    ]
    local_api += [
        f"$JS.API.CONSUMER.CREATE.{subjects.site_escalations_stream(site)}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{subjects.site_escalations_stream(site)}.>",
        # The edge's intake (edge.intake = "stream"): its consumer on FRAMES_<site>,
        # declared, read and pulled from.
        f"$JS.API.CONSUMER.CREATE.{frames}.{subjects.FRAMES_CONSUMER}",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{frames}.{subjects.FRAMES_CONSUMER}",
        f"$JS.API.CONSUMER.INFO.{frames}.{subjects.FRAMES_CONSUMER}",
        f"$JS.API.CONSUMER.MSG.NEXT.{frames}.{subjects.FRAMES_CONSUMER}",
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
                subjects.health(site),
                f"fleet.heartbeat.{site}.>",
                _FLEET_EVENTS,
                "_INBOX.>",  # answers to infer.<site> requests
                *local_api,
                *_bucket_api(site),
                *_replies_api(site, workers),
            ),
            subscribe=(f"frames.{site}.>", subjects.infer(site), "_INBOX.>"),
        ),
        "operator": Permissions(publish=(">",), subscribe=(">",)),
    }


def leaf_permissions(site: str, workers: Sequence[str] = DEFAULT_WORKERS) -> Permissions:
    """The hub-side user of a site's leaf link: only that site's traffic crosses."""
    check_token(site, "site")
    return Permissions(
        # Site -> hub: sourced escalations and flow control, API replies to the hub's
        # sourcing requests, the edge's requests for its answers, and the site's
        # heartbeats (``hybridfleet fleet status`` at the hub).
        publish=(
            f"sourcing.{site}.>",
            f"fleet.heartbeat.{site}.>",
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
    """The ``authorization`` block of a site server; ``credentials`` maps role -> user.

    The edge user's ``workers`` name the site's edge workers.
    """
    unknown = set(credentials) - set(SITE_ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {list(SITE_ROLES)}")
    edge = credentials.get("edge")
    permissions = site_permissions(site, edge.worker_ids if edge else DEFAULT_WORKERS)
    users = [(credentials[role], permissions[role]) for role in credentials]
    return f"authorization {{\n  users = {_users(users)}\n}}\n"


def cloud_permissions() -> Permissions:
    """The hub's ``cloud`` user: the cloud's streams, answers, dead letters, heartbeats.

    It also reads heartbeats and fleet events, so that ``hybridfleet fleet status`` and
    ``dead-letters --stage cloud`` can run at the hub with its credentials.
    """
    return Permissions(
        publish=(
            "replies.>",
            "dlq.cloud.>",
            "$JS.API.>",
            "$JS.ACK.>",
            "$KV.>",  # heartbeats in HF_FLEET, desired models in HF_DESIRED at the hub
            "fleet.heartbeat.>",
            _FLEET_EVENTS,
            "_INBOX.>",
        ),
        subscribe=("_INBOX.>", "replies.>", "fleet.heartbeat.>", _FLEET_EVENTS),
    )


def hub_authorization(cloud: Credentials, leaves: Mapping[str, Credentials]) -> str:
    """The hub's ``authorization`` block: the cloud user and one user per site's leaf.

    A leaf link logs in like a client (the ``leafnodes`` block has no users of its
    own), and its user's permissions then bound what crosses that link. A leaf user's
    ``workers`` name its site's edge workers.
    """
    users = [(cloud, cloud_permissions())]
    users += [(c, leaf_permissions(site, c.worker_ids)) for site, c in leaves.items()]
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
