"""Home Assistant entities described as data: one spec per entity a retained topic yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """An entity made for every retained topic of one event ``kind``.

    ``name`` and ``unit`` are format strings over the event's fields (``"{asset} balance"``);
    ``value_template`` is the Home Assistant template reading the topic's JSON payload.
    """

    kind: str
    key: str
    name: str
    value_template: str
    component: Literal["sensor", "binary_sensor"] = "sensor"
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


LINK = EntitySpec(
    kind="link",
    key="connected",
    name="Link",
    component="binary_sensor",
    value_template="{{ 'ON' if value_json.state == 'connected' else 'OFF' }}",
    device_class="connectivity",
    entity_category="diagnostic",
)
BALANCE = EntitySpec(
    kind="balance",
    key="total",
    name="{asset} balance",
    value_template="{{ value_json.total }}",
    device_class="monetary",
    state_class="total",
    unit="{asset}",
)
POSITION_QUANTITY = EntitySpec(
    kind="position",
    key="quantity",
    name="{symbol} position",
    value_template="{{ value_json.quantity }}",
    state_class="measurement",
    icon="mdi:chart-line",
)
POSITION_PNL = EntitySpec(
    kind="position",
    key="unrealized_pnl",
    name="{symbol} unrealized PnL",
    value_template="{{ value_json.unrealized_pnl }}",
    state_class="measurement",
    icon="mdi:cash-sync",
)
ACCOUNT_STATUS = EntitySpec(
    kind="account_status",
    key="status",
    name="{topic} status",
    value_template="{{ value_json.status }}",
    icon="mdi:account-check",
    entity_category="diagnostic",
)
MARKET_PRICE = EntitySpec(
    kind="market_price",
    key="price",
    name="{market} price",
    value_template="{{ value_json.price }}",
    state_class="measurement",
)

STANDARD_ENTITIES: tuple[EntitySpec, ...] = (
    LINK,
    BALANCE,
    POSITION_QUANTITY,
    POSITION_PNL,
    ACCOUNT_STATUS,
)
"""What a provider offers unless it says otherwise (market prices are opt-in: they are many)."""
