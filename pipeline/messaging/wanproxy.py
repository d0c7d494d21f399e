"""A loopback TCP proxy that plays the WAN between a site and the hub.

It can add a one-way delay to every byte and cut the link (close every connection
and refuse new ones) until restored. Fault tests use it to partition a site, and
benchmarks use it to emulate a WAN round trip. It only listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["WanProxy"]

_CHUNK = 64 * 1024


class WanProxy:
    """Forward ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``.

    ``delay_s`` is added in each direction, so a round trip grows by twice that.
    """

    def __init__(self, target_port: int, *, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._cut = False

    @property
    def url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Drop the link: close every connection now and refuse new ones."""
        self._cut = True
        await self._close_links()

    def restore(self) -> None:
        """Let connections through again (the site reconnects by itself)."""
        self._cut = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._close_links()

    async def _close_links(self) -> None:
        links, self._links = self._links, set()
        for task in links:
            task.cancel()
        for task in links:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            async with asyncio.TaskGroup() as pipes:
                pipes.create_task(self._pipe(reader, upstream_writer))
                pipes.create_task(self._pipe(up_reader, writer))
        except (OSError, ExceptionGroup):
            pass  # either side went away: the link is down, as on a real WAN
        except asyncio.CancelledError:
            pass  # cut() or close(): this handler task is ours to end quietly
        finally:
            writer.close()
            if upstream_writer is not None:
                upstream_writer.close()
            self._links.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Chunks keep their order; each is released delay_s after it was read.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=256)

        async def release() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(release())
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((time.monotonic() + self.delay_s, data))
                if not data:
                    return
