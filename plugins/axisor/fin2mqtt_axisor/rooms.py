"""The connection's conversation with the server: replies, rooms, and our own send budget.

Replies carry no request id, and a fast server answers before a waiter registered after
``send`` would see it: ``Provider.control`` (which sees every frame first, in order) posts the
control frames to a ``Mailbox`` that the hooks read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import JsonValue

from bridge.api import Connection, RateLimiter, TransportFailure
from fin2mqtt_axisor.parse import RATE_LIMITED, error_code


class Mailbox:
    """Control frames of the current connection, for the hooks that wait on them."""

    def __init__(self, size: int = 256) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)

    def reset(self) -> None:
        """A new connection: what the old one said no longer answers anything."""
        while not self._queue.empty():
            self._queue.get_nowait()

    def post(self, frame: dict[str, Any]) -> None:
        """Called from ``control``; the oldest frame goes when nobody reads (unsolicited ones)."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def next(self, match: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> Any:
        """The first frame ``match`` accepts (earlier ones are dropped); TransportFailure after
        ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not match(frame := await self._queue.get()):
                    pass
        except TimeoutError:
            raise TransportFailure(f"no {what} within {timeout:g} s") from None
        return frame


class SendBudget:
    """Every message we send, within ``count`` per ``window`` seconds, across reconnects.

    After ``RATE_LIMIT_EXCEEDED`` nothing is sent for a whole window.
    """

    def __init__(self, count: int, window: float) -> None:
        self.window = window
        self.limiter = RateLimiter([(count, window)])
        self.paused_until = 0.0
        self.pauses = 0

    def pause(self) -> None:
        """The server says we sent too much: stay silent for a window."""
        self.paused_until = time.monotonic() + self.window
        self.pauses += 1

    async def send(self, conn: Connection, message: JsonValue) -> None:
        """Send once the budget allows it."""
        # a deadline that a new RATE_LIMIT_EXCEEDED may move on, not an event to wait for
        while (wait := self.paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        await self.limiter.acquire()
        await conn.send(message)


def is_error(frame: dict[str, Any], *codes: str) -> bool:
    """An ``error`` frame with one of ``codes`` (either shape)."""
    return frame.get("type") == "error" and error_code(frame) in codes


def room_reply(room: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the answer to subscribing to ``room``: its reply, or the errors that answer it."""

    def match(frame: dict[str, Any]) -> bool:
        if frame.get("type") == "room_subscription":
            return frame.get("channel") == room
        named = frame.get("channel")  # an error that names another room answers another request
        return is_error(frame, "INVALID_ROOM", RATE_LIMITED) and named in (None, room)

    return match


def listed_rooms(frame: dict[str, Any]) -> list[str] | None:
    """The rooms a ``list_rooms`` answer names (``subscribedRooms`` or ``rooms``), if it is one."""
    if frame.get("type") not in ("room_list", "rooms", "room_subscription"):
        return None
    rooms = frame.get("subscribedRooms", frame.get("rooms"))
    return [str(r) for r in rooms] if isinstance(rooms, list) else None


class RefusedRooms:
    """Rooms the server called ``INVALID_ROOM``: not asked for again before ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self._since: dict[str, float] = {}

    def refuse(self, room: str) -> bool:
        """Record a refusal; True the first time (report it), False for a repeat."""
        first = room not in self._since
        self._since[room] = time.monotonic()
        return first

    def accept(self, room: str) -> None:
        """The room works (again)."""
        self._since.pop(room, None)

    def to_ask(self, rooms: Iterable[str]) -> list[str]:
        """The rooms worth asking for now."""
        now, since = time.monotonic(), self._since
        return [r for r in rooms if r not in since or now - since[r] >= self.retry_after]

    @property
    def refused(self) -> list[str]:
        """Rooms currently refused."""
        return sorted(self._since)
