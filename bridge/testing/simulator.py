"""Bases for upstream simulators: real servers in-process on port 0, with fault injection.

A plugin's simulator subclasses ``WebSocketSimulator`` and implements ``session`` (what the
upstream does with one connected client). Tests, the benchmark and ``fin2mqtt demo`` use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

if TYPE_CHECKING:  # aiohttp is imported where a simulator serves HTTP
    from aiohttp import web


class _Simulator(ABC):
    """What every simulator shares: start/stop as a context manager, and waiting on its state."""

    def __init__(self) -> None:
        self.port = 0
        self._changed = asyncio.Event()

    @abstractmethod
    async def start(self) -> None:
        """Listen on a free port."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def changed(self) -> None:
        """Wake ``wait_until`` (call it when the simulator's state changes)."""
        self._changed.set()

    async def wait_until(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked whenever the simulator's state changes)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)


class WebSocketSimulator(_Simulator):
    """A WebSocket server on 127.0.0.1 (free port) that misbehaves on demand.

    Faults: ``reject_status`` (refuse the handshake), ``hang_up`` (cut TCP in the middle of
    the handshake), ``close_on_accept`` (accept, then close with a code), ``stalled`` (stop
    answering), ``drop_all`` (cut TCP without a close frame), ``close_all`` (close with a
    code), ``send_garbage``.
    """

    path = "/"

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0
        """Handshakes seen, including refused ones."""
        self.connects = 0
        """Connections accepted."""
        self.connections: set[ServerConnection] = set()
        self.subscribers: set[ServerConnection] = set()
        """Clients that authenticated or subscribed (``subscribe``): what ``broadcast`` reaches."""
        self.received: list[Any] = []
        self.reject_status: int | None = None
        self.close_on_accept: tuple[int, str] | None = None
        self.hang_up: Callable[[Request], bool] | bool = False
        """Hang up during the handshake (True, or for the requests the predicate picks)."""
        self._running = asyncio.Event()
        self._running.set()
        self._server: Server | None = None

    @property
    def stalled(self) -> bool:
        """True while the simulator neither reads nor answers (a hung upstream)."""
        return not self._running.is_set()

    @stalled.setter
    def stalled(self, value: bool) -> None:
        if value:
            self._running.clear()
        else:
            self._running.set()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port><path>``."""
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await serve(
            self._handler, "127.0.0.1", self.port, process_request=self._process_request
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def http_request(self, request: Request) -> Response | None:
        """Answer a plain HTTP request (an upstream's REST endpoints on the same host), or None
        to treat it as a WebSocket handshake. See ``json_response``."""
        return None

    def check_request(self, request: Request) -> tuple[int, str] | None:
        """Decide whether to accept a handshake: None, or ``(status, body)`` to refuse it."""
        return None

    async def session(self, ws: ServerConnection) -> None:
        """What the upstream does with one client; the default answers nothing."""
        await ws.wait_closed()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if "upgrade" not in request.headers.get("Connection", "").lower():
            answer = self.http_request(request)
            if answer is not None:
                self._changed.set()
                return answer
        self.attempts += 1
        self._changed.set()
        if self.hang_up is True or (callable(self.hang_up) and self.hang_up(request)):
            ws.transport.abort()  # the client reads EOF instead of an HTTP response
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "hung up\n")
        refusal = self.check_request(request)
        if refusal is None and self.reject_status is not None:
            refusal = (self.reject_status, HTTPStatus(self.reject_status).phrase)
        if refusal is None:
            return None
        status, body = refusal
        return ws.respond(status, body + "\n")

    async def _handler(self, ws: ServerConnection) -> None:
        self.connects += 1
        self.connections.add(ws)
        self._changed.set()
        try:
            if self.close_on_accept is not None:
                code, reason = self.close_on_accept
                await ws.close(code, reason)
                return
            await self.session(ws)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)
            self.subscribers.discard(ws)
            self._changed.set()

    async def recv_json(self, ws: ServerConnection) -> Any:
        """The next client message, decoded and recorded; waits while ``stalled``."""
        raw = await ws.recv()
        await self._running.wait()
        message = json.loads(raw)
        self.received.append(message)
        self._changed.set()
        return message

    async def send_json(self, ws: ServerConnection, message: Any) -> None:
        """Send one JSON message (unless ``stalled``)."""
        if not self.stalled:
            await ws.send(json.dumps(message))

    def subscribe(self, ws: ServerConnection) -> None:
        """Mark a client as authenticated/subscribed: ``broadcast`` reaches it from now on."""
        self.subscribers.add(ws)
        self._changed.set()

    async def broadcast(self, messages: Iterable[Any], *, everyone: bool = False) -> None:
        """Send messages to the subscribed clients (``everyone``: to every connected one).

        ``bytes`` go out as binary frames, anything else as JSON text.
        """
        messages = list(messages)
        for ws in list(self.connections if everyone else self.subscribers):
            for message in messages:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(message if isinstance(message, bytes) else json.dumps(message))

    async def send_binary(self, ws: ServerConnection, data: bytes) -> None:
        """Send one binary frame (unless ``stalled``)."""
        if not self.stalled:
            await ws.send(data)

    async def send_garbage(self) -> None:
        """A frame that is not JSON."""
        for ws in list(self.connections):
            with contextlib.suppress(ConnectionClosed):
                await ws.send("\x00this is not json{")

    async def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every connection with a close frame."""
        for ws in list(self.connections):
            await ws.close(code, reason)

    def drop_all(self) -> None:
        """Cut every connection's TCP stream: the client sees 1006, no close frame."""
        for ws in list(self.connections):
            ws.transport.abort()


class HttpSimulator(_Simulator):
    """An HTTP API (aiohttp) on 127.0.0.1, free port: for upstreams that speak REST only.

    Subclasses add routes to ``self.app`` in ``setup``; ``later`` runs what the upstream does
    afterwards (e.g. a webhook after a request) in a TaskGroup open while the simulator runs.
    """

    def __init__(self) -> None:
        from aiohttp import web

        super().__init__()
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.setup()

    def setup(self) -> None:
        """Register the upstream's routes on ``self.app``."""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port."""
        from aiohttp import web

        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._runner, self.port = await _serve(web.AppRunner(self.app, access_log=None), self.port)

    async def stop(self) -> None:
        """Stop listening and cancel the simulator's tasks."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._group is not None:
            group, self._group = self._group, None
            for task in self._tasks:
                task.cancel()
            await group.__aexit__(None, None, None)
            self._tasks.clear()

    def later(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the simulator's TaskGroup (cancelled when it stops)."""
        if self._group is None:
            work.close()
            raise RuntimeError("the simulator is not running")
        task = self._group.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class SocketIOSimulator(_Simulator):
    """A Socket.IO server (python-socketio on aiohttp) on 127.0.0.1, free port.

    Subclasses register handlers on ``self.sio`` in ``setup`` (namespace ``self.namespace``).
    """

    namespace = "/"

    def __init__(self) -> None:
        import socketio
        from aiohttp import web

        super().__init__()
        self.sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.connects = 0
        self.sids: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.setup()

    def setup(self) -> None:
        """Register the upstream's handlers on ``self.sio``."""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the client picks the WebSocket transport)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port."""
        from aiohttp import web

        self._runner, self.port = await _serve(web.AppRunner(self.app), self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def disconnect_all(self) -> None:
        """Disconnect every client from the namespace (the client does not reconnect by itself)."""
        for sid in list(self.sids):
            await self.sio.disconnect(sid, namespace=self.namespace)


async def _serve(runner: web.AppRunner, port: int) -> tuple[web.AppRunner, int]:
    """Start ``runner`` on 127.0.0.1 (``port`` 0: a free one); returns it and the port."""
    from aiohttp import web

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", port))
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


def text_response(status: int, text: str, content_type: str = "text/html") -> Response:
    """An HTTP response that is not JSON (e.g. a proxy's maintenance page)."""
    payload = text.encode()
    fields = Headers(
        {
            "Content-Type": f"{content_type}; charset=utf-8",
            "Content-Length": str(len(payload)),
            "Connection": "close",
        }
    )
    return Response(status, HTTPStatus(status).phrase, fields, payload)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """An HTTP response with a JSON body, closing the connection (websockets serves one request
    per connection)."""
    payload = json.dumps(body).encode()
    fields = Headers(
        {
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
            "Connection": "close",
            **(headers or {}),
        }
    )
    return Response(status, HTTPStatus(status).phrase, fields, payload)


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """What a plugin's ``fin2mqtt.simulators`` entry point returns for ``fin2mqtt demo``.

    ``settings`` gives the provider table (minus ``type``/``name``) once the simulator listens;
    ``drive`` is the simulated upstream's own activity (prices, fills…), run until cancelled.
    ``webhooks``, for an upstream that posts webhooks, is told the demo daemon's webhook server
    (``http://127.0.0.1:<port>``, a free port) before ``settings`` and ``drive`` are called.
    """

    simulator: WebSocketSimulator | SocketIOSimulator | HttpSimulator
    settings: Callable[[], dict[str, Any]]
    drive: Callable[[], Coroutine[Any, Any, None]] | None = None
    webhooks: Callable[[str], None] | None = None


class WebhookSender:
    """Posts webhooks like an upstream would: from a chosen source address (a loopback alias
    such as ``127.0.0.2``; Linux routes all of 127.0.0.0/8 to lo), or as if through a proxy."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, *, source: str | None = None
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.source = source
        self.sent = 0

    async def send(
        self,
        body: Any,
        *,
        forwarded_for: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str | None] | None = None,
        source: str | None = None,
    ) -> tuple[int, Any]:
        """POST ``body`` as JSON (or ``raw`` bytes); returns the status and the decoded answer.

        ``headers`` override the sender's (None removes one); ``source`` its source address.
        """
        import aiohttp

        merged: dict[str, str | None] = {
            "Content-Type": "application/json",
            **self.headers,
            **(headers or {}),
        }
        if forwarded_for is not None:
            merged["X-Forwarded-For"] = forwarded_for
        sent_headers = {k: v for k, v in merged.items() if v is not None}
        data = raw if raw is not None else json.dumps(body).encode()
        local = source or self.source
        connector = aiohttp.TCPConnector(local_addr=(local, 0) if local else None)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(self.url, data=data, headers=sent_headers) as resp,
        ):
            self.sent += 1
            return resp.status, await resp.json(content_type=None)
