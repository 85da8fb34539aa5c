"""The Vezta upstream: a python-socketio server on ``/ws``, faithful to the document and the
variants of PROTOCOLS.md §4, for tests, the benchmark and ``fin2mqtt demo``.

Switches for the variants: ``refuse_bad_token`` (refuse the namespace connection instead of
refusing only the user channels), ``error_event`` (``error`` with ``{"channel", "message"}``, or
NestJS's ``exception`` with ``{"status": "error", "message"}``), ``ack_style`` (``plain``
``{"channel"}`` or the document's literal ``{"event": "subscribed", "data": {"channel"}}``),
``envelope`` (``data`` events, or events named after the channel), ``batch`` (one price
broadcast carrying every market). Faults: ``disconnect_all`` (a namespace disconnect by the
server), ``drop_transports`` (TCP cut without a goodbye).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from bridge.testing.simulator import DemoSetup, SocketIOSimulator

TOKEN = "demo-vezta-jwt"  # noqa: S105 - the simulator's own demo token
CHANNELS = (
    "market:prices",
    "market:orderbook",
    "market:trades",
    "monitor:signals",
    "user:orders",
    "user:notifications",
    "user:portfolio",
    "user:copy-trade",
)
SIX = Decimal("0.000001")


def six(value: Decimal) -> str:
    """Money as the document sends it: a string with 6 decimals."""
    return str(value.quantize(SIX))


def now() -> str:
    """The current time as the upstream writes it (ISO 8601, milliseconds, ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Market:
    """One simulated prediction market."""

    id: str
    slug: str
    title: str
    source: str
    yes: Decimal
    volume: Decimal = Decimal("125000")


@dataclass
class Session:
    """One connected client."""

    authorized: bool
    transport: Any = None
    channels: list[str] = field(default_factory=list)


class VeztaSimulator(SocketIOSimulator):
    """Auth by ``{"token"}``, subscribe/subscribed, broadcasts on ``data``, errors, faults."""

    namespace = "/ws"

    def __init__(
        self,
        tokens: tuple[str, ...] = (TOKEN,),
        *,
        refuse_bad_token: bool = False,
        error_event: Literal["error", "exception"] = "error",
        ack_style: Literal["plain", "wrapped"] = "plain",
        envelope: Literal["data", "channel"] = "data",
        batch: bool = False,
        seed: int = 3,
    ) -> None:
        self.tokens = set(tokens)
        self.refuse_bad_token = refuse_bad_token
        self.error_event = error_event
        self.ack_style = ack_style
        self.envelope = envelope
        self.batch = batch
        self.random = random.Random(seed)  # noqa: S311 - simulated prices
        self.sessions: dict[str, Session] = {}
        self.subscribes: list[tuple[str, str]] = []
        """Every ``subscribe`` as ``(sid, channel)``, in order (also refused ones)."""
        self.markets = [
            Market("m-101", "btc-above-100k-2026", "Bitcoin above $100k in 2026?", "polymarket",
                   Decimal("0.53")),
            Market("m-102", "fed-cut-march", "Fed cuts rates in March?", "kalshi", Decimal("0.31")),
            Market("m-103", "eth-flippening", "ETH flips BTC?", "polymarket", Decimal("0.04")),
        ]  # fmt: skip
        self.orders: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        super().__init__()

    @property
    def ws_url(self) -> str:
        """The URL as users configure it: server and namespace."""
        return f"{self.url}{self.namespace}"

    def setup(self) -> None:
        """Register the namespace's handlers."""
        ns = self.namespace
        self.sio.on("connect", self._connect, namespace=ns)
        self.sio.on("disconnect", self._disconnect, namespace=ns)
        self.sio.on("subscribe", self._subscribe, namespace=ns)
        self.sio.on("unsubscribe", self._unsubscribe, namespace=ns)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        import socketio

        token = auth.get("token") if isinstance(auth, dict) else None
        authorized = token in self.tokens
        if token is not None and not authorized and self.refuse_bad_token:
            raise socketio.exceptions.ConnectionRefusedError("Unauthorized")
        request = environ.get("aiohttp.request")
        self.sessions[sid] = Session(authorized, request.transport if request else None)
        self.connects += 1
        self.sids.add(sid)
        self.changed()

    async def _disconnect(self, sid: str, *_reason: Any) -> None:
        self.sids.discard(sid)
        self.sessions.pop(sid, None)
        self.changed()

    async def _subscribe(self, sid: str, data: Any) -> None:
        channel = data.get("channel") if isinstance(data, dict) else data
        self.subscribes.append((sid, str(channel)))
        self.changed()
        session = self.sessions.get(sid)
        if session is None:
            return
        if channel not in CHANNELS:
            await self._refuse(sid, str(channel), "Unknown channel")
            return
        if channel.startswith("user:") and not session.authorized:
            await self._refuse(sid, channel, "Unauthorized")
            return
        await self.sio.enter_room(sid, channel, namespace=self.namespace)
        session.channels.append(channel)
        body: dict[str, Any] = {"channel": channel}
        if self.ack_style == "wrapped":
            body = {"event": "subscribed", "data": body}
        await self.sio.emit("subscribed", body, to=sid, namespace=self.namespace)

    async def _refuse(self, sid: str, channel: str, message: str) -> None:
        body = (
            {"channel": channel, "message": message}
            if self.error_event == "error"
            else {"status": "error", "message": message}
        )
        await self.sio.emit(self.error_event, body, to=sid, namespace=self.namespace)

    async def _unsubscribe(self, sid: str, data: Any) -> None:
        channel = data.get("channel") if isinstance(data, dict) else data
        await self.sio.leave_room(sid, channel, namespace=self.namespace)
        session = self.sessions.get(sid)
        if session is not None and channel in session.channels:
            session.channels.remove(channel)
        await self.sio.emit("unsubscribed", {"channel": channel}, to=sid, namespace=self.namespace)

    def channels_of(self, sid: str) -> list[str]:
        """The channels a connected client is subscribed to."""
        session = self.sessions.get(sid)
        return list(session.channels) if session else []

    def subscribed_clients(self, channel: str) -> list[str]:
        """The connected clients subscribed to ``channel``."""
        return [sid for sid, s in self.sessions.items() if channel in s.channels]

    async def publish(self, channel: str, data: Any) -> None:
        """Broadcast to the channel's subscribers, in the configured envelope."""
        if self.envelope == "data":
            await self.sio.emit(
                "data", {"channel": channel, "data": data}, room=channel, namespace=self.namespace
            )
        else:
            await self.sio.emit(channel, data, room=channel, namespace=self.namespace)

    def drop_transports(self) -> None:
        """Cut every client's TCP connection (no close frame, no namespace disconnect)."""
        for session in self.sessions.values():
            if session.transport is not None:
                session.transport.abort()

    # payloads, from the document's field lists

    def price(self, market: Market) -> dict[str, Any]:
        """A ``market:prices`` item (a small random walk)."""
        step = Decimal(self.random.randint(-20, 20)) / 1000
        market.yes = min(max(market.yes + step, Decimal("0.01")), Decimal("0.99"))
        market.volume += Decimal(self.random.randint(0, 5000))
        return {
            "marketId": market.id, "slug": market.slug, "yesPrice": six(market.yes),
            "noPrice": six(1 - market.yes), "volume24h": six(market.volume),
            "change5m": six(step), "change1h": six(step * 3), "change24h": six(step * 7),
            "source": market.source, "updatedAt": now(),
        }  # fmt: skip

    def orderbook(self, market: Market) -> dict[str, Any]:
        """A ``market:orderbook`` snapshot around the market's price (bids not sorted)."""
        bid, ask = market.yes - Decimal("0.01"), market.yes + Decimal("0.01")
        return {
            "marketId": market.id, "source": market.source,
            "bids": [{"price": six(bid - Decimal("0.01")), "size": six(Decimal(900))},
                     {"price": six(bid), "size": six(Decimal(250))}],
            "asks": [{"price": six(ask), "size": six(Decimal(300))},
                     {"price": six(ask + Decimal("0.01")), "size": six(Decimal(1200))}],
            "spread": six(ask - bid), "updatedAt": now(),
        }  # fmt: skip

    def trade(self, market: Market) -> dict[str, Any]:
        """A ``market:trades`` item (with the polymarket extras for polymarket markets)."""
        size = Decimal(self.random.randint(1, 500))
        trade = {
            "id": f"t-{next(self._ids)}", "marketId": market.id, "source": market.source,
            "side": self.random.choice(["buy", "sell"]), "outcome": "yes",
            "price": six(market.yes), "size": six(size), "amount": six(size * market.yes),
            "tradedAt": now(),
        }  # fmt: skip
        if market.source == "polymarket":
            trade |= {"makerAddress": "0x" + "ab" * 20, "takerAddress": "0x" + "cd" * 20,
                      "txHash": "0x" + f"{self.random.getrandbits(256):064x}"}  # fmt: skip
        return trade

    def order(self, order_id: str, status: str, filled: str = "0") -> dict[str, Any]:
        """A ``user:orders`` update moving ``order_id`` to ``status``."""
        market = self.markets[0]
        previous = self.orders.get(order_id, {}).get("status")
        quantity, price = Decimal(100), market.yes
        filled_qty = Decimal(filled)
        order = {
            "orderId": order_id, "marketId": market.id, "marketSlug": market.slug,
            "exchange": market.source, "side": "buy", "type": "limit", "action": "open",
            "status": status, "previousStatus": previous, "price": six(price),
            "quantity": six(quantity), "filledQuantity": six(filled_qty),
            "avgFillPrice": six(price) if filled_qty else None,
            "total": six(quantity * price), "fee": six(filled_qty * price / 100),
            "source": "web", "updatedAt": now(),
        }  # fmt: skip
        self.orders[order_id] = order
        return order

    def notification(self, title: str = "Order filled") -> dict[str, Any]:
        """A ``user:notifications`` item."""
        return {
            "id": f"n-{next(self._ids)}", "type": "order_filled", "title": title,
            "message": "Your order on btc-above-100k-2026 was filled", "read": False,
            "marketId": self.markets[0].id, "actionUrl": "/markets/btc-above-100k-2026",
            "createdAt": now(),
        }  # fmt: skip

    def portfolio(self, shares: Decimal = Decimal(100)) -> dict[str, Any]:
        """A ``user:portfolio`` update: one YES position (none when ``shares`` is 0)."""
        market = self.markets[0]
        entry = Decimal("0.50")
        value = shares * market.yes
        pnl = value - shares * entry
        positions = (
            [{"positionId": "p-1", "marketId": market.id, "marketTitle": market.title,
              "side": "yes", "shares": six(shares), "entryPrice": six(entry),
              "currentPrice": six(market.yes), "value": six(value), "unrealizedPnl": six(pnl),
              "unrealizedPnlPercent": six(pnl / (shares * entry) * 100)}]
            if shares else []
        )  # fmt: skip
        cash = Decimal("950")
        return {
            "totalValue": six(cash + value), "totalCost": six(cash + shares * entry),
            "unrealizedPnl": six(pnl), "unrealizedPnlPercent": six(Decimal("1.5")),
            "realizedPnl": six(Decimal("12.5")), "dayPnl": six(pnl / 2),
            "dayPnlPercent": six(Decimal("0.4")), "positions": positions, "updatedAt": now(),
        }  # fmt: skip

    def copy_trade(self, event: str = "executed") -> dict[str, Any]:
        """A ``user:copy-trade`` event (``reason`` when failed or skipped)."""
        market = self.markets[1]
        body = {
            "event": event, "subscriptionId": "cs-7", "targetWalletAddress": "0x" + "ef" * 20,
            "orderId": f"o-copy-{next(self._ids)}", "marketId": market.id,
            "marketTitle": market.title, "side": "buy", "action": "open",
            "price": six(market.yes), "quantity": six(Decimal(20)),
            "total": six(20 * market.yes), "executedAt": now(),
        }  # fmt: skip
        if event in ("failed", "skipped"):
            body["reason"] = "insufficient balance" if event == "failed" else "market closed"
        return body

    def signal(self) -> dict[str, Any]:
        """A ``monitor:signals`` item."""
        market = self.random.choice(self.markets)
        return {
            "id": f"s-{next(self._ids)}", "type": "whale_trade", "severity": "high",
            "headline": f"Whale buys YES on {market.slug}", "summary": "A 50,000 USDC order",
            "source": market.source, "marketId": market.id, "amount": six(Decimal(50000)),
            "createdAt": now(), "walletAddress": "0x" + "12" * 20,
        }  # fmt: skip

    async def push_prices(self) -> None:
        """One price update per market (or one batch carrying them all)."""
        items = [self.price(m) for m in self.markets]
        if self.batch:
            await self.publish("market:prices", items)
            return
        for item in items:
            await self.publish("market:prices", item)

    async def drive(self, interval: float = 1.0) -> None:
        """Prices every tick; books, trades, signals and an order's life every few."""
        for tick in itertools.count():
            await asyncio.sleep(interval)
            await self.push_prices()
            market = self.markets[tick % len(self.markets)]
            await self.publish("market:orderbook", self.orderbook(market))
            await self.publish("market:trades", self.trade(market))
            if tick % 5 == 0:
                await self.publish("monitor:signals", self.signal())
            order_id = f"o-{tick // 4}"
            status, filled = [("OPEN", "0"), ("PARTIALLY_FILLED", "40"), ("FILLED", "100"),
                              ("FILLED", "100")][tick % 4]  # fmt: skip
            if tick % 4 != 3:
                await self.publish("user:orders", self.order(order_id, status, filled))
            else:
                await self.publish("user:notifications", self.notification())
                await self.publish("user:copy-trade", self.copy_trade())
            await self.publish("user:portfolio", self.portfolio())


def demo() -> DemoSetup:
    """The ``fin2mqtt.simulators`` entry point: every channel, two markets kept."""
    sim = VeztaSimulator()
    return DemoSetup(
        simulator=sim,
        settings=lambda: {
            "url": sim.ws_url,
            "token": TOKEN,
            "channels": list(CHANNELS),
            "markets": ["m-101", "fed-cut-march"],
            "aliases": {"m-101": "btc-100k"},
            "retry_min": 0.2,
            "retry_max": 2.0,
        },
        drive=sim.drive,
    )
