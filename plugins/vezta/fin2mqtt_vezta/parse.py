"""Vezta frames to normalized events, one function per channel.

Every broadcast arrives as the Socket.IO event ``data`` (the link hands it over as
``{"event": "data", "data": {...}}``)::

    {"channel": "market:prices", "data": {"marketId": "m-1", "slug": "btc-100k", "yesPrice":
     "0.530000", "noPrice": "0.470000", "volume24h": "125000.000000", "change5m": "0.010000",
     "change1h": …, "change24h": …, "source": "polymarket", "updatedAt": "2026-…Z"}}

Variants accepted (PROTOCOLS.md §4): ``data`` holding one item or a list of them; an envelope
nested once more (``{"event": "data", "data": {"channel", "data"}}``); an event named after the
channel itself; numbers as strings or JSON numbers (decoded as Decimal by the link).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bridge.api import (
    AccountStatusEvent,
    AnyEvent,
    BalanceEvent,
    MarketPriceEvent,
    NotificationEvent,
    OrderBookEvent,
    OrderBookLevel,
    OrderEvent,
    ParseContext,
    PositionEvent,
    SnapshotEvent,
    TradeEvent,
    decimal,
    decimal_or_none,
    stable_id,
    to_json,
    utc_time,
)

OPEN_STATUSES = frozenset({"CREATED", "SUBMITTING", "OPEN", "PARTIALLY_FILLED", "CANCELLING"})
"""Order statuses that leave the order open; FILLED, CANCELLED, REJECTED, FAILED close it."""

SIGNAL_SEVERITY = {
    "critical": "error",
    "error": "error",
    "high": "warning",
    "warning": "warning",
}
"""Upstream severities (not enumerated by the document) → ours; anything else is ``info``."""

COPY_SEVERITY = {"failed": "error", "skipped": "warning"}


def money(value: Any) -> Decimal | None:
    """A 6-decimal money string (or number) as Decimal; None when absent."""
    return decimal_or_none(value)


def details(item: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``{our_name: value}`` for the upstream fields present (money kept exact)."""
    return {ours: to_json(item[wire]) for ours, wire in names.items() if item.get(wire) is not None}


@dataclass
class Markets:
    """Which markets to keep and what to call them in topics.

    Market channels carry every active market. A market is kept when its id or slug is in
    ``keep`` (all are, when it is empty). Its topic name is its alias (by id or slug), else its
    id. Frames that carry no slug (order book, trades, positions) learn it from
    ``market:prices``; while slug rules exist, an unknown market's order book and trades are
    skipped until its first price update tells its slug.
    """

    keep: frozenset[str] = frozenset()
    aliases: Mapping[str, str] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    """Market id → slug, learned from price updates."""

    def learn(self, market_id: str, slug: str | None) -> None:
        """Remember a market's slug (from ``market:prices``)."""
        if slug:
            self.slugs[market_id] = slug

    def kept(self, market_id: str, slug: str | None = None) -> bool:
        """True when the market channels' frame for this market is published."""
        slug = slug or self.slugs.get(market_id)
        if self.keep:
            return market_id in self.keep or (slug is not None and slug in self.keep)
        # an alias may name this market by slug: wait until its slug is known
        return slug is not None or market_id in self.aliases or not self.aliases

    def name(self, market_id: str, slug: str | None = None) -> str:
        """The market's name in topics: alias by id, alias by slug, else the id."""
        slug = slug or self.slugs.get(market_id)
        if market_id in self.aliases:
            return self.aliases[market_id]
        if slug is not None and slug in self.aliases:
            return self.aliases[slug]
        return market_id


@dataclass
class OpenOrders:
    """The account's open orders, as the order updates since the start tell them."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, order_id: str, status: str, summary: dict[str, Any]) -> bool:
        """Apply one update; True when the set of open orders (or one of them) changed."""
        if status in OPEN_STATUSES:
            changed = self.orders.get(order_id) != summary
            self.orders[order_id] = summary
            return changed
        return self.orders.pop(order_id, None) is not None


@dataclass
class Parser:
    """Turns one channel's payload into events (the learned slugs and open orders aside, pure)."""

    markets: Markets
    currency: str
    depth: int
    open_orders: dict[str | None, OpenOrders] = field(default_factory=dict)

    def channel(self, name: str) -> Callable[[dict[str, Any], ParseContext], list[AnyEvent]] | None:
        """The parser of one channel, None for a channel we do not know."""
        return {
            "market:prices": self.price,
            "market:orderbook": self.orderbook,
            "market:trades": self.trade,
            "monitor:signals": self.signal,
            "user:orders": self.order,
            "user:notifications": self.notification,
            "user:portfolio": self.portfolio,
            "user:copy-trade": self.copy_trade,
        }.get(name)

    def parse(self, channel: str, payload: Any, ctx: ParseContext) -> list[AnyEvent] | None:
        """Events for one broadcast (``payload``: one item or a list of them)."""
        parse = self.channel(channel)
        if parse is None:
            return None
        items = payload if isinstance(payload, list) else [payload]
        return [event for item in items if isinstance(item, dict) for event in parse(item, ctx)]

    def price(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``market:prices``: retained price per kept market (the YES price is ``price``)."""
        market_id, slug = str(item["marketId"]), item.get("slug")
        self.markets.learn(market_id, slug)
        if not self.markets.kept(market_id, slug):
            return []
        yes, no = money(item.get("yesPrice")), money(item.get("noPrice"))
        when = item.get("updatedAt")
        extra = details(item, {"slug": "slug", "source": "source", "yes_price": "yesPrice",
                               "no_price": "noPrice", "volume_24h": "volume24h",
                               "change_5m": "change5m", "change_1h": "change1h",
                               "change_24h": "change24h"})  # fmt: skip
        return [
            ctx.event(MarketPriceEvent, account=None,
                      id=stable_id("price", market_id, when, yes, no),
                      market=self.markets.name(market_id, slug), price=yes,
                      source_time=utc_time(when), details={"market_id": market_id, **extra})
        ]  # fmt: skip

    def orderbook(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``market:orderbook``: retained top of book (``depth`` levels) and spread."""
        market_id = str(item["marketId"])
        if not self.markets.kept(market_id):
            return []
        bids = sorted(_levels(item.get("bids")), key=lambda lv: lv.price, reverse=True)
        asks = sorted(_levels(item.get("asks")), key=lambda lv: lv.price)
        spread = money(item.get("spread"))
        if spread is None and bids and asks:
            spread = asks[0].price - bids[0].price
        when = item.get("updatedAt")
        extra = {"market_id": market_id, "spread": to_json(spread), "source": item.get("source"),
                 "best_bid": to_json(bids[0].price if bids else None),
                 "best_ask": to_json(asks[0].price if asks else None)}  # fmt: skip
        return [
            ctx.event(OrderBookEvent, account=None, id=stable_id("book", market_id, when, spread),
                      market=self.markets.name(market_id), bids=tuple(bids[: self.depth]),
                      asks=tuple(asks[: self.depth]), source_time=utc_time(when),
                      details={k: v for k, v in extra.items() if v is not None})
        ]  # fmt: skip

    def trade(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``market:trades``: one event per trade of a kept market."""
        market_id = str(item["marketId"])
        if not self.markets.kept(market_id):
            return []
        extra = details(item, {"source": "source", "outcome": "outcome", "amount": "amount",
                               "maker_address": "makerAddress", "taker_address": "takerAddress",
                               "tx_hash": "txHash"})  # fmt: skip
        trade_id = item.get("id")
        return [
            ctx.event(TradeEvent, account=None,
                      id=f"trade-{trade_id}" if trade_id is not None else stable_id(
                          "trade", market_id, item.get("txHash"), item.get("tradedAt"),
                          item.get("price"), item.get("size")),
                      trade_id=trade_id, symbol=self.markets.name(market_id), side=_side(item),
                      price=money(item.get("price")), quantity=money(item.get("size")),
                      source_time=utc_time(item.get("tradedAt")),
                      details={"market_id": market_id, **extra})
        ]  # fmt: skip

    def order(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``user:orders``: an order event, and the account's open orders (retained)."""
        order_id, status = str(item["orderId"]), str(item.get("status", "")).upper()
        market_id = str(item.get("marketId", ""))
        quantity, filled = money(item.get("quantity")), money(item.get("filledQuantity"))
        remaining = quantity - filled if quantity is not None and filled is not None else None
        when = item.get("updatedAt")
        extra = details(item, {"previous_status": "previousStatus", "action": "action",
                               "exchange": "exchange", "source": "source",
                               "avg_fill_price": "avgFillPrice", "total": "total", "fee": "fee",
                               "market_slug": "marketSlug"})  # fmt: skip
        symbol = self.markets.name(market_id, item.get("marketSlug")) if market_id else None
        event = ctx.event(
            OrderEvent, id=stable_id("order", order_id, status, item.get("filledQuantity"), when),
            order_id=order_id, status=status.lower(), symbol=symbol, side=_side(item),
            order_type=item.get("type"), price=money(item.get("price")), quantity=quantity,
            filled_quantity=filled, remaining_quantity=remaining, source_time=utc_time(when),
            details={"market_id": market_id, **extra},
        )  # fmt: skip
        summary = {"order_id": order_id, "status": status.lower(), "market": symbol,
                   "side": event.side, "price": to_json(event.price),
                   "quantity": to_json(quantity), "filled_quantity": to_json(filled)}  # fmt: skip
        book = self.open_orders.setdefault(ctx.account, OpenOrders())
        if not book.update(order_id, status, summary):
            return [event]
        orders = [book.orders[k] for k in sorted(book.orders)]
        state = ctx.event(
            AccountStatusEvent, id=stable_id("open-orders", order_id, status, when),
            topic="open_orders", status=str(len(orders)), raw=orders,
            source_time=utc_time(when), details={"count": len(orders)},
        )  # fmt: skip
        return [event, state]

    def notification(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``user:notifications``: in-app notifications as events."""
        extra = details(item, {"read": "read", "market_id": "marketId", "action_url": "actionUrl"})
        return [
            ctx.event(NotificationEvent, id=f"notification-{item['id']}",
                      category=str(item.get("type") or "notification"), title=item.get("title"),
                      message=item.get("message"), source_time=utc_time(item.get("createdAt")),
                      details={"channel": "user:notifications", **extra})
        ]  # fmt: skip

    def portfolio(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``user:portfolio``: the whole portfolio, so closed positions are cleared."""
        when = item.get("updatedAt")
        source_time, key = utc_time(when), stable_id("portfolio", when, item.get("totalValue"))
        extra = details(item, {"total_cost": "totalCost", "unrealized_pnl": "unrealizedPnl",
                               "unrealized_pnl_percent": "unrealizedPnlPercent",
                               "realized_pnl": "realizedPnl", "day_pnl": "dayPnl",
                               "day_pnl_percent": "dayPnlPercent"})  # fmt: skip
        value = ctx.event(BalanceEvent, id=f"{key}-value", asset=self.currency,
                          total=decimal(item["totalValue"]), source_time=source_time,
                          details={"what": "portfolio_value", **extra})  # fmt: skip
        positions = [self._position(p, ctx, key, source_time) for p in item.get("positions") or []]
        return [
            ctx.event(SnapshotEvent, id=key, covers=("balance", "position"),
                      items=(value, *positions), source_time=source_time)
        ]  # fmt: skip

    def _position(
        self, item: dict[str, Any], ctx: ParseContext, key: str, when: Any
    ) -> PositionEvent:
        market_id, side = str(item["marketId"]), str(item.get("side") or "").lower()
        shares = decimal(item.get("shares", 0))
        direction = "short" if side in ("sell", "short") else "long"
        outcome = side if side in ("yes", "no") else None
        symbol = self.markets.name(market_id) + (f"-{outcome}" if outcome else "")
        extra = details(item, {"position_id": "positionId", "market_title": "marketTitle",
                               "side": "side", "value": "value",
                               "unrealized_pnl_percent": "unrealizedPnlPercent"})  # fmt: skip
        return ctx.event(
            PositionEvent, id=f"{key}-{symbol}", symbol=symbol,
            direction=direction if shares else "closed", quantity=shares,
            entry_price=money(item.get("entryPrice")), mark_price=money(item.get("currentPrice")),
            notional=money(item.get("value")), unrealized_pnl=money(item.get("unrealizedPnl")),
            source_time=when, details={"market_id": market_id, **extra},
        )  # fmt: skip

    def copy_trade(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``user:copy-trade``: detected / executed / failed / skipped, as notifications."""
        what = str(item.get("event") or "update").lower()
        names = {"subscription_id": "subscriptionId",
                 "target_wallet_address": "targetWalletAddress", "order_id": "orderId",
                 "market_id": "marketId", "market_title": "marketTitle",
                 "side": "side", "action": "action", "price": "price", "quantity": "quantity",
                 "total": "total", "reason": "reason"}  # fmt: skip
        extra = details(item, names)
        market = item.get("marketTitle")
        title = f"Copy trade {what}: {market}" if market else f"Copy trade {what}"
        return [
            ctx.event(NotificationEvent,
                      id=stable_id("copy-trade", item.get("subscriptionId"), item.get("orderId"),
                                   what, item.get("executedAt"), item.get("marketId")),
                      category="copy_trade", severity=COPY_SEVERITY.get(what, "info"),
                      title=title, message=item.get("reason"),
                      source_time=utc_time(item.get("executedAt")),
                      details={"channel": "user:copy-trade", "event": what, **extra})
        ]  # fmt: skip

    def signal(self, item: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
        """``monitor:signals``: news and whale signals as notifications of no account."""
        known = {"id", "type", "severity", "headline", "summary", "createdAt"}
        extra = {_snake(k): to_json(v) for k, v in item.items() if k not in known}
        severity = str(item.get("severity") or "").lower()
        signal_id = item.get("id")
        return [
            ctx.event(NotificationEvent, account=None,
                      id=f"signal-{signal_id}" if signal_id is not None else stable_id(
                          "signal", item.get("type"), item.get("headline"), item.get("createdAt")),
                      category=str(item.get("type") or "signal"),
                      severity=SIGNAL_SEVERITY.get(severity, "info"), title=item.get("headline"),
                      message=item.get("summary"), source_time=utc_time(item.get("createdAt")),
                      details={"channel": "monitor:signals", "severity": item.get("severity"),
                               **extra})
        ]  # fmt: skip


def _levels(raw: Any) -> Iterable[OrderBookLevel]:
    """``[{"price", "size"}]`` (the document) or ``[[price, size]]`` levels."""
    for level in raw or ():
        if isinstance(level, dict):
            price, size = level.get("price"), level.get("size", level.get("quantity"))
        elif isinstance(level, Sequence) and len(level) >= 2:
            price, size = level[0], level[1]
        else:
            continue
        yield OrderBookLevel(price=decimal(price), size=decimal(size))


def _side(item: Mapping[str, Any]) -> Any:
    side = str(item.get("side") or "").lower()
    return side if side in ("buy", "sell") else None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
