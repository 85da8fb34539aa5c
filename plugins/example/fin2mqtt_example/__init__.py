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
from datetime import UTC, datetime
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
    Provider,
    ProviderContext,
    ProviderSettings,
    RawEvent,
    RetrySettings,
    TradeEvent,
    WebSocketSpec,
    stable_id,
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
    entities: ClassVar[Sequence[EntitySpec]] = (*STANDARD_ENTITIES, MARKET_PRICE)
    keepalive_interval: ClassVar[float | None] = 15.0

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """One WebSocket; the core reconnects it."""
        s = self.settings

        async def endpoint() -> Endpoint:
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

    def parse(self, frame: Any, received_at: datetime) -> Sequence[AnyEvent]:
        """Frames to events (pure)."""
        common: dict[str, Any] = {
            "provider": self.name,
            "account": self.settings.account,
            "received_at": received_at,
        }
        if not isinstance(frame, dict):
            raise ValueError("not a JSON object")
        if "result" in frame:
            result = frame["result"]
            return [
                BalanceEvent(
                    id=stable_id("snapshot", result["account"], b["asset"], b["total"]),
                    asset=b["asset"],
                    total=b["total"],
                    **common,
                )
                for b in result.get("balances", [])
            ]
        kind = frame.get("type")
        when = datetime.fromtimestamp(int(frame["ts"]), UTC) if "ts" in frame else None
        if kind == "price":
            return [
                MarketPriceEvent(
                    id=stable_id("price", frame["symbol"], frame["ts"]),
                    market=frame["symbol"],
                    price=frame["price"],
                    source_time=when,
                    **{**common, "account": None},
                )
            ]
        if kind == "balance":
            return [
                BalanceEvent(
                    id=stable_id("balance", frame["asset"], frame["ts"]),
                    asset=frame["asset"],
                    total=frame["total"],
                    source_time=when,
                    **common,
                )
            ]
        if kind == "fill":
            return [
                TradeEvent(
                    id=f"fill-{frame['fill_id']}",
                    trade_id=frame["fill_id"],
                    order_id=frame["order_id"],
                    symbol=frame["symbol"],
                    side="buy" if frame["side"] == "B" else "sell",
                    price=frame["price"],
                    quantity=frame["qty"],
                    source_time=when,
                    **common,
                )
            ]
        return [
            RawEvent(
                id=stable_id("raw", received_at.isoformat(), str(frame)),
                name=str(kind or "unknown"),
                data=_jsonable(frame),
                **common,
            )
        ]


def _jsonable(frame: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if not isinstance(v, str | int | bool | type(None)) else v)
        for k, v in frame.items()
    }
