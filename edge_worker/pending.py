"""Frames escalated to the cloud and still waiting for an answer.

Pure bookkeeping: the worker resolves an entry when the cloud answers and, driven by
``next_deadline``, pops the expired ones to answer them degraded. A min-heap on the
deadline with lazy deletion keeps every operation O(log n) amortised; the heap is
rebuilt whenever dead records (resolved entries) would exceed half of it, so it never
holds more than twice as many records as there are pending entries.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

__all__ = ["PendingEscalations"]

T = TypeVar("T")


class PendingEscalations(Generic[T]):
    """Pending escalations keyed by frame id, each with a deadline in Unix seconds."""

    __slots__ = ("_entries", "_heap", "_seq", "_stale")

    def __init__(self) -> None:
        """Create an empty set."""
        # frame id -> (deadline, seq, entry); seq tells a live heap record from a stale
        # one left by an earlier entry with the same id (resolved, then added again).
        self._entries: dict[str, tuple[float, int, T]] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._stale = 0

    def add(self, frame_id: str, deadline_at: float, entry: T) -> None:
        """Track ``entry`` until ``deadline_at``; a frame id already pending is an error."""
        if frame_id in self._entries:
            raise ValueError(f"frame {frame_id!r} is already pending")
        if math.isnan(deadline_at):
            raise ValueError(f"deadline_at must be a number, got {deadline_at!r}")
        seq = next(self._seq)
        self._entries[frame_id] = (deadline_at, seq, entry)
        heapq.heappush(self._heap, (deadline_at, seq, frame_id))

    def resolve(self, frame_id: str) -> T | None:
        """Remove and return the entry, or None if unknown, expired or already resolved."""
        record = self._entries.pop(frame_id, None)
        if record is None:
            return None
        self._stale += 1
        self._compact_if_mostly_stale()
        return record[2]

    def pop_expired(self, now: float) -> list[tuple[str, T]]:
        """Remove and return every entry whose deadline is <= ``now``, earliest first."""
        expired: list[tuple[str, T]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, frame_id = heapq.heappop(heap)
            if not self._is_live(seq, frame_id):
                self._stale -= 1
                continue
            expired.append((frame_id, self._entries.pop(frame_id)[2]))
        # Popping live records raises the stale share too.
        self._compact_if_mostly_stale()
        return expired

    def next_deadline(self) -> float | None:
        """The earliest deadline still pending, or None when nothing is."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, frame_id: object) -> bool:
        return frame_id in self._entries

    def _is_live(self, seq: int, frame_id: str) -> bool:
        record = self._entries.get(frame_id)
        return record is not None and record[1] == seq

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap and not self._is_live(heap[0][1], heap[0][2]):
            heapq.heappop(heap)
            self._stale -= 1

    def _compact_if_mostly_stale(self) -> None:
        # Keeps len(heap) <= 2 * live entries after every public call.
        if self._stale * 2 <= len(self._heap):
            return
        self._heap = [(deadline, seq, fid) for fid, (deadline, seq, _) in self._entries.items()]
        heapq.heapify(self._heap)
        self._stale = 0
