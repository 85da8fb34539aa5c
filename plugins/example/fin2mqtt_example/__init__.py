"""The template provider: copy this package to start a plugin.

Upstream (its simulator is in ``simulator.py``): a WebSocket at ``<url>`` with the header
``Authorization: Bearer <api key>``. On open the client sends
``{"id": 1, "op": "subscribe", "symbols": ["BTC-USD"]}``; the reply carries the wallet::

    {"id": 1, "result": {"account": "A-17", "balances": [{"asset": "USD", "total": "1000.00"}]}}

Then the server pushes ``{"type": "price", "symbol", "price", "ts"}``,
``{"type": "fill", "fill_id", "order_id", "symbol", "side", "price", "qty", "ts"}`` and
``{"type": "balance", "asset", "total", "ts"}``; it wants ``{"id", "op": "ping"}`` every 15 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from bridge.api import (
    MARKET_PRICE,
    STANDARD_ENTITIES,
    AnyEvent,
    AuthFailure,
    BalanceEvent,
    Connection,
    ConnectionSpec,
    Endpoint,
    EntitySpec,
    MarketPriceEvent,
    ParseContext,
    Provider,
    ProviderContext,
    ProviderSettings,
    RetrySettings,
    TradeEvent,
    WebSocketSpec,
    decimal,
    stable_id,
    utc_time,
)


class ExampleSettings(RetrySettings, ProviderSettings):
    """Settings of one example instance."""

    url: str = "wss://stream.example.invalid/ws"
    api_key: SecretStr
    account: str = "main"
    """Alias of the account in topics."""
    symbols: list[str] = Field(default_factory=lambda: ["BTC-USD"])


class ExampleProvider(Provider[ExampleSettings]):
    """A ticker and wallet over one WebSocket."""

    settings_model = ExampleSettings
    display_name: ClassVar[str] = "Example"
    entities: ClassVar[Sequence[EntitySpec]] = (*STANDARD_ENTITIES, MARKET_PRICE)
    keepalive_interval: ClassVar[float | None] = 15.0

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """One WebSocket; the core reconnects it and owns its link topic."""
        s = self.settings

        async def endpoint() -> Endpoint:  # asked before every attempt: a fresh key is used
            return Endpoint(s.url, {"Authorization": f"Bearer {s.api_key.get_secret_value()}"})

        return [WebSocketSpec(endpoint=endpoint, retry=s.retry_policy())]

    async def on_connect(self, conn: Connection) -> None:
        """Subscribe; the reply (the wallet snapshot) goes to ``parse``."""
        reply = await conn.request(
            {"op": "subscribe", "symbols": list(self.settings.symbols)}, deliver_reply=True
        )
        if reply.get("error"):
            raise AuthFailure(str(reply["error"]))

    async def keepalive(self, conn: Connection) -> None:
        """The upstream drops clients that stay silent for 30 s."""
        await conn.request({"op": "ping"})

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
        """Frames to events (pure); None: no model covers it, the core publishes it raw."""
        if not isinstance(frame, dict):
            return None
        ctx = ctx.for_account(self.settings.account)
        if "result" in frame:
            account, balances = frame["result"]["account"], frame["result"].get("balances", [])
            return [
                ctx.event(BalanceEvent, id=stable_id("snapshot", account, b["asset"], b["total"]),
                          asset=b["asset"], total=b["total"])
                for b in balances
            ]  # fmt: skip
        kind, when = frame.get("type"), utc_time(frame.get("ts"))
        if kind == "price":
            return [
                ctx.event(MarketPriceEvent, id=stable_id("price", frame["symbol"], frame["ts"]),
                          account=None, market=frame["symbol"], price=frame["price"],
                          source_time=when)
            ]  # fmt: skip
        if kind == "balance":
            return [
                ctx.event(BalanceEvent, id=stable_id("balance", frame["asset"], frame["ts"]),
                          asset=frame["asset"], total=frame["total"], source_time=when)
            ]  # fmt: skip
        if kind == "fill":
            return [
                ctx.event(TradeEvent, id=f"fill-{frame['fill_id']}", trade_id=frame["fill_id"],
                          order_id=frame["order_id"], symbol=frame["symbol"],
                          side="buy" if frame["side"] == "B" else "sell",
                          price=decimal(frame["price"]), quantity=decimal(frame["qty"]),
                          source_time=when)
            ]  # fmt: skip
        return None
