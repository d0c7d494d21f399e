"""The lifecycle every long-running part of hybridfleet shares.

``start()`` opens (connects, declares, subscribes) and starts the service's tasks in
one ``asyncio.TaskGroup``: if one fails, the others are cancelled and ``wait()``
raises what failed. ``drain()`` stops taking work, lets the tasks finish what was
accepted, then closes; ``close()`` stops at once. Both are idempotent, and
``async with`` drains on a clean exit and closes on an error. A service dropped while
running warns with ``ResourceWarning``. Constructors do no I/O: what a service needs
is passed in, and ``from_settings`` factories build the real parts.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import warnings
from types import TracebackType
from typing import Self

__all__ = ["Service"]


class Service(abc.ABC):
    """Subclasses implement ``_open``, ``_spawn`` and ``_release``; ``_stop_taking``
    (what ``drain`` does first) is optional."""

    _runner: asyncio.Task[None] | None = None
    _draining: bool = False
    _closed: bool = False

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Names the service in task names and messages."""

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and prepare; runs once, in ``start``."""

    @abc.abstractmethod
    def _spawn(self, tasks: asyncio.TaskGroup) -> None:
        """Create the service's tasks in ``tasks``."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Free what ``_open`` took (connections, threads); runs once, in ``close``."""

    async def _stop_taking(self) -> None:  # noqa: B027 - optional hook
        """Stop accepting new work; the tasks then finish and return."""

    async def start(self) -> None:
        if self._runner is not None:
            return
        await self._open()
        self._runner = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._spawn(tasks)

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._closed

    async def wait(self) -> None:
        """Return when the service has stopped; raise what stopped it, if anything did."""
        if self._runner is not None:
            await self._runner

    async def drain(self) -> None:
        """Stop taking work, finish what was accepted, then close."""
        if self._closed or self._draining:
            return
        self._draining = True
        await self._stop_taking()
        if self._runner is not None:
            await self._runner
        await self.close()

    async def close(self) -> None:
        """Stop now."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await self._release()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.drain()
        else:
            await self.close()

    def __del__(self) -> None:
        if self._runner is not None and not self._closed:
            warnings.warn(f"unclosed {self!r}: call drain() or close()", ResourceWarning, 2)
