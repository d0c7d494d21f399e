"""The site stream's discards, counted once across a site's workers (edge_worker/discards.py).

The KV bucket is replaced by an in-memory one with the same compare-and-set rules, so
the arithmetic and the claims are checked without a server.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, cast

import pytest
from nats.js import api
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from edge_worker.discards import DiscardLedger, Epoch
from edge_worker.metrics import EdgeMetrics
from pipeline.config import EdgeSettings, load_settings
from schemas import subjects
from schemas.errors import ConfigError


@dataclass
class _Entry:
    value: bytes
    revision: int


class _KV:
    """A KV bucket's get/create/update, with its revisions."""

    def __init__(self) -> None:
        self.data: dict[str, _Entry] = {}
        self.revision = 0
        self.fail = False

    async def get(self, key: str) -> _Entry:
        if self.fail:
            raise TimeoutError("no server")
        if key not in self.data:
            raise KeyNotFoundError
        return self.data[key]

    async def create(self, key: str, value: bytes) -> int:
        if key in self.data:
            raise KeyWrongLastSequenceError
        return self._put(key, value)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        if key not in self.data or self.data[key].revision != last:
            raise KeyWrongLastSequenceError
        return self._put(key, value)

    def _put(self, key: str, value: bytes) -> int:
        self.revision += 1
        self.data[key] = _Entry(value, self.revision)
        return self.revision


def _info(created_s: float, start: int = 1) -> api.ConsumerInfo:
    return api.ConsumerInfo(
        name=subjects.FRAMES_CONSUMER,
        stream_name=subjects.frames_stream("site1"),
        config=api.ConsumerConfig(opt_start_seq=start),
        created=datetime.datetime.fromtimestamp(created_s, datetime.UTC),
    )


def _ledger(kv: _KV, info: api.ConsumerInfo) -> tuple[DiscardLedger, EdgeMetrics]:
    metrics = EdgeMetrics()
    ledger = DiscardLedger("site1", metrics, interval_s=0.0)
    ledger.bind(cast(KeyValue, kv), info)
    return ledger, metrics


def _counted(metrics: EdgeMetrics) -> float:
    return metrics.value("hybridfleet_edge_dropped_frames_total", site="site1", place="site_stream")


async def test_one_worker_counts_the_gaps_in_the_stream_sequence() -> None:
    kv = _KV()
    ledger, metrics = _ledger(kv, _info(1000.0))
    ledger.observe(1, 1)
    ledger.observe(2, 2)
    assert await ledger.claim() == 0
    ledger.observe(7, 3)  # stream sequences 3..6 discarded before anyone pulled them
    ledger.observe(8, 4)
    assert await ledger.claim() == 4
    ledger.observe(20, 5)
    assert await ledger.claim(force=True) == 11
    assert _counted(metrics) == 15 and ledger.counted == 15


async def test_two_workers_sharing_the_consumer_count_each_discard_once() -> None:
    kv = _KV()
    info = _info(1000.0)
    (a, ma), (b, mb) = _ledger(kv, info), _ledger(kv, info)
    # Deliveries interleave between the workers: (stream, consumer) pairs in order.
    a.observe(1, 1)
    b.observe(4, 2)  # 2, 3 discarded
    a.observe(5, 3)
    b.observe(9, 4)  # 6, 7, 8 discarded
    assert await a.claim() == 2  # a saw 2 discarded (at its delivery 3)
    assert await b.claim() == 3  # b saw 5 in all; 2 were counted by a
    a.observe(10, 5)
    assert await a.claim() == 0  # nothing new
    b.observe(13, 6)  # 11, 12
    a.observe(14, 7)
    assert await a.claim() == 2 and await b.claim() == 0
    assert _counted(ma) + _counted(mb) == 2 + 3 + 2


async def test_a_start_sequence_is_not_counted_as_discards() -> None:
    ledger, _ = _ledger(_KV(), _info(1000.0, start=101))
    ledger.observe(101, 1)
    ledger.observe(103, 2)
    assert await ledger.claim() == 1


async def test_a_consumer_made_again_starts_a_new_count() -> None:
    kv = _KV()
    ledger, metrics = _ledger(kv, _info(1000.0))
    ledger.observe(11, 1)
    assert await ledger.claim() == 10
    # The server restarted: a new stream, a new consumer, sequences from 1 again.
    ledger.observe(3, 1)
    assert ledger.stale and await ledger.claim() == 0
    ledger.bind(cast(KeyValue, kv), _info(2000.0))
    ledger.observe(4, 2)
    assert await ledger.claim() == 2
    # A worker still bound to the old consumer finds the newer mark: it is stale.
    old, _ = _ledger(kv, _info(1000.0))
    old.observe(50, 3)
    assert await old.claim() == 0 and old.stale
    assert _counted(metrics) == 12


async def test_a_claim_that_cannot_be_made_now_is_made_later() -> None:
    kv = _KV()
    ledger, metrics = _ledger(kv, _info(1000.0))
    ledger.observe(6, 1)
    kv.fail = True
    assert await ledger.claim() == 0
    kv.fail = False
    assert await ledger.claim() == 5 and _counted(metrics) == 5


def test_epoch_of_consumer_info() -> None:
    assert Epoch.of(_info(1.5, start=7)) == Epoch(1_500_000, 7)


def test_intake_settings_are_validated() -> None:
    assert EdgeSettings().intake in ("stream", "subscription")
    with pytest.raises(ConfigError, match="intake"):
        load_settings(env={"HYBRIDFLEET_EDGE_INTAKE": "push"})
    with pytest.raises(ConfigError, match="intake_stream_bytes"):
        load_settings(env={"HYBRIDFLEET_EDGE_INTAKE_STREAM_BYTES": "1000"})
    settings: Any = load_settings(env={"HYBRIDFLEET_EDGE_INTAKE_STREAM_FRAMES_PER_CAMERA": "64"})
    assert settings.edge.intake_stream_frames_per_camera == 64
