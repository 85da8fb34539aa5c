"""A TCP proxy for fault injection between the daemon and a broker (or an upstream).

``stall()`` stops forwarding in both directions (a broker that accepts but never answers),
``resume()`` forwards again (held bytes first, at once), ``drop_all()`` cuts every
connection (both sides see it closed), and a close on one side is passed on to the other even
while stalled, so a peer that aborts its socket is seen as gone by the far end.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

CHUNK = 65_536


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``target``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0
        self.delay = 0.0
        """Seconds each chunk waits before it is forwarded (latency)."""
        self.rate: float | None = None
        """Bytes per second forwarded in each direction of each connection (None: unlimited)."""
        self._open = asyncio.Event()
        self._open.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: dict[asyncio.StreamWriter, list[bytes]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self) -> None:
        """Hold every byte from now on (connections stay open)."""
        self._open.clear()

    def resume(self) -> None:
        """Forward again, held bytes first."""
        self._open.set()
        for dst, held in self._held.items():
            if held and not dst.is_closing():
                dst.write(b"".join(held))
            held.clear()

    def drop_all(self) -> None:
        """Close every proxied connection, both sides."""
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst, (writer, up_writer)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        held = self._held.setdefault(dst, [])
        try:
            while data := await src.read(CHUNK):
                if not self._open.is_set():
                    held.append(data)  # keep reading: a close must still be noticed
                    continue
                if held:
                    data = b"".join((*held, data))
                    held.clear()
                if self.delay:
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
                if self.rate:
                    await asyncio.sleep(len(data) / self.rate)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._held.pop(dst, None)
            for w in pair:  # one side gone: the other sees it too
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()
