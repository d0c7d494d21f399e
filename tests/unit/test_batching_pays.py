"""BatchPolicy.batching_pays: a frame waits for company only when company is cheaper."""

from __future__ import annotations

from edge_worker.batcher import BatchDecision, BatchPolicy
from edge_worker.estimates import LatencyModel


def _policy(per_batch_s: float, per_item_s: float) -> BatchPolicy:
    """A policy whose latency model has seen batches of 1, 2 and 4 on the line
    ``per_batch_s + per_item_s * n``."""
    model = LatencyModel()
    for n in (1, 2, 4, 1, 2, 4):
        model.observe(n, per_batch_s + per_item_s * n)
    return BatchPolicy(max_batch_size=32, latency_target_s=60.0, latency_model=model)


def test_a_model_whose_time_grows_with_every_item_never_holds_a_frame() -> None:
    # A text reader: about a second a frame, nothing shared by a batch.
    policy = _policy(0.0, 1.0)
    assert not policy.batching_pays()
    # One frame queued, a minute to its deadline, two arriving a second: it goes now.
    decision = policy.decide(
        now=100.0, queued=1, oldest_arrival=100.0, oldest_due=160.0, arrival_rate=2.0
    )
    assert decision == BatchDecision(1, None)


def test_a_model_with_a_fixed_cost_per_batch_waits_for_company() -> None:
    # A small model on the event loop's side of things: 1 ms a batch, 0.05 ms an item.
    policy = _policy(0.001, 0.00005)
    assert policy.batching_pays()
    decision = policy.decide(
        now=100.0, queued=1, oldest_arrival=100.0, oldest_due=100.05, arrival_rate=1000.0
    )
    assert decision.size == 0 and decision.wake_at is not None
