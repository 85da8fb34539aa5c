"""The plugin API: everything of fin2mqtt a provider plugin may import (plus ``bridge.testing``).

Everything else in ``bridge`` is private and may change in any release; CI fails when a plugin
imports it (ruff's banned-api, see ``pyproject.toml``). ``API_VERSION`` follows the ``fin2mqtt``
distribution's minor version: a plugin pins ``fin2mqtt>=0.2,<0.3``.

A provider plugin is a subclass of ``Provider`` registered in the entry-point group
``fin2mqtt.providers``. It declares its settings model, its connections as data
(``WebSocketSpec``, ``SocketIOSpec``, ``WebhookSpec``, ``CustomSpec``, each with an optional
``FallbackPoller``), optional ``Action``s (e.g. "sync now"), and turns frames into normalized
events with a pure ``parse``. The core does the rest: reconnects, link state, MQTT, retained
state, discovery, requests.
"""

from __future__ import annotations

from bridge.links.backoff import Backoff
from bridge.links.http_client import HttpClient, RateLimiter
from bridge.links.reconnect import RetryPolicy, RetrySettings
from bridge.links.socketio_options import OverflowPolicy, SocketIOEndpoint, SocketIOOptions
from bridge.links.tokens import (
    CommandToken,
    FileToken,
    StaticToken,
    TokenSettings,
    TokenSource,
    jwt_claims,
    jwt_expiry,
    renew_when_due,
)
from bridge.links.webhook_server import WebhookRoute
from bridge.links.websocket import Endpoint, WebSocketOptions
from bridge.model.entities import (
    ACCOUNT_STATUS,
    BALANCE,
    EVENT_ENTITIES,
    LINK,
    MARKET_PRICE,
    NOTIFICATIONS,
    ORDERS,
    POSITION_DIRECTION,
    POSITION_PNL,
    POSITION_QUANTITY,
    STANDARD_ENTITIES,
    TRADES,
    TRANSACTIONS,
    EntitySpec,
    enum_sensor,
    human,
)
from bridge.model.errors import (
    ActionFailed,
    AuthFailure,
    DoNotReconnect,
    LinkFailure,
    TransportFailure,
    UpstreamConfigFailure,
)
from bridge.model.events import (
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
from bridge.mqtt.topics import account_alias_problems
from bridge.plugin.actions import Action, ActionRequest
from bridge.plugin.connections import (
    ConnectionSpec,
    CustomSpec,
    FallbackPoller,
    LinkHost,
    SocketIOSpec,
    WebhookSpec,
    WebSocketSpec,
)
from bridge.plugin.helpers import (
    ParseContext,
    Unhandled,
    decimal,
    decimal_or_none,
    to_json,
    utc_time,
)
from bridge.plugin.provider import Connection, Link, Provider, ProviderContext, ProviderSettings

API_VERSION = "0.2"
"""The plugin API's version (the ``fin2mqtt`` minor version that introduced it)."""

__all__ = [
    "ACCOUNT_STATUS",
    "API_VERSION",
    "BALANCE",
    "EVENT_ENTITIES",
    "LINK",
    "MARKET_PRICE",
    "NOTIFICATIONS",
    "ORDERS",
    "POSITION_DIRECTION",
    "POSITION_PNL",
    "POSITION_QUANTITY",
    "STANDARD_ENTITIES",
    "TRADES",
    "TRANSACTIONS",
    "AccountStatusEvent",
    "Action",
    "ActionFailed",
    "ActionRequest",
    "AnyEvent",
    "AuthFailure",
    "Backoff",
    "BalanceEvent",
    "CommandToken",
    "Connection",
    "ConnectionSpec",
    "CustomSpec",
    "DoNotReconnect",
    "Endpoint",
    "EntitySpec",
    "Event",
    "FallbackPoller",
    "FileToken",
    "HttpClient",
    "Id",
    "Link",
    "LinkFailure",
    "LinkHost",
    "LinkStateEvent",
    "LinkStateName",
    "MarketPriceEvent",
    "Money",
    "NotificationEvent",
    "OrderBookEvent",
    "OrderBookLevel",
    "OrderEvent",
    "OverflowPolicy",
    "ParseContext",
    "PositionEvent",
    "Provider",
    "ProviderContext",
    "ProviderSettings",
    "RateLimiter",
    "RawEvent",
    "RetryPolicy",
    "RetrySettings",
    "SnapshotEvent",
    "SocketIOEndpoint",
    "SocketIOOptions",
    "SocketIOSpec",
    "StaticToken",
    "TokenSettings",
    "TokenSource",
    "TradeEvent",
    "TransactionEvent",
    "TransportFailure",
    "Unhandled",
    "UpstreamConfigFailure",
    "WebSocketOptions",
    "WebSocketSpec",
    "WebhookRoute",
    "WebhookSpec",
    "account_alias_problems",
    "decimal",
    "decimal_or_none",
    "enum_sensor",
    "human",
    "jwt_claims",
    "jwt_expiry",
    "renew_when_due",
    "stable_id",
    "to_json",
    "utc_time",
]
