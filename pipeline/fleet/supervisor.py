"""When to restart a crashed process, and when to give up: exponential backoff, pure.

``fleet up`` restarts an edge worker, cloud worker or camera simulator that exits when
it should not. The n-th restart within ``window_s`` waits ``initial_delay_s * 2**(n-1)``
(at most ``max_delay_s``), so a worker that crashes once comes back at once and one that
crashes in a loop does not spin. A process that would need more than ``max_restarts``
restarts within ``window_s`` keeps failing: the launcher stops the fleet instead.

``RestartHistory`` takes the clock as an argument, so it is tested without waiting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from schemas.errors import ConfigError

__all__ = ["RestartHistory", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How ``fleet up`` restarts a process that exits when it should not.

    ``max_restarts`` 0 turns restarting off: the first exit stops the fleet.
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay_s <= self.max_delay_s:
            raise ConfigError(
                "restart delays must satisfy 0 < initial_delay_s <= max_delay_s, got "
                f"{self.initial_delay_s} and {self.max_delay_s}"
            )
        if self.max_restarts < 0 or self.window_s <= 0:
            raise ConfigError(
                f"max_restarts must be >= 0 and window_s > 0, got {self.max_restarts} "
                f"and {self.window_s}"
            )


class RestartHistory:
    """The restarts of one process: ``on_exit`` says how long to wait, or None: give up."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._restarts: deque[float] = deque()  # when each recent restart was decided
        self.total = 0

    def recent(self, now: float) -> int:
        """Restarts decided within the policy's window before ``now``."""
        while self._restarts and now - self._restarts[0] > self.policy.window_s:
            self._restarts.popleft()
        return len(self._restarts)

    def on_exit(self, now: float) -> float | None:
        """The process exited at ``now``: the delay before its restart, or None when it
        has used up its restarts within the window."""
        recent = self.recent(now)
        if recent >= self.policy.max_restarts:
            return None
        self._restarts.append(now)
        self.total += 1
        delay: float = min(self.policy.max_delay_s, self.policy.initial_delay_s * 2**recent)
        return delay
