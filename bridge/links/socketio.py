"""A Socket.IO link (python-socketio's AsyncClient) with the core's one reconnect loop.

The library's own reconnection is off (``reconnection=False``): our loop also covers what it does
not, such as a namespace disconnect initiated by the server. A new client is made for each
attempt, ``auth`` is computed per attempt (fresh token), SIGINT is left to the daemon, and
``Provider.on_connect`` runs on every connect, so subscriptions are restored each time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import socketio
from pydantic import JsonValue

from bridge.api import Provider, ProviderContext
from bridge.errors import AuthFailure, TransportFailure
from bridge.links.reconnect import RetryPolicy, session_failure
from bridge.links.session import SessionLink, Waiters, process_forever


@dataclass(frozen=True, slots=True)
class SocketIOEndpoint:
    """Where and how to connect, computed for every attempt."""

    url: str
    namespace: str = "/"
    auth: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    socketio_path: str = "socket.io"


@dataclass(frozen=True, slots=True)
class SocketIOOptions:
    """Tuning of a Socket.IO link."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    queue_size: int = 10_000
    stop_timeout: float = 2.0


class SocketIOConnection:
    """One connected client as the provider's hooks see it."""

    def __init__(
        self,
        client: socketio.AsyncClient,
        namespace: str,
        account: str | None,
        timeout: float,
        waiters: Waiters,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.account = account
        self.timeout = timeout
        self.data: dict[str, Any] = {}
        self.ready = False
        self.waiters = waiters

    async def emit(self, event: str, data: JsonValue = None) -> None:
        """Emit one event on the link's namespace (a gone connection is a TransportFailure)."""
        try:
            await self.client.emit(event, data, namespace=self.namespace)
        except socketio.exceptions.SocketIOError as exc:
            raise TransportFailure(f"cannot emit {event}: {type(exc).__name__}: {exc}") from exc

    async def send(self, message: JsonValue) -> None:
        """Emit ``{"event": …, "data": …}`` (the shape ``deliver`` uses for incoming events)."""
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            raise ValueError('a Socket.IO message is {"event": name, "data": payload}')
        await self.emit(str(message["event"]), message.get("data"))

    async def expect(
        self, match: Callable[[Any], bool], *, timeout: float, what: str = "reply"
    ) -> Any:
        """The first incoming ``{"event", "data"}`` ``match`` accepts (still delivered)."""
        return await self.waiters.expect(match, timeout, what)

    async def request(
        self,
        message: dict[str, JsonValue],
        *,
        timeout: float | None = None,
        deliver_reply: bool = False,
    ) -> Any:
        """Emit with an acknowledgement and wait for it (Socket.IO's own request/response)."""
        wait = self.timeout if timeout is None else timeout
        try:
            return await self.client.call(
                str(message["event"]), message.get("data"), namespace=self.namespace, timeout=wait
            )
        except socketio.exceptions.TimeoutError:
            raise TransportFailure(
                f"no acknowledgement of {message['event']} within {wait:g} s"
            ) from None
        except socketio.exceptions.SocketIOError as exc:
            raise TransportFailure(
                f"cannot call {message['event']}: {type(exc).__name__}: {exc}"
            ) from exc


class SocketIOLink(SessionLink):
    """Holds one Socket.IO namespace connection forever; every event goes to ``deliver``."""

    def __init__(
        self,
        ctx: ProviderContext,
        provider: Provider[Any],
        endpoint: Callable[[], Awaitable[SocketIOEndpoint]],
        *,
        account: str | None = None,
        options: SocketIOOptions | None = None,
    ) -> None:
        self.options = options or SocketIOOptions()
        super().__init__(
            ctx,
            provider,
            account=account,
            retry=self.options.retry,
            stop_timeout=self.options.stop_timeout,
            label="socket.io",
        )
        self.endpoint = endpoint

    async def _close_transport(self, conn: SocketIOConnection) -> None:
        await conn.client.disconnect()

    async def _session(self) -> None:
        target = await self.endpoint()
        ns = target.namespace
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        queue: asyncio.Queue[Any] = asyncio.Queue(self.options.queue_size)
        ended = asyncio.Event()
        refused: list[Any] = []
        waiters = Waiters()

        async def on_event(event: str, *args: Any) -> None:
            data = args[0] if len(args) == 1 else list(args)
            frame = {"event": event, "data": data}
            waiters.offer(frame)
            await queue.put(frame)

        def on_connect_error(*data: Any) -> None:
            refused.append(data[0] if data else None)

        def on_disconnect(reason: Any = None) -> None:
            ended.set()

        client.on("*", on_event, namespace=ns)
        client.on("connect_error", on_connect_error, namespace=ns)
        client.on("disconnect", on_disconnect, namespace=ns)
        try:
            await client.connect(
                target.url,
                headers=dict(target.headers),
                auth=dict(target.auth) if target.auth is not None else None,
                transports=["websocket"],
                namespaces=[ns],
                socketio_path=target.socketio_path,
                wait_timeout=self.options.connect_timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            if client.failed_namespaces:
                reason = _message(refused[-1]) if refused else str(exc)
                raise AuthFailure(f"namespace {ns} refused: {reason}") from None
            raise TransportFailure(f"cannot connect: {exc}") from exc
        if self.reconnector.closing.is_set():  # close() came while we were connecting
            await client.disconnect()
            return
        conn = SocketIOConnection(client, ns, self.account, self.options.request_timeout, waiters)
        self._conn = conn
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(process_forever(queue, self.ctx.deliver), name="sio-process")
                tg.create_task(self._hooks(conn), name="sio-hooks")
                tg.create_task(_until(ended), name="sio-disconnect")
        except BaseExceptionGroup as group:
            raise session_failure(group) from None
        finally:
            while not queue.empty():
                self.ctx.deliver(queue.get_nowait())
            waiters.fail("connection closed")
            self._conn = None
            if client.connected:
                await client.disconnect()


async def _until(ended: asyncio.Event) -> None:
    await ended.wait()
    raise TransportFailure("disconnected by the server")


def _message(data: Any) -> str:
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)
