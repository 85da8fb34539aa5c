"""What the connection-holding links share: the reconnect loop, the hooks, a clean close."""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bridge.links.reconnect import Reconnector, RetryPolicy, StateReport
from bridge.model.errors import LinkFailure, TransportFailure
from bridge.plugin.provider import Connection, Link, Provider

log = logging.getLogger(__name__)

T = TypeVar("T")


PROCESS_BATCH = 256
"""Frames handled per turn of the event loop. One per turn would give ingestion a tiny share of
the loop next to the publisher: the backlog would then pile up in TCP, where it delays the
upstream's pongs until the keepalive kills the connection (1011)."""


async def process_forever(
    queue: asyncio.Queue[T],
    handle: Callable[[T], None],
    room: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Hand queued frames to ``handle``, up to ``PROCESS_BATCH`` per turn of the loop.

    With ``room``, each frame waits for it first (the broker keeps up): a link that can leave
    frames unread in its connection passes it, so a burst waits there, not in memory. Socket.IO
    cannot (python-socketio runs every message's handler at once), so it does not.
    """
    while True:
        if room is not None:
            await room()  # returns at once unless the broker is behind
        handle(await queue.get())  # suspends only while the queue is empty
        for _ in range(PROCESS_BATCH - 1):
            if queue.empty():
                break
            if room is not None:
                await room()
            handle(queue.get_nowait())
        else:
            await asyncio.sleep(0)  # a full batch: the loop's other tasks (the publisher) run


class Waiters:
    """Frames a connection's hooks wait for (``Connection.expect``); offered every frame."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Callable[[Any], bool], asyncio.Future[Any]]] = []

    async def expect(self, match: Callable[[Any], bool], timeout: float, what: str) -> Any:
        """The first frame ``match`` accepts from now on; TransportFailure after ``timeout``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry = (match, future)
        self._waiting.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TransportFailure(f"no {what} within {timeout:g} s") from None
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    def offer(self, frame: Any) -> None:
        """Resolve the waiters ``frame`` matches (the frame is delivered as usual too)."""
        if not self._waiting:
            return
        for match, future in list(self._waiting):
            if not future.done() and match(frame):
                future.set_result(frame)

    def fail(self, reason: str) -> None:
        """The connection is gone: every waiter fails."""
        for _, future in self._waiting:
            if not future.done():
                future.set_exception(TransportFailure(reason))
        self._waiting.clear()


class LinkContext(StateReport, Protocol):
    """What the core gives one connection's link: frames go to ``deliver``, state to ``report``."""

    @property
    def account(self) -> str | None:
        """The connection's account."""
        ...

    def deliver(self, frame: Any) -> None:
        """Hand one frame to ``parse`` and publish what it yields."""
        ...

    def room(self) -> Awaitable[None]:
        """Return once more frames may be delivered (the broker keeps up with the events)."""
        ...


class OpenConnection(Connection, Protocol):
    """A connection a session link holds; ``ready`` once ``on_connect`` succeeded."""

    ready: bool


class SessionLink(Link):
    """A link that runs one connection session at a time under the shared ``Reconnector``.

    Subclasses implement ``_session`` (open, run, end with a LinkFailure) and
    ``_close_transport``; they set ``self._conn`` while a connection is open.
    """

    def __init__(
        self,
        ctx: LinkContext,
        provider: Provider[Any],
        *,
        retry: RetryPolicy,
        stop_timeout: float,
        label: str,
        on_failure: Callable[[LinkFailure], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.provider = provider
        self.account = ctx.account
        self.stop_timeout = stop_timeout
        self.reconnector = Reconnector(
            ctx, retry, label=f"{provider.name} {label}", on_failure=on_failure
        )
        self._conn: OpenConnection | None = None

    async def run(self) -> None:
        """Connect and reconnect until ``close``."""
        await self.reconnector.run(self._session)

    async def close(self) -> None:
        """Let the provider say goodbye (``on_stop``), then close the connection."""
        self.reconnector.close()
        conn = self._conn
        if conn is None:
            return
        if conn.ready:
            try:
                await asyncio.wait_for(self.provider.on_stop(conn), self.stop_timeout)
            except Exception as exc:  # noqa: BLE001 - a failed goodbye must not block shutdown
                log.warning("%s: clean stop failed: %s", self.provider.name, exc)
        await self._close_transport(conn)

    @abstractmethod
    async def _session(self) -> None:
        """One connection, from opening to its end (raise the LinkFailure that ended it)."""

    @abstractmethod
    async def _close_transport(self, conn: Any) -> None:
        """Close the open connection."""

    async def _hooks(self, conn: OpenConnection) -> None:
        """``on_connect``, then ``keepalive`` on its interval, for as long as the session lasts."""
        await self.provider.on_connect(conn)
        conn.ready = True
        self.reconnector.connected()
        interval = self.provider.keepalive_interval
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval)
            await self.provider.keepalive(conn)
