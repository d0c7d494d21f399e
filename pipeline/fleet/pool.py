"""The ``hybridfleet`` processes of a fleet: start, restart after a crash, replace, stop.

``ProcessPool`` holds the workers and camera simulators that ``FleetLauncher`` started.
``supervise()`` restarts one that exits when it should not, after the backoff of its
``RestartHistory``; ``replace()`` starts a process beside a running one and stops the
old one only once the new one has subscribed (a rolling restart). The pool knows the
servers only through ``servers_of``, which says where a worker's connection shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.fleet.procs import (
    POLL_S,
    Child,
    FleetMember,
    connection_ids,
    popen_hybridfleet,
    worker_ready,
)
from pipeline.fleet.supervisor import RestartHistory, RestartPolicy
from pipeline.messaging.server import NatsServer
from schemas.errors import HybridfleetError

__all__ = ["DRAIN_TIMEOUT_S", "READY_TIMEOUT_S", "ProcessPool"]

READY_TIMEOUT_S = 60.0  # worker start includes loading onnxruntime on a busy machine
DRAIN_TIMEOUT_S = 30.0  # an edge worker waits for its escalations' deadlines


@dataclass(eq=False)
class ProcessPool:
    """The fleet's ``hybridfleet`` subprocesses (``children``), in start order."""

    workdir: Path  # where each process's log goes
    policy: RestartPolicy
    # Where a worker's connection shows up: the servers to ask whether it is ready.
    servers_of: Callable[[FleetMember], list[NatsServer]]
    say: Callable[[str], None]  # prints a progress line
    changed: Callable[[], None]  # a pid or port changed (the launcher rewrites fleet.json)
    children: list[Child] = field(default_factory=list, init=False)
    # Replaced by a rolling restart, still draining.
    _retiring: list[Child] = field(default_factory=list, init=False)
    _histories: dict[str, RestartHistory] = field(default_factory=dict, init=False)
    _background: set[asyncio.Task[Any]] = field(default_factory=set, init=False)

    @property
    def members(self) -> list[FleetMember]:
        return [child.member for child in self.children]

    def start(
        self,
        name: str,
        role: str,
        site: str,
        worker: str,
        args: list[str],
        env: dict[str, str],
        *,
        url: str,
        metrics_port: int = 0,
        add: bool = True,
    ) -> Child:
        """Start ``hybridfleet ARGS``; ``url`` is its server's URL without credentials."""
        log_path = self.workdir / f"{name}.log"
        proc = popen_hybridfleet(args, env, log_path)
        member = FleetMember(
            name=name,
            role=role,
            pid=proc.pid,
            url=url,
            log=str(log_path),
            site=site,
            worker=worker,
            metrics_port=metrics_port,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics" if metrics_port else "",
        )
        child = Child(member, proc, args, env)
        if add:
            self.children.append(child)
        return child

    def connections(self, child: Child) -> set[int]:
        """The connection ids of ``child``'s worker id now (to tell a new one apart)."""
        return connection_ids(self.servers_of(child.member), child.member.worker)

    async def wait_ready(self, child: Child, old: Collection[int] = ()) -> None:
        """Until a connection of ``child``'s worker not in ``old`` has subscribed."""
        m = child.member
        ready = partial(worker_ready, m.role, self.servers_of(m), m.site, m.worker, old)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await asyncio.to_thread(ready):
            code = child.proc.poll()
            if code is not None:
                raise HybridfleetError(
                    f"{m.name} exited with {code} while starting; log {m.log}:\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise HybridfleetError(
                    f"{m.name} did not start within {READY_TIMEOUT_S:g} s; log {m.log}"
                )
            await asyncio.sleep(POLL_S)

    # ------------------------------------------------------------------ crashes

    def supervise(self) -> str | None:
        """Restart what exited when it should not; say which process keeps failing
        (None: none does). Call it every half second or so."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._respawn(child)
                continue
            code = child.proc.poll()
            if code is None or child.finished:
                continue
            name, pid = child.member.name, child.member.pid
            if child.may_finish and code == 0:
                child.finished = True
                self.say(f"{name} finished")
                continue
            history = self._histories.setdefault(name, RestartHistory(self.policy))
            delay = history.on_exit(now)
            if delay is None:
                return (
                    f"{name} (pid {pid}) exited with {code}, and it was restarted "
                    f"{self.policy.max_restarts} times within {self.policy.window_s:g} s "
                    f"already; log {child.member.log}:\n{child.tail()}"
                )
            child.restart_at = now + delay
            self.say(
                f"{name} (pid {pid}) exited with {code}; restart {history.total} "
                f"in {delay:g} s (log {child.member.log})"
            )
        return None

    def _respawn(self, child: Child) -> None:
        """Start a crashed process again, with the same arguments, port and id."""
        old = set() if child.member.role == "camera" else self.connections(child)
        child.proc = popen_hybridfleet(child.args, child.env, Path(child.member.log))
        child.restart_at = None
        child.member = replace(child.member, pid=child.proc.pid, restarts=child.member.restarts + 1)
        self.changed()
        self.say(f"{child.member.name} restarted (pid {child.member.pid})")
        if child.member.role != "camera":
            task = asyncio.create_task(self._announce_ready(child, old))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _announce_ready(self, child: Child, old: set[int]) -> None:
        try:
            await self.wait_ready(child, old)
        except HybridfleetError as exc:
            # The next supervise() sees it exit; if it hangs instead, its log says why.
            self.say(f"{child.member.name} (pid {child.member.pid}) not ready: {exc}")
            return
        self.say(f"{child.member.name} (pid {child.member.pid}) ready again")

    # ------------------------------------------------------------------ replacing

    async def replace(self, old: Child, args: list[str], metrics_port: int) -> bool:
        """Start ``args`` beside ``old`` (same name, id and settings); once it has
        subscribed, SIGTERM ``old`` and wait while it drains. False, with ``old`` left
        running, when the new process does not start."""
        m = old.member
        before = self.connections(old)
        new = self.start(
            m.name, m.role, m.site, m.worker, args, old.env, url=m.url,
            metrics_port=metrics_port, add=False,
        )  # fmt: skip
        new.member = replace(new.member, restarts=m.restarts)
        try:
            await self.wait_ready(new, before)
        except BaseException as exc:
            new.proc.kill()
            await asyncio.to_thread(new.proc.wait)
            if isinstance(exc, HybridfleetError):
                self.say(f"replacing {m.name} failed: {exc}; pid {m.pid} keeps running")
                return False
            raise
        self.children[self.children.index(old)] = new
        self._retiring.append(old)
        self.changed()
        self.say(f"{m.name}: pid {new.member.pid} ready; SIGTERM to pid {m.pid}, which drains")
        old.proc.terminate()
        code = await self._wait_exit(old)
        self._retiring.remove(old)
        self.say(f"{m.name} pid {m.pid} stopped (exit {code})")
        return True

    # ------------------------------------------------------------------ stopping

    async def _wait_exit(self, child: Child) -> int:
        try:
            code: int = await asyncio.to_thread(child.proc.wait, DRAIN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            code = await asyncio.to_thread(child.proc.wait)
            self.say(f"{child.member.name} did not drain in {DRAIN_TIMEOUT_S:g} s: killed")
        return code

    async def cancel_background(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def stop_role(self, role: str) -> None:
        """SIGTERM every process of ``role`` at once, then wait for each (kill after 30 s)."""
        children = [c for c in self.children + self._retiring if c.member.role == role]
        for child in children:
            if child.proc.poll() is None:
                child.proc.terminate()
        for child in children:
            code = await self._wait_exit(child)
            self.say(f"{child.member.name} stopped (exit {code})")
