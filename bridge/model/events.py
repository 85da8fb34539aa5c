"""Normalized events: what every plugin turns upstream frames into.

Every event is a frozen pydantic model with a ``kind``. Money is ``Decimal`` (serialized as a
string), identifiers are strings (64-bit upstream ids never pass through float), and every event
carries its provider instance, account alias, source time, receive time and a stable ``id``.
"""

from __future__ import annotations

import decimal
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from operator import methodcaller
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    computed_field,
    model_validator,
)

DECIMAL_DIGITS = 80
"""Significant digits of every Decimal operation: a uint256 in base units has 78 (Decimal's
default of 28 silently rounds an 18-decimal token balance above 10^10)."""

decimal.DefaultContext.prec = DECIMAL_DIGITS  # contexts created from now on (threads, tasks)
decimal.getcontext().prec = DECIMAL_DIGITS  # and the importing thread's own


def _to_id(value: Any) -> Any:
    """Keep ids exact: ints become their decimal string, floats are refused."""
    if type(value) is str:  # the common case, first
        return value
    if isinstance(value, (bool, float)):
        raise ValueError("an id must be a string or an integer, never a float")
    if isinstance(value, int):
        return str(value)
    return value


Money = Annotated[
    Decimal,
    PlainSerializer(methodcaller("__format__", "f"), return_type=str, when_used="json"),
]
"""An exact amount; JSON carries it as a plain decimal string (``"910.997790"``).

Decimal strings and ints are taken as they are, floats through their shortest repr (``0.1`` is
``Decimal("0.1")``), booleans, NaN and infinities refused: pydantic's own Decimal validation,
no Python call per field (the serializer is a C callable too)."""

Id = Annotated[str, BeforeValidator(_to_id)]
"""An upstream identifier kept exact as a string."""


def _utc(value: datetime) -> datetime:
    """Aware, in UTC: a naive time is taken as UTC (what upstreams without an offset mean)."""
    zone = value.tzinfo
    if zone is UTC:  # the common case (the bridge's clock, ``utc_time``): nothing to convert
        return value
    if zone is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]
"""A datetime always aware and in UTC, whatever the plugin passed."""


TRANSACTION_EVENT_TYPES: tuple[str, ...] = (
    "deposit",
    "withdrawal",
    "transfer",
    "funding",
    "onchain",
    "other",
)
"""A transaction's ``event_type``: its ``type``, or ``other`` for a type not listed."""
ORDER_EVENT_TYPES: tuple[str, ...] = (
    "created",
    "open",
    "updated",
    "partially_matched",
    "partially_filled",
    "matched",
    "filled",
    "cancelled",
    "rejected",
    "expired",
    "other",
)
"""An order's ``event_type``: its ``status``, or ``other`` for a status not listed."""
TRADE_EVENT_TYPES: tuple[str, ...] = ("filled", "rejected")
"""A trade's ``event_type``: its ``status``."""
NOTIFICATION_EVENT_TYPES: tuple[str, ...] = ("info", "warning", "error")
"""A notification's ``event_type``: its ``severity``."""


def _listed(value: str | None, listed: tuple[str, ...]) -> str:
    return value if value in listed else "other"


def stable_id(*parts: object) -> str:
    """Derive a short deterministic id from the parts that make an event unique."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12)
    return digest.hexdigest()


class BaseEvent(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    retained: ClassVar[bool] = False
    """True for state (kept retained per topic), False for events (QoS 1, not retained)."""

    schema_: Literal[1] = Field(default=1, alias="schema")
    """Version of the payload schema; bumped only with an incompatible change."""

    @model_validator(mode="before")
    @classmethod
    def _computed_fields_are_output(cls, data: Any) -> Any:
        """A published payload reads back: what the model computes (``event_type``) is dropped."""
        if isinstance(data, dict) and "event_type" in data:  # the one computed field
            data = {k: v for k, v in data.items() if k != "event_type"}
        return data

    provider: str
    """Provider instance name (the ``name`` of its ``[[providers]]`` table)."""
    account: str | None = None
    """Account alias as it appears in topics; None for data that belongs to no account."""
    id: Id
    """Stable id: the same upstream fact always gets the same id (used for deduplication)."""
    source_time: UtcTime | None = None
    """When the upstream says the fact happened (UTC), if it says."""
    received_at: UtcTime
    """When the bridge received the frame (UTC)."""
    partial: bool = Field(default=False, exclude=True)
    """State that carries only some fields (None: not said): the hub completes it with the
    retained state's values. Not published."""


class BalanceEvent(BaseEvent):
    """Current balance of one asset (retained)."""

    retained: ClassVar[bool] = True
    kind: Literal["balance"] = "balance"
    asset: str
    total: Money
    available: Money | None = None
    locked: Money | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)


class TransactionEvent(BaseEvent):
    """A movement of funds: deposit, withdrawal, transfer, funding settlement, on-chain transfer."""

    kind: Literal["transaction"] = "transaction"
    type: str
    """What moved: deposit, withdrawal, transfer, funding, onchain, …"""
    status: str | None = None
    direction: Literal["in", "out"] | None = None
    asset: str | None = None
    amount: Money | None = None
    tx_hash: str | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_type(self) -> str:
        """What Home Assistant's event entity fires: ``type`` (``other`` when not a known one)."""
        return _listed(self.type, TRANSACTION_EVENT_TYPES)


class OrderEvent(BaseEvent):
    """A change in the life of an order."""

    kind: Literal["order"] = "order"
    order_id: Id
    status: str
    """created, updated, cancelled, matched, partially_matched, rejected, … (normalized)."""
    symbol: str | None = None
    side: Literal["buy", "sell"] | None = None
    order_type: str | None = None
    price: Money | None = None
    quantity: Money | None = None
    filled_quantity: Money | None = None
    remaining_quantity: Money | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_type(self) -> str:
        """What Home Assistant's event entity fires: ``status`` (``other`` when not a known one)."""
        return _listed(self.status, ORDER_EVENT_TYPES)


class TradeEvent(BaseEvent):
    """A fill (or a rejected trade)."""

    kind: Literal["trade"] = "trade"
    status: Literal["filled", "rejected"] = "filled"
    order_id: Id | None = None
    trade_id: Id | None = None
    symbol: str | None = None
    side: Literal["buy", "sell"] | None = None
    price: Money | None = None
    quantity: Money | None = None
    fee: Money | None = None
    realized_pnl: Money | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_type(self) -> str:
        """What Home Assistant's event entity fires: ``status``."""
        return self.status


class PositionEvent(BaseEvent):
    """Current open position in one symbol (retained; ``closed`` clears its topic)."""

    retained: ClassVar[bool] = True
    kind: Literal["position"] = "position"
    symbol: str
    direction: Literal["long", "short", "closed"]
    quantity: Money
    entry_price: Money | None = None
    mark_price: Money | None = None
    notional: Money | None = None
    unrealized_pnl: Money | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)


class AccountStatusEvent(BaseEvent):
    """One named status of an account: kyc, iban, sync, recovery, … (retained)."""

    retained: ClassVar[bool] = True
    kind: Literal["account_status"] = "account_status"
    topic: str
    """Which status this is (``kyc``, ``iban``, ``sync``, …); becomes the last topic level."""
    status: str
    """Normalized value, e.g. ``not_started`` / ``pending`` / ``verified``."""
    raw: JsonValue = None
    """The upstream value as sent, for consumers that want it."""
    details: dict[str, JsonValue] = Field(default_factory=dict)


class MarketPriceEvent(BaseEvent):
    """Latest price of a market (retained)."""

    retained: ClassVar[bool] = True
    kind: Literal["market_price"] = "market_price"
    market: str
    price: Money | None = None
    bid: Money | None = None
    ask: Money | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)


class OrderBookLevel(BaseModel):
    """One price level of an order book."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)
    price: Money
    size: Money


class OrderBookEvent(BaseEvent):
    """Latest order book of a market (retained)."""

    retained: ClassVar[bool] = True
    kind: Literal["order_book"] = "order_book"
    market: str
    bids: tuple[OrderBookLevel, ...] = ()
    asks: tuple[OrderBookLevel, ...] = ()
    details: dict[str, JsonValue] = Field(default_factory=dict)


class NotificationEvent(BaseEvent):
    """A message meant for a person: alert, signal, maintenance notice, sync error."""

    kind: Literal["notification"] = "notification"
    category: str
    severity: Literal["info", "warning", "error"] = "info"
    title: str | None = None
    message: str | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_type(self) -> str:
        """What Home Assistant's event entity fires: ``severity``."""
        return self.severity


LinkStateName = Literal["connecting", "connected", "fallback", "auth_failed", "disconnected"]
"""``fallback``: the live link is down (``error`` says why) but the data still flows, e.g. by
HTTP polling; entities stay available, the link's own connectivity sensor is off."""


class LinkStateEvent(BaseEvent):
    """State of one upstream link (retained): the truth behind availability."""

    retained: ClassVar[bool] = True
    kind: Literal["link"] = "link"
    state: LinkStateName
    since: UtcTime
    error: str | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)


class RawEvent(BaseEvent):
    """An upstream frame no model covers, passed through unchanged rather than dropped."""

    kind: Literal["raw"] = "raw"
    name: str
    """The upstream's name for the frame (its ``type``/``event``), or ``unknown``."""
    data: JsonValue = None
    error: str | None = None
    """Why the frame could not be parsed, when that is the reason it is raw."""


class SnapshotEvent(BaseEvent):
    """The whole current state of some kinds for one account; not published itself.

    The hub publishes ``items`` and clears the retained topics of the ``covers`` kinds (under the
    same provider and account) that the snapshot no longer contains: a position closed while the
    link was down disappears.
    """

    kind: Literal["snapshot"] = "snapshot"
    covers: tuple[Literal["balance", "position", "account_status"], ...]
    scope: dict[str, str] = Field(default_factory=dict)
    """Covers only the retained topics whose ``details`` carry these values (e.g.
    ``{"chain_id": "100"}``: a one-chain snapshot leaves the other chains' balances alone)."""
    items: tuple[
        Annotated[BalanceEvent | PositionEvent | AccountStatusEvent, Field(discriminator="kind")],
        ...,
    ] = ()


Event = Annotated[
    BalanceEvent
    | TransactionEvent
    | OrderEvent
    | TradeEvent
    | PositionEvent
    | AccountStatusEvent
    | MarketPriceEvent
    | OrderBookEvent
    | NotificationEvent
    | LinkStateEvent
    | RawEvent
    | SnapshotEvent,
    Field(discriminator="kind"),
]
"""Any normalized event, discriminated by ``kind``."""

AnyEvent = (
    BalanceEvent
    | TransactionEvent
    | OrderEvent
    | TradeEvent
    | PositionEvent
    | AccountStatusEvent
    | MarketPriceEvent
    | OrderBookEvent
    | NotificationEvent
    | LinkStateEvent
    | RawEvent
    | SnapshotEvent
)
