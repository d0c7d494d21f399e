"""PendingEscalations: expiry order, resolve semantics, bounded memory."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_worker.pending import PendingEscalations


def _heap_size(pending: PendingEscalations[Any]) -> int:
    # White-box on purpose: "resolved entries do not leak" is about the internal heap.
    return len(pending._heap)


def test_resolve_returns_entry_once() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("f1", 100.0, "entry-1")
    assert "f1" in pending
    assert len(pending) == 1
    assert pending.resolve("f1") == "entry-1"
    assert pending.resolve("f1") is None
    assert "f1" not in pending
    assert len(pending) == 0


def test_resolve_unknown_returns_none() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    assert pending.resolve("nope") is None


def test_duplicate_add_raises_and_keeps_original() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("f1", 100.0, "first")
    with pytest.raises(ValueError, match="f1"):
        pending.add("f1", 50.0, "second")
    assert pending.next_deadline() == 100.0
    assert pending.resolve("f1") == "first"


def test_nan_deadline_rejected() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    with pytest.raises(ValueError, match="deadline_at"):
        pending.add("f1", float("nan"), "x")
    assert len(pending) == 0


def test_pop_expired_earliest_first_and_inclusive() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("c", 30.0, "C")
    pending.add("a", 10.0, "A")
    pending.add("d", 40.0, "D")
    pending.add("b", 20.0, "B")
    assert pending.pop_expired(5.0) == []
    assert pending.pop_expired(30.0) == [("a", "A"), ("b", "B"), ("c", "C")]
    assert len(pending) == 1
    assert pending.next_deadline() == 40.0


def test_equal_deadlines_expire_in_insertion_order() -> None:
    pending: PendingEscalations[int] = PendingEscalations()
    for i in range(5):
        pending.add(f"f{i}", 1.0, i)
    assert pending.pop_expired(1.0) == [(f"f{i}", i) for i in range(5)]


def test_resolve_after_expiry_returns_none() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("late", 10.0, "L")
    assert pending.pop_expired(10.5) == [("late", "L")]
    assert pending.resolve("late") is None


def test_resolved_entry_never_expires() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("a", 10.0, "A")
    pending.add("b", 20.0, "B")
    assert pending.resolve("a") == "A"
    assert pending.next_deadline() == 20.0
    assert pending.pop_expired(100.0) == [("b", "B")]
    assert pending.next_deadline() is None


def test_readd_after_resolve_uses_new_deadline() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    pending.add("a", 10.0, "old")
    pending.add("keep", 1000.0, "K")  # keeps the stale record from being compacted away
    pending.add("keep2", 1000.0, "K2")
    pending.resolve("a")
    pending.add("a", 50.0, "new")
    # The stale record for the old "a" (deadline 10) must not expire the new one.
    assert pending.pop_expired(20.0) == []
    assert pending.next_deadline() == 50.0
    assert pending.pop_expired(50.0) == [("a", "new")]


def test_next_deadline_empty() -> None:
    pending: PendingEscalations[str] = PendingEscalations()
    assert pending.next_deadline() is None


def test_resolving_almost_everything_compacts_the_heap() -> None:
    pending: PendingEscalations[int] = PendingEscalations()
    for i in range(1000):
        pending.add(f"f{i}", float(i), i)
    for i in range(1, 1000):
        assert pending.resolve(f"f{i}") == i
    assert len(pending) == 1
    assert _heap_size(pending) <= 2
    assert pending.pop_expired(1e9) == [("f0", 0)]
    assert _heap_size(pending) == 0


def test_expiring_live_entries_does_not_strand_stale_records() -> None:
    pending: PendingEscalations[int] = PendingEscalations()
    for i in range(100):
        pending.add(f"f{i}", float(i), i)
    for i in range(50, 100):
        pending.resolve(f"f{i}")  # late deadlines resolved: stale records at the bottom
    assert [fid for fid, _ in pending.pop_expired(49.0)] == [f"f{i}" for i in range(50)]
    assert len(pending) == 0
    assert _heap_size(pending) == 0


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 9), st.integers(0, 20)),
        st.tuples(st.just("resolve"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("expire"), st.just(0), st.integers(0, 20)),
        st.tuples(st.just("next"), st.just(0), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_matches_dict_model(ops: list[tuple[str, int, int]]) -> None:
    pending: PendingEscalations[int] = PendingEscalations()
    model: dict[str, tuple[float, int, int]] = {}  # id -> (deadline, insertion seq, entry)
    seq = 0
    for op, key, value in ops:
        fid = f"f{key}"
        if op == "add":
            if fid in model:
                with pytest.raises(ValueError):
                    pending.add(fid, float(value), -1)
            else:
                pending.add(fid, float(value), seq)
                model[fid] = (float(value), seq, seq)
                seq += 1
        elif op == "resolve":
            expected = model.pop(fid)[2] if fid in model else None
            assert pending.resolve(fid) == expected
        elif op == "expire":
            due = sorted((d, s, f, e) for f, (d, s, e) in model.items() if d <= value)
            for _, _, f, _ in due:
                del model[f]
            assert pending.pop_expired(float(value)) == [(f, e) for _, _, f, e in due]
        else:
            expected_next = min((d for d, _, _ in model.values()), default=None)
            assert pending.next_deadline() == expected_next
        assert len(pending) == len(model)
        assert all(f in pending for f in model)
        assert _heap_size(pending) <= 2 * len(model)
