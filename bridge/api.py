"""The plugin API: the only module of fin2mqtt that provider plugins import.

A provider plugin is a subclass of ``Provider`` registered in the entry-point group
``fin2mqtt.providers``. It declares its settings model, builds its link, and turns frames into
normalized events with a pure ``parse``. The core does the rest: reconnects, MQTT, state, discovery.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import JsonValue

from bridge.config import SecretFileModel
from bridge.entities import STANDARD_ENTITIES, EntitySpec
from bridge.errors import (
    AuthFailure,
    DoNotReconnect,
    LinkFailure,
    TransportFailure,
    UpstreamConfigFailure,
)
from bridge.events import (
    AccountStatusEvent,
    AnyEvent,
    BalanceEvent,
    Event,
    Id,
    LinkStateEvent,
    LinkStateName,
    MarketPriceEvent,
    Money,
    NotificationEvent,
    OrderBookEvent,
    OrderBookLevel,
    OrderEvent,
    PositionEvent,
    RawEvent,
    SnapshotEvent,
    TradeEvent,
    TransactionEvent,
    stable_id,
)
from bridge.webhooks import WebhookRoute, WebhookServer  # aiohttp itself is imported lazily

__all__ = [
    "STANDARD_ENTITIES",
    "AccountStatusEvent",
    "AnyEvent",
    "AuthFailure",
    "BalanceEvent",
    "Connection",
    "DoNotReconnect",
    "EntitySpec",
    "Event",
    "Id",
    "Link",
    "LinkFailure",
    "LinkStateEvent",
    "LinkStateName",
    "MarketPriceEvent",
    "Money",
    "NotificationEvent",
    "OrderBookEvent",
    "OrderBookLevel",
    "OrderEvent",
    "PositionEvent",
    "Provider",
    "ProviderContext",
    "ProviderSettings",
    "RawEvent",
    "SnapshotEvent",
    "TradeEvent",
    "TransactionEvent",
    "TransportFailure",
    "UpstreamConfigFailure",
    "WebhookRoute",
    "stable_id",
]


class ProviderSettings(SecretFileModel):
    """Base of every plugin's settings model.

    Unknown keys are errors; ``SecretStr`` fields may also be given as ``<name>_file`` or as the
    systemd credential ``provider__<instance>__<name>``.
    """


SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


class ProviderContext(Protocol):
    """What the core hands a provider instance's link."""

    @property
    def instance(self) -> str:
        """The instance name (``name`` of the ``[[providers]]`` table)."""
        ...

    @property
    def logger(self) -> logging.Logger:
        """Logger named after the instance."""
        ...

    def now(self) -> datetime:
        """The current time (UTC, aware); tests may replace the clock."""
        ...

    def deliver(self, frame: Any) -> None:
        """Hand one upstream frame to ``Provider.parse`` and publish what it yields.

        A frame ``parse`` cannot handle is published as a ``RawEvent`` with the error: never lost.
        """
        ...

    def emit(self, events: Iterable[AnyEvent]) -> None:
        """Publish events built outside ``parse`` (e.g. from an HTTP poll)."""
        ...

    def set_link_state(
        self, state: LinkStateName, *, error: str | None = None, account: str | None = None
    ) -> None:
        """Report the link's state; retained on ``<base>/<instance>[/<account>]/link``."""
        ...

    @property
    def webhooks(self) -> WebhookServer:
        """The daemon's shared webhook server (webhook links register their routes on it)."""
        ...


class Connection(Protocol):
    """An open upstream connection, as the provider's hooks see it."""

    account: str | None
    """The account this connection serves, when the provider runs one link per account."""
    data: dict[str, Any]
    """Per-connection state of the hooks (e.g. a listen key); empty on every new connection."""

    async def send(self, message: JsonValue) -> None:
        """Send one JSON message."""
        ...

    async def request(
        self,
        message: dict[str, JsonValue],
        *,
        timeout: float | None = None,
        deliver_reply: bool = False,
    ) -> Any:
        """Send a request and wait for the reply the link matches to it by id.

        ``deliver_reply`` also hands the reply to ``parse`` (a snapshot), in order with other
        frames. No reply in time is a ``TransportFailure``.
        """
        ...

    async def expect(
        self, match: Callable[[Any], bool], *, timeout: float, what: str = "reply"
    ) -> Any:
        """Wait for the first incoming frame ``match`` accepts (e.g. an ``auth_success``).

        For answers that carry no request id. The frame still goes to ``parse``. None in time is
        a ``TransportFailure`` ("no <what> within <timeout> s").
        """
        ...


class Link(ABC):
    """Owns one upstream connection and its life; the core runs it under supervision.

    ``run`` returns or raises when the link ends; the supervisor restarts it with backoff.
    ``close`` asks for a clean stop (e.g. an unsubscribe message) and returns when done.
    """

    @abstractmethod
    async def run(self) -> None:
        """Connect, authenticate, receive frames into ``ProviderContext.deliver``."""

    async def close(self) -> None:  # noqa: B027 - optional hook with nothing to do by default
        """Stop cleanly; the default has nothing to say to the upstream."""


class Provider(ABC, Generic[SettingsT]):
    """Base of every provider plugin; one object per configured instance.

    Subclasses set ``settings_model`` and implement ``create_link`` and ``parse``.
    """

    settings_model: ClassVar[type[ProviderSettings]]
    """The pydantic model validating the instance's table (minus ``type`` and ``name``)."""
    entities: ClassVar[Sequence[EntitySpec]] = STANDARD_ENTITIES
    """Home Assistant entities this provider's retained topics become."""
    keepalive_interval: ClassVar[float | None] = None
    """Seconds between ``keepalive`` calls while connected; None when the protocol needs none."""
    close_codes: ClassVar[Mapping[int, type[LinkFailure]]] = {}
    """WebSocket close codes that mean more than "retry" (e.g. ``{4003: DoNotReconnect}``)."""

    def __init__(self, name: str, settings: SettingsT) -> None:
        self.name = name
        self.settings = settings

    @abstractmethod
    def create_link(self, ctx: ProviderContext) -> Link:
        """Build the link for one run (called again after each restart)."""

    @abstractmethod
    def parse(self, frame: Any, received_at: datetime) -> Sequence[AnyEvent]:
        """Turn one upstream frame into events. Pure: no I/O, no clock, no state changes."""

    async def on_connect(self, conn: Connection) -> None:
        """Called once the link is open: authenticate, subscribe, request a snapshot."""

    async def keepalive(self, conn: Connection) -> None:
        """Called every ``keepalive_interval`` seconds while connected (app-level ping)."""

    async def on_stop(self, conn: Connection) -> None:
        """Called on a clean shutdown while still connected (e.g. ``stream.stop``)."""

    def control(self, frame: Any) -> None:
        """Called for every frame before it is queued; raise a LinkFailure to end the connection.

        For frames that change the connection rather than the data (``stream_expired``,
        a late ``auth_error``). Must be quick and must not block.
        """
