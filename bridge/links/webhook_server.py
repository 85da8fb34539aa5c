"""One aiohttp server for every provider's webhooks, plus ``/healthz`` (and ``/metrics``).

Routes are added by webhook links at run time; nothing listens until the first route or page
(``/metrics``) is added. Every
rejection is a 4xx with ``{"error": "…"}`` (404 no such route, 405 not POST, 403 source address
or header value refused, 401 header missing, 415 not JSON, 413 too large, 400 invalid JSON, 422
refused by the route's ``check``); 2xx only once the events a payload became are
durable (written to the state directory, or delivered); 503 with ``Retry-After`` while the outbox
is nearly full or cannot be written, so the sender tries again later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bridge.config.settings import WebhookSettings

if TYPE_CHECKING:  # aiohttp is imported when the server starts: most setups never need it
    from aiohttp import web

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ListenFailure(Exception):
    """The webhook server cannot listen (its port is taken, its address not ours): the daemon
    cannot do what it was configured to, so it stops with this message."""


def listen_failures(group: BaseExceptionGroup[ListenFailure]) -> list[str]:
    """The messages of the ListenFailures in ``group``, however deep task groups nested them."""
    return [
        message
        for exc in group.exceptions
        for message in (listen_failures(exc) if isinstance(exc, BaseExceptionGroup) else [str(exc)])
    ]


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """What a provider accepts on one path."""

    path: str
    allow: tuple[Network, ...] = ()
    """Source networks allowed to post; empty allows any."""
    required_headers: Mapping[str, str | None] = field(default_factory=dict)
    """Header → exact value, or None when it only has to be present."""
    trusted_proxies: tuple[Network, ...] = ()
    """Proxies whose ``X-Forwarded-For`` counts, besides the server's ``trusted_proxies``."""
    check: Callable[[Any], str | None] | None = None
    """Says why a JSON body is refused (answered 422, nothing parsed), or None to accept it:
    the sender learns at once that a body cannot mean anything (no ``account``, unknown hook)."""


def _error(status: int, message: str) -> web.Response:
    from aiohttp import web

    return web.json_response({"error": message}, status=status)


RETRY_AFTER = 30
"""Seconds a sender is asked to wait after a 503."""


def _unavailable(message: str) -> web.Response:
    response = _error(503, f"{message}; try again later")
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> Address | None:
    """The real client: the peer, or behind trusted proxies the last untrusted forwarded hop."""
    try:
        address: Address = ipaddress.ip_address(peer or "")
    except ValueError:
        return None
    if not forwarded_for or not any(address in net for net in trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return None
        if not any(address in net for net in trusted):
            return address
    return address


class WebhookServer:
    """Serves ``POST <path>`` for registered routes and ``GET /healthz``."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        durable: Callable[[], Awaitable[None]] | None = None,
        overloaded: Callable[[], bool] | None = None,
    ) -> None:
        """``durable`` returns once accepted events are safe (raises when they cannot be);
        ``overloaded`` says when to refuse posts for a while."""
        self.settings = settings
        self._durable = durable
        self._overloaded = overloaded
        self.trusted: tuple[Network, ...] = tuple(settings.trusted_proxies)
        self.port: int | None = None
        self.accepted = 0
        self.rejected = 0
        self._routes: dict[str, tuple[WebhookRoute, Callable[[Any], None]]] = {}
        self._pages: dict[str, tuple[Callable[[], bytes], str]] = {}
        self._wanted = asyncio.Event()
        self.listening = asyncio.Event()

    def add(self, route: WebhookRoute, handler: Callable[[Any], None]) -> None:
        """Serve ``route``; ``handler`` gets each accepted JSON body."""
        if route.path in self._routes:
            raise ValueError(f"webhook path {route.path} is already used")
        self._routes[route.path] = (route, handler)
        self._wanted.set()

    def add_page(self, path: str, render: Callable[[], bytes], content_type: str) -> None:
        """Serve ``GET path`` with ``render()`` (e.g. ``/metrics``); the server listens for it."""
        self._pages[path] = (render, content_type)
        self._wanted.set()

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (it answers 404 again)."""
        self._routes.pop(path, None)

    async def run(self) -> None:
        """Wait for the first route, then listen until cancelled."""
        await self._wanted.wait()
        from aiohttp import web

        app = web.Application(client_max_size=self.settings.max_body + 1)
        app.router.add_get("/healthz", self._health)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port)
            try:
                await site.start()
            except OSError as exc:
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise ListenFailure(
                    f"the webhook server cannot listen on {self.settings.host}:"
                    f"{self.settings.port}: {why}; is another program (or another fin2mqtt) "
                    "using the port? Choose another with [webhooks] port"
                ) from exc
            sockets = [s for s in (runner.addresses or [])]
            self.port = sockets[0][1] if sockets else self.settings.port
            log.info("HTTP server listening on %s:%s", self.settings.host, self.port)
            self.listening.set()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response(
            {"status": "ok", "routes": sorted(self._routes), "accepted": self.accepted}
        )

    async def _dispatch(self, request: web.Request) -> web.Response:
        page = self._pages.get(request.path)
        if page is not None and request.method in ("GET", "HEAD"):
            from aiohttp import web

            render, content_type = page
            return web.Response(body=render(), headers={"Content-Type": content_type})
        response = await self._handle(request)
        if response.status >= 400:
            self.rejected += 1
            log.info(
                "webhook %s %s from %s rejected: %s %s",
                request.method,
                request.path,
                request.remote,
                response.status,
                response.text,
            )
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        entry = self._routes.get(request.path)
        if entry is None:
            return _error(404, f"no webhook at {request.path}")
        route, handler = entry
        if request.method != "POST":
            response = _error(405, f"method {request.method} not allowed; use POST")
            response.headers["Allow"] = "POST"
            return response
        source = client_address(
            request.remote,
            request.headers.get("X-Forwarded-For"),
            self.trusted + route.trusted_proxies,
        )
        if route.allow and (source is None or not any(source in net for net in route.allow)):
            return _error(403, f"source address {source} is not allowed")
        for name, expected in route.required_headers.items():
            value = request.headers.get(name)
            if value is None:
                return _error(401, f"missing header {name}")
            if expected is not None and value != expected:
                return _error(403, f"wrong value of header {name}")
        if request.content_type != "application/json":
            return _error(415, f"content type must be application/json, not {request.content_type}")
        limit = self.settings.max_body
        if (request.content_length or 0) > limit:
            return _error(413, f"body larger than {limit} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return _error(413, f"body larger than {limit} bytes")
        try:
            payload = json.loads(body, parse_float=Decimal)
        except ValueError as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        if route.check is not None and (refusal := route.check(payload)) is not None:
            return _error(422, refusal)
        if self._overloaded is not None and self._overloaded():
            return _unavailable("the outbox is nearly full (MQTT broker unreachable?)")
        handler(payload)
        if self._durable is not None:
            try:
                await self._durable()
            except Exception as exc:  # noqa: BLE001 - any failure means "not safe yet"
                return _unavailable(f"event not stored: {exc}")
        self.accepted += 1
        from aiohttp import web

        return web.json_response({"status": "accepted"})
