"""A WebSocket link (websockets): handshake per attempt, hooks, id-matched requests, keepalive.

One connection at a time, in a session of three tasks:

- the receive loop only decodes frames, settles replies to pending requests (so a keepalive
  reply never waits behind a backlog) and puts the rest in a bounded queue; while that queue
  is full it reads nothing, and a request's timeout does not run out meanwhile (a reply unread
  behind our own backlog is not a dead upstream, and reconnecting would lose the backlog);
- the process loop hands queued frames to ``ProviderContext.deliver`` (parse, hub);
- the hook task runs ``Provider.on_connect`` and then ``Provider.keepalive`` on its interval.

Every connection has a generation number: when a session ends its queued frames are delivered
before the next connection opens, and a frame of an older generation is never processed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import JsonValue
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)

from bridge.links.reconnect import RetryPolicy, session_failure
from bridge.links.session import LinkContext, SessionLink, Waiters, process_forever
from bridge.model.errors import (
    AuthFailure,
    LinkFailure,
    TransportFailure,
    UpstreamConfigFailure,
)
from bridge.plugin.provider import Provider


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect, computed for every attempt (so a fresh token is used)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebSocketOptions:
    """Tuning of a WebSocket link; the defaults suit a real upstream."""

    request_id_field: str = "id"
    """Field of a request (and its reply) that carries the request id."""
    request_timeout: float = 10.0
    queue_size: int = 1_000
    """Frames decoded and waiting for processing; when full the receive loop waits and the
    rest waits, undecoded, in the socket (backpressure: decoded frames cost ~1 kB each)."""
    max_size: int = 2**22
    """Largest frame accepted (bytes)."""
    compression: str | None = None
    """``"deflate"`` where the upstream needs it; off by default (twice the receive speed)."""
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    """Protocol-level pings sent by websockets; None when the server pings (IBEX)."""
    ping_timeout: float | None = 20.0
    stop_timeout: float = 2.0
    """Time the provider's ``on_stop`` hook gets on a clean shutdown."""


_DECODER = json.JSONDecoder(parse_float=Decimal)
"""One decoder for every frame (``json.loads`` with an argument builds a new one per call)."""


def decode(message: str | bytes) -> Any:
    """A text or binary frame as JSON data (floats as Decimal), or as it came if it is not JSON."""
    try:
        if isinstance(message, str):
            try:  # the common case without the two whitespace scans of ``decode`` (~0.35 µs)
                data, end = _DECODER.raw_decode(message)
            except ValueError:
                return _DECODER.decode(message)  # leading whitespace, or not JSON
            return data if end == len(message) else _DECODER.decode(message)
        return _DECODER.decode(message.decode(json.detect_encoding(message), "surrogatepass"))
    except ValueError:  # UnicodeDecodeError too
        return message


def failure_from_close(
    exc: ConnectionClosed, codes: Mapping[int, type[LinkFailure]]
) -> LinkFailure:
    """The failure a close frame means, using the provider's close-code table."""
    frame = exc.rcvd
    code = frame.code if frame is not None else 1006
    reason = frame.reason if frame is not None else "connection lost without a close frame"
    kind = codes.get(code, TransportFailure)
    return kind(f"closed by server: {code} {reason}".rstrip())


def failure_from_status(exc: InvalidStatus) -> LinkFailure:
    """The failure a refused handshake means."""
    status = exc.response.status_code
    text = f"handshake refused: HTTP {status}"
    if status in (401, 403):
        return AuthFailure(text)
    if 400 <= status < 500 and status not in (408, 429):
        return UpstreamConfigFailure(text)
    return TransportFailure(text)


FAILED_CLOSE_TIMEOUT = 0.5
"""Seconds a failed connection (no reply to a ping, an expired key, …) has to answer our close.
A silent upstream (a zombie socket) would otherwise hold the session, and the link topic at
``connected``, for websockets' default 10 s after the failure was noticed."""


class WebSocketConnection:
    """One open socket as the provider's hooks see it (``bridge.api.Connection``)."""

    def __init__(
        self,
        ws: ClientConnection,
        generation: int,
        account: str | None,
        options: WebSocketOptions,
        ids: itertools.count[int],
        queue: asyncio.Queue[tuple[int, Any]],
    ) -> None:
        self.ws = ws
        self.generation = generation
        self.account = account
        self.options = options
        self.close_codes: Mapping[int, type[LinkFailure]] = {}
        """The provider's close-code table (set by the link)."""
        self.data: dict[str, Any] = {}
        """Per-connection state of the provider's hooks (e.g. a listen key)."""
        self.ready = False
        self._ids = ids
        self._queue = queue
        self._pending: dict[str, tuple[asyncio.Future[Any], bool]] = {}
        self.waiters = Waiters()
        self.backlogged = False
        """True while the receive loop waits for room in the full queue (reads nothing)."""
        self.backlog_ended = 0.0
        """Loop time the receive loop last stopped waiting for room."""

    async def send(self, message: JsonValue) -> None:
        """Send one JSON message; a closed socket is a TransportFailure (not a bug of the hook)."""
        try:
            await self.ws.send(json.dumps(message, default=str))
        except ConnectionClosed as exc:
            raise failure_from_close(exc, self.close_codes) from exc

    async def request(
        self,
        message: dict[str, JsonValue],
        *,
        timeout: float | None = None,
        deliver_reply: bool = False,
    ) -> Any:
        """Send ``message`` with a fresh id (unless it has one) and wait for the reply with it.

        With ``deliver_reply`` the reply is also handed to ``parse``, in order with other frames.
        A reply that does not come in time is a TransportFailure.
        """
        key = self.options.request_id_field
        if message.get(key) is None:
            message = {**message, key: next(self._ids)}
        rid = str(message[key])
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = (future, deliver_reply)
        try:
            await self.send(message)
            wait = self.options.request_timeout if timeout is None else timeout
            while True:
                began = loop.time()
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait)
                except TimeoutError:
                    if self.backlogged or self.backlog_ended >= began:
                        continue  # the reply may wait, unread, behind a backlog of ours
                    what = message.get("method") or message.get("type") or "request"
                    raise TransportFailure(f"no reply to {what} {rid} within {wait:g} s") from None
        finally:
            self._pending.pop(rid, None)

    async def expect(
        self, match: Callable[[Any], bool], *, timeout: float, what: str = "reply"
    ) -> Any:
        """The first incoming frame ``match`` accepts (it is still delivered to ``parse``)."""
        return await self.waiters.expect(match, timeout, what)

    def settle(self, frame: Any) -> bool:
        """If ``frame`` answers a pending request, resolve it; True when it did."""
        if not isinstance(frame, dict) or not self._pending:
            return False
        rid = frame.get(self.options.request_id_field)
        if rid is None:
            return False
        entry = self._pending.get(str(rid))
        if entry is None:
            return False
        future, deliver = entry
        if not future.done():
            future.set_result(frame)
        if deliver:
            self._queue.put_nowait((self.generation, frame))
        return True

    def fail_pending(self, reason: str) -> None:
        """The socket is gone: every waiting request fails."""
        self.waiters.fail(reason)
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(TransportFailure(reason))
        self._pending.clear()


class WebSocketLink(SessionLink):
    """Holds one WebSocket connection to an upstream forever, the way every plugin needs it."""

    def __init__(
        self,
        ctx: LinkContext,
        provider: Provider[Any],
        endpoint: Callable[[], Awaitable[Endpoint]],
        *,
        options: WebSocketOptions | None = None,
        retry: RetryPolicy | None = None,
        renew: Callable[[], Awaitable[str]] | None = None,
        on_failure: Callable[[LinkFailure], None] | None = None,
    ) -> None:
        """``renew``, when given, returns (with a reason) when the connection should be renewed."""
        self.options = options or WebSocketOptions()
        super().__init__(
            ctx,
            provider,
            retry=retry or RetryPolicy(),
            stop_timeout=self.options.stop_timeout,
            label="websocket",
            on_failure=on_failure,
        )
        self.endpoint = endpoint
        self.renew = renew
        self.generation = 0
        self.stale_frames = 0
        self._ids = itertools.count(1)

    async def _close_transport(self, conn: WebSocketConnection) -> None:
        await conn.ws.close()

    async def _session(self) -> None:
        target = await self.endpoint()
        self.reconnector.dialing()
        o = self.options
        try:
            ws = await connect(
                target.url,
                additional_headers=dict(target.headers),
                max_size=o.max_size,
                compression=o.compression,
                open_timeout=o.open_timeout,
                ping_interval=o.ping_interval,
                ping_timeout=o.ping_timeout,
                max_queue=64,
            )
        except InvalidStatus as exc:
            raise failure_from_status(exc) from exc
        except InvalidURI as exc:
            raise UpstreamConfigFailure(f"invalid URL {target.url!r}: {exc}") from exc
        except InvalidHandshake as exc:  # e.g. InvalidMessage: the server hung up mid-handshake
            raise TransportFailure(f"handshake failed: {_describe(exc)}") from exc
        except WebSocketException as exc:
            raise TransportFailure(f"cannot connect: {_describe(exc)}") from exc
        except TimeoutError as exc:
            raise TransportFailure(f"no handshake within {o.open_timeout:g} s") from exc
        except OSError as exc:
            raise TransportFailure(f"cannot connect: {_describe(exc)}") from exc
        if self.reconnector.closing.is_set():  # close() came while we were connecting
            await ws.close()
            return
        self.generation += 1
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(o.queue_size)
        conn = WebSocketConnection(ws, self.generation, self.account, o, self._ids, queue)
        conn.close_codes = getattr(self.provider, "close_codes", {})
        self._conn = conn
        try:
            async with ws:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._receive(conn, queue), name="ws-receive")
                        tg.create_task(
                            process_forever(queue, self._deliver_item, self.ctx.room),
                            name="ws-process",
                        )
                        tg.create_task(self._hooks(conn), name="ws-hooks")
                        if self.renew is not None:
                            tg.create_task(self._renew(self.renew), name="ws-renew")
                except (BaseExceptionGroup, asyncio.CancelledError):
                    # failed, or cancelled past the stop budget: an upstream whose close frame
                    # sits behind a backlog we no longer read would hold the stop for 10 s
                    ws.close_timeout = FAILED_CLOSE_TIMEOUT
                    raise
        except BaseExceptionGroup as group:
            raise session_failure(group) from None
        finally:
            conn.fail_pending("connection closed")
            self._drain(queue)
            self._conn = None

    async def _receive(
        self, conn: WebSocketConnection, queue: asyncio.Queue[tuple[int, Any]]
    ) -> None:
        codes = getattr(self.provider, "close_codes", {})
        control = self.provider.control
        try:
            while True:
                frame = decode(await conn.ws.recv())
                if conn.settle(frame):
                    continue
                conn.waiters.offer(frame)
                control(frame)
                if not queue.full():
                    queue.put_nowait((conn.generation, frame))
                    continue
                conn.backlogged = True  # a slow consumer: what is unread is not overdue
                try:
                    await queue.put((conn.generation, frame))
                finally:
                    conn.backlogged = False
                    conn.backlog_ended = asyncio.get_running_loop().time()
        except ConnectionClosed as exc:
            raise failure_from_close(exc, codes) from None

    def _deliver_item(self, item: tuple[int, Any]) -> None:
        self._deliver(*item)

    def _deliver(self, generation: int, frame: Any) -> None:
        if generation != self.generation:
            self.stale_frames += 1
            return
        self.ctx.deliver(frame)

    def _drain(self, queue: asyncio.Queue[tuple[int, Any]]) -> None:
        """Deliver what the ended connection received, before any newer frame."""
        while not queue.empty():
            generation, frame = queue.get_nowait()
            self._deliver(generation, frame)

    async def _renew(self, renew: Callable[[], Awaitable[str]]) -> None:
        reason = await renew()
        raise TransportFailure(f"renewing the connection: {reason}")


def _describe(exc: BaseException) -> str:
    """``Type: message``, with the cause's message when the error itself says little."""
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({type(cause).__name__}: {cause})"
    return text


__all__ = [
    "Endpoint",
    "WebSocketConnection",
    "WebSocketLink",
    "WebSocketOptions",
]
