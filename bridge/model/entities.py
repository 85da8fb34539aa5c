"""Home Assistant entities described as data: one spec per entity a topic yields."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bridge.model.events import (
    NOTIFICATION_EVENT_TYPES,
    ORDER_EVENT_TYPES,
    TRADE_EVENT_TYPES,
    TRANSACTION_EVENT_TYPES,
)

OTHER = "Other"
"""The label of an enum value no spec names (Home Assistant refuses a state outside ``options``)."""


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """An entity made for every topic of one event ``kind``.

    ``name`` and ``unit`` are format strings over the event's fields (``"{asset} balance"``),
    plus derived ones: ``{<field>_human}`` (``kyc`` → ``KYC``, ``not_started`` → ``Not started``)
    and ``{base}`` / ``{quote}`` (the assets of a ``symbol`` or ``market`` such as ``ETH/USDT-P``);
    a unit that cannot be resolved is left out. ``value_template`` is the Home Assistant template
    reading the topic's JSON payload (unused by ``event`` entities: their payload carries
    ``event_type``).
    """

    kind: str
    key: str
    name: str
    value_template: str = ""
    component: Literal["sensor", "binary_sensor", "event"] = "sensor"
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    icon: str | None = None
    entity_category: Literal["diagnostic", "config"] | None = None
    options: tuple[str, ...] = ()
    """The values of an ``enum`` sensor (``device_class="enum"``), for Home Assistant."""
    match: tuple[tuple[str, str], ...] = ()
    """Fields the event must have with these values for the entity to exist, e.g.
    ``(("topic", "recovery"),)`` for one named account status only."""
    attributes: tuple[str, ...] = ()
    """Payload fields shown as the entity's attributes (``json_attributes_topic``), dotted for
    nested ones (``details.chain_id``): what does not change on every update."""
    precision_from: str | None = None
    """A decimal field whose places (as the upstream pads them) become the entity's
    ``suggested_display_precision``."""
    event_types: tuple[str, ...] = ()
    """The ``event_type`` values of an ``event`` entity."""


def human(text: str) -> str:
    """A label a person would write: ``not_started`` → ``Not started``, ``kyc`` → ``KYC``."""
    words = text.replace("_", " ").replace("-", " ").split()
    out = [ACRONYMS.get(w.lower(), w.lower()) for w in words]
    if out and out[0].islower():
        out[0] = out[0].capitalize()
    return " ".join(out)


ACRONYMS = {
    "ok": "OK",
    "kyc": "KYC",
    "iban": "IBAN",
    "pnl": "PnL",
    "id": "ID",
    "api": "API",
    "bic": "BIC",
}


def labels_template(field: str, labels: Mapping[str, str]) -> str:
    """A template mapping ``value_json.<field>`` to its label (``Other`` when unknown)."""
    table = json.dumps(dict(labels), separators=(",", ":"))
    return f"{{{{ {table}.get(value_json.{field}, '{OTHER}') }}}}"


def enum_sensor(
    kind: str,
    key: str,
    name: str,
    field: str,
    labels: Mapping[str, str],
    **kwargs: object,
) -> EntitySpec:
    """An ``enum`` sensor whose states are the human ``labels`` of ``field``'s values."""
    options = tuple(dict.fromkeys([*labels.values(), OTHER]))
    return EntitySpec(
        kind=kind,
        key=key,
        name=name,
        value_template=labels_template(field, labels),
        device_class="enum",
        options=options,
        **kwargs,  # type: ignore[arg-type]
    )


LINK = EntitySpec(
    kind="link",
    key="connected",
    name="Connection",
    component="binary_sensor",
    value_template="{{ 'ON' if value_json.state == 'connected' else 'OFF' }}",
    device_class="connectivity",
    entity_category="diagnostic",
    attributes=("state", "since", "error"),
)
BALANCE = EntitySpec(
    kind="balance",
    key="total",
    name="{asset} balance",
    value_template="{{ value_json.total }}",
    device_class="monetary",
    state_class="total",
    unit="{asset}",
    attributes=("available", "locked"),
    precision_from="total",
)
POSITION_QUANTITY = EntitySpec(
    kind="position",
    key="quantity",
    name="{symbol} position",
    # signed: a short is negative (the payload's quantity is the size, ``direction`` its side)
    value_template=("{{ ('-' if value_json.direction == 'short' else '') ~ value_json.quantity }}"),
    state_class="measurement",
    unit="{base}",
    icon="mdi:chart-line",
    attributes=("direction", "entry_price", "mark_price", "notional"),
    precision_from="quantity",
)
POSITION_DIRECTION = enum_sensor(
    "position",
    "direction",
    "{symbol} direction",
    "direction",
    {"long": "Long", "short": "Short"},
    icon="mdi:swap-vertical",
)
POSITION_PNL = EntitySpec(
    kind="position",
    key="unrealized_pnl",
    name="{symbol} unrealized PnL",
    value_template="{{ value_json.unrealized_pnl }}",
    device_class="monetary",
    state_class="total",
    unit="{quote}",
    icon="mdi:cash-sync",
    precision_from="unrealized_pnl",
)
ACCOUNT_STATUS = EntitySpec(
    kind="account_status",
    key="status",
    name="{topic_human} status",
    value_template="{{ value_json.status | replace('_', ' ') | capitalize }}",
    icon="mdi:account-check",
    entity_category="diagnostic",
    attributes=("status", "raw"),
)
MARKET_PRICE = EntitySpec(
    kind="market_price",
    key="price",
    name="{market} price",
    value_template="{{ value_json.price }}",
    state_class="measurement",
    unit="{quote}",
    icon="mdi:finance",
    attributes=("bid", "ask"),
    precision_from="price",
)
TRANSACTIONS = EntitySpec(
    kind="transaction",
    key="event",
    name="Transaction",
    component="event",
    icon="mdi:bank-transfer",
    event_types=TRANSACTION_EVENT_TYPES,
)
ORDERS = EntitySpec(
    kind="order",
    key="event",
    name="Order",
    component="event",
    icon="mdi:clipboard-list",
    event_types=ORDER_EVENT_TYPES,
)
TRADES = EntitySpec(
    kind="trade",
    key="event",
    name="Trade",
    component="event",
    icon="mdi:swap-horizontal",
    event_types=TRADE_EVENT_TYPES,
)
NOTIFICATIONS = EntitySpec(
    kind="notification",
    key="event",
    name="Notification",
    component="event",
    icon="mdi:bell",
    event_types=NOTIFICATION_EVENT_TYPES,
)
EVENT_ENTITIES: tuple[EntitySpec, ...] = (TRANSACTIONS, ORDERS, TRADES, NOTIFICATIONS)
"""Home Assistant ``event`` entities: automation triggers for what happens."""

STANDARD_ENTITIES: tuple[EntitySpec, ...] = (
    LINK,
    BALANCE,
    POSITION_QUANTITY,
    POSITION_DIRECTION,
    POSITION_PNL,
    ACCOUNT_STATUS,
    *EVENT_ENTITIES,
)
"""What a provider offers unless it says otherwise (market prices are opt-in: they are many)."""
