"""The KV buckets releasing keeps its state in, and the keys of desired versions.

* ``HF_DESIRED``: ``model.<tier>.<site>`` holds the version a site's workers should
  run, ``model.<tier>.<site>.<worker>`` overrides it for one worker (a canary).
* ``HF_ROLLOUT``: ``<tier>.<site>`` holds a rollout's state (pipeline/release/rollout.py).

The registry, the workers' watchers and the rollout controller all open a bucket
through :func:`open_bucket`, so whichever of them comes first creates it with the one
configuration written here.
"""

from __future__ import annotations

from typing import Final

from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.subjects import check_token

__all__ = [
    "DESIRED_BUCKET",
    "ROLLOUT_BUCKET",
    "open_bucket",
    "override_key",
    "site_key",
]

DESIRED_BUCKET: Final = subjects.DESIRED_BUCKET
ROLLOUT_BUCKET: Final = subjects.ROLLOUT_BUCKET
_CONFIGS: Final = {
    ROLLOUT_BUCKET: api.KeyValueConfig(
        bucket=ROLLOUT_BUCKET,
        description="hybridfleet rollouts: <tier>.<site> -> state (pipeline/release/rollout.py)",
        history=16,
        storage=api.StorageType.FILE,
    ),
    DESIRED_BUCKET: api.KeyValueConfig(
        bucket=DESIRED_BUCKET,
        description="hybridfleet desired model versions: model.<tier>.<site>[.<worker>]",
        # Earlier desired versions are kept for audit ("what did we ask for, when").
        history=10,
        storage=api.StorageType.FILE,
    ),
}


async def open_bucket(js: JetStreamContext, name: str) -> KeyValue:
    """The bucket ``name`` (``HF_DESIRED`` or ``HF_ROLLOUT``), created when missing."""
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        pass
    try:
        return await js.create_key_value(_CONFIGS[name])
    except BadRequestError:  # created by someone else meanwhile
        return await js.key_value(name)


def site_key(tier: str, site: str) -> str:
    """The site's desired version in ``HF_DESIRED``: ``model.<tier>.<site>``."""
    return f"model.{tier}.{check_token(site, 'site')}"


def override_key(tier: str, site: str, worker: str) -> str:
    """One worker's override in ``HF_DESIRED``: ``model.<tier>.<site>.<worker>``."""
    return f"{site_key(tier, site)}.{check_token(worker, 'worker')}"
