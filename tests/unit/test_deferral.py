"""Which escalations wait for company in the cloud, and when (cloud_worker/deferral.py)."""

from __future__ import annotations

from cloud_worker.deferral import DEFER_MARGIN_S, Parking


def test_only_lowest_priority_with_time_to_spare_is_deferrable() -> None:
    parking: Parking[str] = Parking(defer_batch=4, defer_max_s=30.0)
    spare = 30.0 + DEFER_MARGIN_S + 1
    assert parking.deferrable(3, spare)
    assert not parking.deferrable(2, spare)
    assert not parking.deferrable(3, 30.0 + DEFER_MARGIN_S)
    assert not Parking[str](defer_batch=0, defer_max_s=30.0).deferrable(3, 1e6)


def test_parked_jobs_leave_together_at_the_batch_size() -> None:
    parking: Parking[str] = Parking(defer_batch=3, defer_max_s=30.0)
    parking.park("a", 0.0)
    parking.park("b", 1.0)
    assert parking.take(2.0, draining=False) == []
    assert list(parking) == ["a", "b"] and len(parking) == 2
    parking.park("c", 2.0)
    assert parking.take(2.0, draining=False) == ["a", "b", "c"]
    assert len(parking) == 0


def test_the_oldest_waits_at_most_defer_max_s() -> None:
    parking: Parking[str] = Parking(defer_batch=10, defer_max_s=30.0)
    parking.park("a", 100.0)
    parking.park("b", 120.0)
    assert parking.take(129.9, draining=False) == []
    assert parking.take(130.0, draining=False) == ["a", "b"]


def test_draining_takes_everything_parked() -> None:
    parking: Parking[str] = Parking(defer_batch=10, defer_max_s=30.0)
    assert parking.take(0.0, draining=True) == []
    parking.park("a", 0.0)
    assert parking.take(0.0, draining=True) == ["a"]
