"""SIGTERM ends a camera run early, between two frames, instead of killing the process.

Every run in the main thread registers its stop event; the handler sets them all. It
is installed for the first run and removed with the last one, which puts the default
back. A process that handles SIGTERM itself keeps its own handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["stopped_by_sigterm"]

# The runs that SIGTERM stops: every simulator running in this process's main thread.
_SIGTERM_STOPS: set[asyncio.Event] = set()


@contextlib.contextmanager
def stopped_by_sigterm(stop: asyncio.Event) -> Iterator[bool]:
    """Within the block, SIGTERM sets ``stop``; yields False where it cannot (another
    thread than the main one, a process that handles SIGTERM itself, no signals)."""
    handled = _stop_on_sigterm(stop)
    try:
        yield handled
    finally:
        if handled:
            _release_sigterm(stop)


def _on_sigterm() -> None:
    for stop in _SIGTERM_STOPS:
        stop.set()


def _stop_on_sigterm(stop: asyncio.Event) -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    if _SIGTERM_STOPS:  # installed by a run still going on
        _SIGTERM_STOPS.add(stop)
        return True
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, _on_sigterm)
    except (NotImplementedError, RuntimeError):  # no signals on this platform or loop
        return False
    _SIGTERM_STOPS.add(stop)
    return True


def _release_sigterm(stop: asyncio.Event) -> None:
    _SIGTERM_STOPS.discard(stop)
    if not _SIGTERM_STOPS:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
