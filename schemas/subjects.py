"""Subject, stream and consumer names: the addressing half of the wire contract.

Every name that holds a site or camera goes through ``check_token`` so a crafted
name cannot reach another site's subjects (``.``, ``*`` and ``>`` are refused).
"""

from __future__ import annotations

from schemas.codec import check_token

__all__ = [
    "CLOUD_CONSUMER",
    "DLQ_STREAM",
    "ESCALATIONS_STREAM",
    "dead_letters",
    "edge_queue_group",
    "escalations",
    "frames",
    "infer",
    "replies",
    "results",
]

ESCALATIONS_STREAM = "ESCALATIONS"
DLQ_STREAM = "DEADLETTERS"
CLOUD_CONSUMER = "cloud-workers"


def frames(site: str, camera: str = "*") -> str:
    """Where cameras publish frames: ``frames.<site>.<camera>`` (``*`` for all cameras)."""
    return f"frames.{check_token(site, 'site')}.{_camera(camera)}"


def results(site: str, camera: str = "*") -> str:
    """Where final results go: ``results.<site>.<camera>``."""
    return f"results.{check_token(site, 'site')}.{_camera(camera)}"


def infer(site: str) -> str:
    """Request/reply entry point: a frame in, its final result back: ``infer.<site>``."""
    return f"infer.{check_token(site, 'site')}"


def escalations(site: str = "*", camera: str = "*") -> str:
    """The persistent escalation queue: ``escalations.<site>.<camera>``."""
    site_token = "*" if site == "*" else check_token(site, "site")
    return f"escalations.{site_token}.{_camera(camera)}"


def replies(site: str, worker: str) -> str:
    """Where the cloud answers one edge worker: ``replies.<site>.<worker>``."""
    return f"replies.{check_token(site, 'site')}.{check_token(worker, 'worker')}"


def dead_letters(stage: str, site: str) -> str:
    """Where a stage puts messages it refused: ``dlq.<stage>.<site>``."""
    return f"dlq.{check_token(stage, 'stage')}.{check_token(site, 'site')}"


def edge_queue_group(site: str) -> str:
    """The queue group the edge workers of one site share, so each frame reaches one."""
    return f"edge-{check_token(site, 'site')}"


def _camera(camera: str) -> str:
    return "*" if camera == "*" else check_token(camera, "camera")
