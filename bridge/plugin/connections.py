"""Connections declared as data: what a provider asks the core to hold for it.

A provider returns one ``ConnectionSpec`` per upstream connection from
``Provider.connections``. The core runs each one in its own supervised task (a failure stays
inside its connection), reconnects it with the spec's ``RetryPolicy``, runs its optional
``FallbackPoller`` while it is down, and alone writes its link topic
(``<base>/<instance>[/<account>]/link``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from bridge.links.reconnect import RetryPolicy
from bridge.links.socketio_options import SocketIOEndpoint, SocketIOOptions
from bridge.links.webhook_server import WebhookRoute
from bridge.links.websocket import Endpoint, WebSocketOptions
from bridge.model.errors import LinkFailure
from bridge.plugin.provider import Link


class FallbackPoller(ABC):
    """Reads (usually over HTTP) that keep a connection's data fresh while it is down.

    The core enters it (``async with``) for the connection's life, starts polling once the
    connection has been down ``after`` seconds (at once when the upstream refused it for a
    while: ``DoNotReconnect``, ``UpstreamConfigFailure``; never while the credentials are
    refused, which HTTP would share), calls ``poll`` every ``interval`` seconds, and stops when
    the connection is back. A poll that raises is reported on the link topic
    (``…; HTTP fallback failing: <reason>``) and retried with backoff; it never touches the
    connection itself. Events are published with the ``ProviderContext`` given to
    ``Provider.connections``.
    """

    after: float = 30.0
    """Seconds the connection must have been down before polling starts."""
    interval: float = 30.0
    """Seconds between polls."""

    async def __aenter__(self) -> Self:
        """Open what polling needs (e.g. an ``HttpClient``)."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close it (nothing by default)."""
        return

    @abstractmethod
    async def poll(self) -> None:
        """Read once and emit what was read; raise a ``LinkFailure`` saying what went wrong."""

    async def reconnected(self) -> None:  # noqa: B027 - optional hook
        """After each reconnect (not the first connect): e.g. read what was missed meanwhile."""

    async def serve(self) -> None:  # noqa: B027 - optional hook
        """Runs beside the connection for its whole life (e.g. re-reads asked for by a frame).

        Returning ends it; a ``LinkFailure`` is logged and it is started again after
        ``interval`` seconds.
        """


@dataclass(frozen=True, kw_only=True)
class ConnectionSpec:
    """What every kind of connection declares."""

    account: str | None = None
    """The account this connection serves (its link topic); None: the instance's own."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    fallback: FallbackPoller | None = None
    on_failure: Callable[[LinkFailure], None] | None = None
    """Told what ended each attempt (e.g. to stop offering a token the server refused)."""


@dataclass(frozen=True, kw_only=True)
class WebSocketSpec(ConnectionSpec):
    """A WebSocket (websockets) with the provider's hooks; the endpoint is asked per attempt.

    The endpoint may raise ``AuthFailure`` (with the reason) when no usable credentials exist
    yet: the link reports ``auth_failed`` and asks again after ``retry.auth_retry``.
    """

    endpoint: Callable[[], Awaitable[Endpoint]]
    options: WebSocketOptions = field(default_factory=WebSocketOptions)
    renew: Callable[[], Awaitable[str]] | None = None
    """Returns (with the reason) when the connection should be renewed, e.g. a fresh token."""


@dataclass(frozen=True, kw_only=True)
class SocketIOSpec(ConnectionSpec):
    """A Socket.IO namespace (python-socketio) with the provider's hooks."""

    endpoint: Callable[[], Awaitable[SocketIOEndpoint]]
    options: SocketIOOptions = field(default_factory=SocketIOOptions)


@dataclass(frozen=True, kw_only=True)
class WebhookSpec(ConnectionSpec):
    """A route on the daemon's shared webhook server; ``connected`` while it listens."""

    route: WebhookRoute


class LinkHost(Protocol):
    """What a custom link reports to the core (the core turns it into link state)."""

    @property
    def account(self) -> str | None:
        """The connection's account."""
        ...

    def deliver(self, frame: object) -> None:
        """Hand one frame to ``parse``."""
        ...

    def connected(self) -> None:
        """The link is up (authenticated, subscribed)."""
        ...


@dataclass(frozen=True, kw_only=True)
class CustomSpec(ConnectionSpec):
    """A transport the core does not know: the plugin's own ``Link``, built per run.

    Its ``run`` reports ``host.connected()`` once up and raises when it ends; the core writes
    the link state, restarts it with backoff and shows a bug's traceback.
    """

    link: Callable[[LinkHost], Link]
