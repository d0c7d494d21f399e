"""Every name on the wire: subjects, streams, consumers, buckets and headers.

The addressing half of the wire contract, and the one place each name is defined.

Every name that holds a site or camera goes through ``check_token`` so a crafted
name cannot reach another site's subjects (``.``, ``*`` and ``>`` are refused).
"""

from __future__ import annotations

import hashlib
import re

from schemas.errors import SchemaError

__all__ = [
    "ADVISORIES_STREAM",
    "BUDGET_BUCKET",
    "BUNDLES_BUCKET",
    "CLOUD_SITE",
    "DESIRED_BUCKET",
    "FLEET_BUCKET",
    "FLEET_EVENTS",
    "FRAMES_CONSUMER",
    "ROLLOUT_BUCKET",
    "ADVISORY_CONSUMER",
    "CLOUD_CONSUMER",
    "CLOUD_DLQ_STREAM",
    "EDGE_TAG_HEADER",
    "ESCALATIONS_STREAM",
    "REPLIES_STREAM",
    "SITE_BUCKET",
    "SOURCE_CONSUMER",
    "check_token",
    "dead_letters",
    "edge_queue_group",
    "escalations",
    "finals",
    "finals_stream",
    "frames",
    "frames_stream",
    "health",
    "heartbeats",
    "infer",
    "max_deliveries_advisory",
    "replies",
    "reply_consumer",
    "results",
    "site_dlq_stream",
    "site_escalations_stream",
    "sourcing",
]

# Streams on the cloud side (the hub): escalations sourced from every site, the cloud's
# answers, the cloud's dead letters, and max-deliveries advisories kept for the cloud.
ESCALATIONS_STREAM = "ESCALATIONS"
REPLIES_STREAM = "REPLIES"
CLOUD_DLQ_STREAM = "DLQ_CLOUD"
ADVISORIES_STREAM = "ADVISORIES"
CLOUD_CONSUMER = "cloud-workers"
ADVISORY_CONSUMER = "cloud-advisories"
# The durable consumer on a site's escalation stream that the hub stream sources through.
SOURCE_CONSUMER = "to-cloud"
# The durable pull consumer a site's edge workers share on the site's FRAMES_<site>.
FRAMES_CONSUMER = "edge-workers"
# The header that carries the site's tag on an escalation and on the cloud's answer to
# it (edge_worker/tags.py).
EDGE_TAG_HEADER = "Hf-Edge-Tag"

# Buckets on each site's server: site secrets (the escalation tag key), the cloud budget
# ledger (edge_worker/budget.py), heartbeat records (pipeline/fleet/heartbeat.py).
SITE_BUCKET = "HF_SITE"
BUDGET_BUCKET = "HF_BUDGET"
FLEET_BUCKET = "HF_FLEET"
# Buckets where the fleet is run (the hub): signed model bundles (object store), the
# desired model version per tier, site and worker, and the rollouts' state.
BUNDLES_BUCKET = "HF_BUNDLES"
DESIRED_BUCKET = "HF_DESIRED"
ROLLOUT_BUCKET = "HF_ROLLOUT"
# Model swaps, refusals and rollout steps, as JSON events.
FLEET_EVENTS = "fleet.events"
# Cloud workers serve every site: in heartbeats and desired-state keys their "site" is
# this token.
CLOUD_SITE = "_all"

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_token(value: str, what: str) -> str:
    """Return ``value`` if it is a safe NATS subject token (letters, digits, ``_``, ``-``).

    Site and camera names become subject tokens; a ``.``, ``*`` or ``>`` in them
    would let a message reach another site's subjects.
    """
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise SchemaError(
            f"{what}: {value!r} is not a valid name; use 1-64 letters, digits, '_' or '-'"
        )
    return value


def site_escalations_stream(site: str) -> str:
    """A site's own escalation stream, on the site's server: ``ESCALATIONS_<site>``."""
    return f"ESCALATIONS_{check_token(site, 'site')}"


def frames_stream(site: str) -> str:
    """A site's bounded frame buffer, on the site's server, over ``frames.<site>.*``:
    ``FRAMES_<site>`` (the edge's intake, edge_worker/framepull.py)."""
    return f"FRAMES_{check_token(site, 'site')}"


def finals_stream(site: str) -> str:
    """A site's record of final results of escalated frames: ``FINALS_<site>``."""
    return f"FINALS_{check_token(site, 'site')}"


def site_dlq_stream(site: str) -> str:
    """A site's dead letters: ``DLQ_EDGE_<site>``."""
    return f"DLQ_EDGE_{check_token(site, 'site')}"


def reply_consumer(site: str, worker: str) -> str:
    """The durable consumer one edge worker reads its cloud answers through."""
    return f"edge-{check_token(site, 'site')}-{check_token(worker, 'worker')}"


def sourcing(site: str) -> str:
    """Deliver subject of a site's ``to-cloud`` consumer: ``sourcing.<site>.escalations``."""
    return f"sourcing.{check_token(site, 'site')}.escalations"


def finals(site: str, frame_id: str) -> str:
    """The one subject a frame's final result is claimed on: ``finals.<site>.<hash>``.

    The frame id may hold characters a subject token may not, so it is hashed.
    """
    digest = hashlib.sha256(frame_id.encode()).hexdigest()[:32]
    return f"finals.{check_token(site, 'site')}.{digest}"


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    """Where JetStream reports a message that used up its deliveries."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


def frames(site: str, camera: str = "*") -> str:
    """Where cameras publish frames: ``frames.<site>.<camera>`` (``*`` for all cameras)."""
    return f"frames.{check_token(site, 'site')}.{_camera(camera)}"


def results(site: str, camera: str = "*") -> str:
    """Where final results go: ``results.<site>.<camera>``."""
    return f"results.{check_token(site, 'site')}.{_camera(camera)}"


def health(site: str) -> str:
    """Where a site's edge workers publish drift health reports (JSON): ``health.<site>``."""
    return f"health.{check_token(site, 'site')}"


def infer(site: str) -> str:
    """Request/reply entry point: a frame in, its final result back: ``infer.<site>``."""
    return f"infer.{check_token(site, 'site')}"


def escalations(site: str = "*", camera: str = "*") -> str:
    """The persistent escalation queue: ``escalations.<site>.<camera>``."""
    site_token = "*" if site == "*" else check_token(site, "site")
    return f"escalations.{site_token}.{_camera(camera)}"


def replies(site: str = "*", worker: str = "*") -> str:
    """Where the cloud answers one edge worker: ``replies.<site>.<worker>``."""
    site_token = "*" if site == "*" else check_token(site, "site")
    worker_token = "*" if worker == "*" else check_token(worker, "worker")
    return f"replies.{site_token}.{worker_token}"


def dead_letters(stage: str, site: str) -> str:
    """Where a stage puts messages it refused: ``dlq.<stage>.<site>``."""
    return f"dlq.{check_token(stage, 'stage')}.{check_token(site, 'site')}"


def heartbeats(site: str = "*", worker: str = "*") -> str:
    """Where a worker publishes its heartbeat: ``fleet.heartbeat.<site>.<worker>``."""
    site_token = "*" if site == "*" else check_token(site, "site")
    worker_token = "*" if worker == "*" else check_token(worker, "worker")
    return f"fleet.heartbeat.{site_token}.{worker_token}"


def edge_queue_group(site: str) -> str:
    """The queue group the edge workers of one site share, so each frame reaches one."""
    return f"edge-{check_token(site, 'site')}"


def _camera(camera: str) -> str:
    return "*" if camera == "*" else check_token(camera, "camera")
