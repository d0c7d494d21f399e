"""The restart backoff of ``fleet up``: doubling delays, a cap, and giving up."""

from __future__ import annotations

import pytest

from pipeline.fleet.supervisor import RestartHistory, RestartPolicy
from schemas.errors import ConfigError


def test_delays_double_up_to_the_cap_then_it_gives_up() -> None:
    history = RestartHistory(RestartPolicy(initial_delay_s=0.5, max_delay_s=3.0, max_restarts=5))
    delays = [history.on_exit(now=float(t)) for t in range(6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, None]
    assert history.total == 5


def test_restarts_outside_the_window_are_forgotten() -> None:
    history = RestartHistory(RestartPolicy(max_restarts=2, window_s=60.0))
    assert history.on_exit(0.0) == 0.5
    assert history.on_exit(10.0) == 1.0
    assert history.on_exit(20.0) is None  # a third within 60 s: it keeps failing
    # A minute after the first two, the worker has earned a fresh start.
    assert history.recent(80.5) == 0
    assert history.on_exit(80.5) == 0.5
    assert history.total == 3


def test_no_restarts_means_the_first_exit_fails() -> None:
    assert RestartHistory(RestartPolicy(max_restarts=0)).on_exit(0.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay_s": 0.0},
        {"initial_delay_s": 5.0, "max_delay_s": 1.0},
        {"max_restarts": -1},
        {"window_s": 0.0},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="must"):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
