"""The example upstream, faithful enough for tests and ``fin2mqtt demo``."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request

from bridge.testing.simulator import DemoSetup, WebSocketSimulator

API_KEY = "demo-key"


class ExampleSimulator(WebSocketSimulator):
    """Checks the bearer key, answers subscribe and ping, pushes what ``push_*`` asks."""

    path = "/ws"

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.balance = Decimal("1000.00")
        self.prices = {"BTC-USD": Decimal("64000.00"), "ETH-USD": Decimal("3100.00")}
        self.pings = 0
        self._fills = itertools.count(1)

    def check_request(self, request: Request) -> tuple[int, str] | None:
        """401 unless ``Authorization: Bearer <key>``."""
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, "invalid api key"
        return None

    async def session(self, ws: ServerConnection) -> None:
        """Answer requests until the client leaves."""
        while True:
            msg = await self.recv_json(ws)
            if msg.get("op") == "subscribe":
                self.subscribe(ws)
                await self.send_json(
                    ws,
                    {
                        "id": msg["id"],
                        "result": {
                            "account": "A-17",
                            "balances": [{"asset": "USD", "total": str(self.balance)}],
                        },
                    },
                )
            elif msg.get("op") == "ping":
                self.pings += 1
                await self.send_json(ws, {"id": msg["id"], "pong": True})

    def price_frame(self, symbol: str) -> dict[str, Any]:
        """A price tick (random walk)."""
        step = Decimal(random.randint(-50, 50)) / 100  # noqa: S311 - simulated prices
        self.prices[symbol] = (self.prices[symbol] + step).quantize(Decimal("0.01"))
        return {
            "type": "price",
            "symbol": symbol,
            "price": str(self.prices[symbol]),
            "ts": int(time.time()),
        }

    def fill_frames(self) -> list[dict[str, Any]]:
        """A fill and the balance it leaves."""
        n = next(self._fills)
        qty = Decimal("0.001")
        cost = (self.prices["BTC-USD"] * qty).quantize(Decimal("0.01"))
        self.balance -= cost
        now = int(time.time())
        return [
            {"type": "fill", "fill_id": 9_007_199_254_740_993 + n, "order_id": 77 + n,
             "symbol": "BTC-USD", "side": "B", "price": str(self.prices["BTC-USD"]),
             "qty": str(qty), "ts": now},
            {"type": "balance", "asset": "USD", "total": str(self.balance), "ts": now},
        ]  # fmt: skip

    async def drive(self, interval: float = 1.0) -> None:
        """Prices every ``interval``, a fill every third tick."""
        for tick in itertools.count():
            await asyncio.sleep(interval)
            await self.broadcast([self.price_frame(s) for s in self.prices])
            if tick % 3 == 1:
                await self.broadcast(self.fill_frames())


def demo() -> DemoSetup:
    """The ``fin2mqtt.simulators`` entry point: simulator, provider settings, activity."""
    sim = ExampleSimulator()
    return DemoSetup(
        simulator=sim,
        settings=lambda: {
            "url": sim.url,
            "api_key": API_KEY,
            "symbols": list(sim.prices),
            "retry_min": 0.2,
            "retry_max": 2.0,
        },
        drive=sim.drive,
    )
