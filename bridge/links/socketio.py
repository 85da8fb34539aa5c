"""A Socket.IO link (python-socketio's AsyncClient) with the core's one reconnect loop.

The library's own reconnection is off (``reconnection=False``): our loop also covers what it does
not, such as a namespace disconnect initiated by the server. A new client is made for each
attempt, ``auth`` is computed per attempt (fresh token), SIGINT is left to the daemon, and
``Provider.on_connect`` runs on every connect, so subscriptions are restored each time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import socketio
import socketio.packet
from pydantic import JsonValue

from bridge.links.reconnect import RetryPolicy, session_failure
from bridge.links.session import LinkContext, SessionLink, Waiters, process_forever
from bridge.links.socketio_options import OverflowPolicy, SocketIOEndpoint, SocketIOOptions
from bridge.model.errors import AuthFailure, LinkFailure, TransportFailure
from bridge.plugin.provider import Provider


class _DecimalJson:
    """The JSON module the client decodes packets with: floats become ``Decimal``."""

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, default=str, **kwargs)

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        return json.loads(text, parse_float=Decimal, **kwargs)


class _DecimalPacket(socketio.packet.Packet):  # type: ignore[misc]
    """Packets of our clients only (``json=`` would change the class every client shares)."""

    json = _DecimalJson


class FrameQueue:
    """The bounded queue between python-socketio's handlers and ``parse``, with its policy.

    Handlers are synchronous and never wait: each message's task ends at once, none pile up.
    """

    def __init__(self, size: int, policy: OverflowPolicy, ended: asyncio.Event) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self.policy = policy
        self.dropped = 0
        self.overflowed = False
        self._ended = ended

    def put(self, frame: Any) -> None:
        """Queue a frame; when full, apply the policy."""
        if self.overflowed:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.policy == "drop_oldest":
                self.queue.get_nowait()
                self.queue.put_nowait(frame)
            else:
                self.overflowed = True
                self._ended.set()


class SocketIOConnection:
    """One connected client as the provider's hooks see it."""

    def __init__(
        self,
        client: socketio.AsyncClient,
        namespace: str,
        account: str | None,
        timeout: float,
        waiters: Waiters,
        frames: FrameQueue,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.account = account
        self.timeout = timeout
        self.data: dict[str, Any] = {}
        self.ready = False
        self.waiters = waiters
        self.frames = frames

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
        """Emit with an acknowledgement and return its data (Socket.IO matches it by ack id).

        With ``deliver_reply`` the reply also goes to ``parse`` as
        ``{"event": <the request's event>, "data": <reply>, "ack": True}``, queued the moment it
        arrives, so in order with the frames around it.
        """
        event = str(message["event"])
        wait = self.timeout if timeout is None else timeout
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def answered(*args: Any) -> None:
            reply = args[0] if len(args) == 1 else list(args)
            if deliver_reply:
                self.frames.put({"event": event, "data": reply, "ack": True})
            if not future.done():
                future.set_result(reply)

        try:
            await self.client.emit(
                event, message.get("data"), namespace=self.namespace, callback=answered
            )
        except socketio.exceptions.SocketIOError as exc:
            raise TransportFailure(f"cannot call {event}: {type(exc).__name__}: {exc}") from exc
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            raise TransportFailure(f"no acknowledgement of {event} within {wait:g} s") from None


class SocketIOLink(SessionLink):
    """Holds one Socket.IO namespace connection forever; every event goes to ``deliver``."""

    def __init__(
        self,
        ctx: LinkContext,
        provider: Provider[Any],
        endpoint: Callable[[], Awaitable[SocketIOEndpoint]],
        *,
        options: SocketIOOptions | None = None,
        retry: RetryPolicy | None = None,
        on_failure: Callable[[LinkFailure], None] | None = None,
    ) -> None:
        self.options = options or SocketIOOptions()
        super().__init__(
            ctx,
            provider,
            retry=retry or RetryPolicy(),
            stop_timeout=self.options.stop_timeout,
            label="socket.io",
            on_failure=on_failure,
        )
        self.endpoint = endpoint

    async def _close_transport(self, conn: SocketIOConnection) -> None:
        await conn.client.disconnect()

    async def _session(self) -> None:
        target = await self.endpoint()
        self.reconnector.dialing()
        ns = target.namespace
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        client.packet_class = _DecimalPacket
        ended = asyncio.Event()
        frames = FrameQueue(self.options.queue_size, self.options.overflow, ended)
        failed: list[LinkFailure] = []
        refused: list[Any] = []
        waiters = Waiters()
        control = self.provider.control

        def on_event(event: str, *args: Any) -> None:
            # synchronous on purpose: python-socketio runs every message in a task of its own,
            # and a handler that never waits lets that task end at once (nothing piles up)
            frame = {"event": event, "data": args[0] if len(args) == 1 else list(args)}
            waiters.offer(frame)
            try:
                control(frame)
            except LinkFailure as exc:
                failed.append(exc)
                ended.set()
                return
            frames.put(frame)

        def on_connect_error(*data: Any) -> None:
            refused.append(data[0] if data else None)

        def on_disconnect(reason: Any = None) -> None:
            ended.set()

        client.on("*", on_event, namespace=ns)
        client.on("connect_error", on_connect_error, namespace=ns)
        client.on("disconnect", on_disconnect, namespace=ns)
        await self._connect(client, target, refused)
        if self.reconnector.closing.is_set():  # close() came while we were connecting
            await client.disconnect()
            return
        conn = SocketIOConnection(
            client, ns, self.account, self.options.request_timeout, waiters, frames
        )
        self._conn = conn
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(process_forever(frames.queue, self.ctx.deliver), name="sio-process")
                tg.create_task(self._hooks(conn), name="sio-hooks")
                tg.create_task(_until(ended, failed, frames), name="sio-disconnect")
        except BaseExceptionGroup as group:
            raise session_failure(group) from None
        finally:
            while not frames.queue.empty():
                self.ctx.deliver(frames.queue.get_nowait())
            waiters.fail("connection closed")
            self._conn = None
            if client.connected:
                await client.disconnect()

    async def _connect(
        self, client: socketio.AsyncClient, target: SocketIOEndpoint, refused: list[Any]
    ) -> None:
        ns = target.namespace
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
                raise AuthFailure(f"namespace {ns} refused: {reason}") from exc
            raise TransportFailure(f"cannot connect: {exc}") from exc


async def _until(ended: asyncio.Event, failed: list[LinkFailure], frames: FrameQueue) -> None:
    await ended.wait()
    if failed:
        raise failed[0]
    if frames.overflowed:
        raise TransportFailure(
            f"more than {frames.queue.maxsize} frames waiting for parse: reconnecting for a "
            "fresh snapshot"
        )
    raise TransportFailure("disconnected by the server")


def _message(data: Any) -> str:
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)
