"""A faithful in-process Hibachi account stream (PROTOCOLS.md §5).

- handshake: ``/ws/account?accountId=<int>`` with ``Authorization: <key>``; a bad key is HTTP 401;
- ``stream.start`` → ``accountSnapshot`` + a new ``listenKey``;
- ``stream.ping`` with a live key → ``{"id", "status": 200}`` and the key lives ``expiry``
  seconds more; an unknown or expired key → ``{"id", "status": 404, "error"}``;
- a key not pinged for ``expiry`` seconds (10 s on the real server) expires: the server sends
  ``stream_expired`` and stops streaming for it;
- ``stream.stop`` → 200, and the key is gone;
- ``push`` sends scripted events (the seed's examples) to an account's open streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from bridge.testing.simulator import DemoSetup, WebSocketSimulator

API_KEY = "demo-hibachi-key"
BLAST_BATCH = 64
"""Frames per write when ``blast`` sends as fast as it can."""
SEED_EVENTS = Path(__file__).with_name("seed_events.json")


@dataclass
class SimAccount:
    """One simulated account."""

    id: int
    balance: Decimal = Decimal("910.997790")
    positions: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "direction": "Long",
                "entryNotional": "10.003168",
                "markPrice": "3917.478177",
                "notionalValue": "10.000146",
                "openPrice": "3918.661809",
                "quantity": "0.002552700",
                "symbol": "ETH/USDT-P",
                "unrealizedFundingPnl": "0.000000",
                "unrealizedTradingPnl": "-0.003021",
            }
        ]
    )


@dataclass
class Stream:
    """One client connection and its listen key."""

    ws: ServerConnection
    account: int
    key: str | None = None
    expires_at: float = 0.0
    expired: bool = False


class HibachiSimulator(WebSocketSimulator):
    """The account WebSocket; counters let tests see what the client did."""

    path = "/ws/account"

    def __init__(self, api_key: str = API_KEY, expiry: float = 10.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.expiry = expiry
        self.accounts: dict[int, SimAccount] = {}
        self.streams: list[Stream] = []
        self.starts = 0
        self.pings = 0
        self.stops: list[str] = []
        self.expirations = 0
        self.ignore_pings = False
        self._keys = itertools.count(1)

    @property
    def base_url(self) -> str:
        """``ws://127.0.0.1:<port>`` (the plugin appends ``/ws/account?accountId=…``)."""
        return f"ws://127.0.0.1:{self.port}"

    def account(self, account_id: int) -> SimAccount:
        """The simulated account (created on first use)."""
        return self.accounts.setdefault(account_id, SimAccount(account_id))

    def check_request(self, request: Request) -> tuple[int, str] | None:
        """401 for a wrong key; 400 without a numeric ``accountId``."""
        if request.headers.get("Authorization") != self.api_key:
            return 401, "invalid api key"
        query = parse_qs(urlsplit(request.path).query)
        if not query.get("accountId", [""])[0].isdigit():
            return 400, "accountId required"
        return None

    async def session(self, ws: ServerConnection) -> None:
        """Serve one client until it leaves."""
        account_id = int(parse_qs(urlsplit(ws.request.path).query)["accountId"][0])  # type: ignore[union-attr]
        stream = Stream(ws, account_id)
        self.streams.append(stream)
        try:
            async with asyncio.TaskGroup() as tg:
                watchdog = tg.create_task(self._expire(stream))
                with contextlib.suppress(ConnectionClosed):
                    await self._serve(stream)
                watchdog.cancel()
        finally:
            self.streams.remove(stream)

    async def _serve(self, stream: Stream) -> None:
        while True:
            msg = await self.recv_json(stream.ws)
            method, rid = msg.get("method"), msg.get("id")
            params = msg.get("params") or {}
            if method == "stream.start":
                self.starts += 1
                acct = self.account(stream.account)
                stream.key = f"{stream.account}-{next(self._keys)}{secrets.token_hex(4)}"
                stream.expires_at = time.monotonic() + self.expiry
                stream.expired = False
                await self.send_json(
                    stream.ws,
                    {
                        "id": rid,
                        "result": {
                            "accountSnapshot": {
                                "account_id": acct.id,
                                "balance": str(acct.balance),
                                "positions": acct.positions,
                            },
                            "listenKey": stream.key,
                        },
                        "status": 200,
                    },
                )
            elif method == "stream.ping":
                self.pings += 1
                if self.ignore_pings:
                    continue
                if stream.key is None or params.get("listenKey") != stream.key or stream.expired:
                    await self.send_json(
                        stream.ws, {"id": rid, "status": 404, "error": "listen key not found"}
                    )
                    continue
                stream.expires_at = time.monotonic() + self.expiry
                await self.send_json(stream.ws, {"id": rid, "status": 200})
            elif method == "stream.stop":
                self.stops.append(str(params.get("listenKey")))
                stream.key = None
                await self.send_json(stream.ws, {"id": rid, "status": 200})
            else:
                await self.send_json(
                    stream.ws, {"id": rid, "status": 400, "error": f"unknown method {method}"}
                )

    async def _expire(self, stream: Stream) -> None:
        while True:
            await asyncio.sleep(min(self.expiry / 10, 0.5))
            if stream.key is None or stream.expired or time.monotonic() < stream.expires_at:
                continue
            stream.expired = True
            self.expirations += 1
            with contextlib.suppress(ConnectionClosed):
                await stream.ws.send(
                    json.dumps(
                        {
                            "event": "stream_expired",
                            "account": str(stream.account),
                            "params": {
                                "listenKey": stream.key,
                                "timestampMs": int(time.time() * 1000),
                            },
                        }
                    )
                )

    async def push(self, account_id: int, events: list[dict[str, Any]]) -> int:
        """Send events to every live stream of an account; returns how many streams got them."""
        sent = 0
        for stream in list(self.streams):
            if stream.account != account_id or stream.key is None or stream.expired:
                continue
            for event in events:
                with contextlib.suppress(ConnectionClosed):
                    await stream.ws.send(json.dumps(event))
            sent += 1
        return sent

    async def blast(
        self, account_id: int, n: int, rate: float | None = None, start: int = 0
    ) -> float:
        """Send ``n`` distinct ``trade_update`` events (as fast as possible, or ``rate`` per s).

        Each carries ``sentAt`` (wall-clock seconds) for latency measurement; returns when the
        first was sent. As fast as possible, frames go out ``BLAST_BATCH`` at a time in one
        write (with the connection's flow control): one ``send`` per frame costs this process
        about what a bridge spends per event, so a benchmark would measure the simulator.
        """
        streams = [s for s in self.streams if s.account == account_id and s.key]
        began = time.time()
        t0 = time.monotonic()
        batch = 1 if rate is not None else BLAST_BATCH
        for first in range(start, start + n, batch):
            last = min(first + batch, start + n)
            frames = [_trade_frame(account_id, i) for i in range(first, last)]
            for stream in streams:
                if len(frames) == 1:
                    await stream.ws.send(frames[0])
                else:
                    await _send_many(stream.ws, frames)
            if rate is not None:
                delay = t0 + (first - start + 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        return began

    def seed_events(self, account_id: int) -> list[dict[str, Any]]:
        """The seed's examples, addressed to ``account_id`` (without ``stream_expired``)."""
        events: list[dict[str, Any]] = json.loads(SEED_EVENTS.read_text())
        out = []
        for example in events:
            if example.get("event") == "stream_expired":
                continue
            event = dict(example)
            for key in ("account", "sourceAccountId"):
                if key in event:
                    event[key] = str(account_id)
            out.append(event)
        return out

    async def drive(self, interval: float = 2.0) -> None:
        """Demo activity: a seed event every ``interval`` seconds to every account."""
        for n in itertools.count():
            await asyncio.sleep(interval)
            for account_id in list(self.accounts):
                events = self.seed_events(account_id)
                await self.push(account_id, [events[n % len(events)]])


def demo() -> DemoSetup:
    """The ``fin2mqtt.simulators`` entry point."""
    sim = HibachiSimulator()
    sim.account(128)
    return DemoSetup(
        simulator=sim,
        settings=lambda: {
            "api_key": API_KEY,
            "base_url": sim.base_url,
            "accounts": [{"id": 128, "alias": "main"}],
            "retry_min": 0.2,
            "retry_max": 2.0,
        },
        drive=sim.drive,
    )


def trade_update(account_id: int, order_id: int, sent_at: float | None = None) -> dict[str, Any]:
    """A ``trade_update`` of one fill (the seed's), with ``sentAt`` when ``sent_at`` is given."""
    data: dict[str, Any] = {
        "orderId": order_id,
        "price": "2345.000000",
        "quantity": "0.000421590",
        "realizedPnl": "0.022107",
        "side": "BID",
        "symbol": "ETH/USDT-P",
        "timestamp": 1728526563,
    }
    if sent_at is not None:
        data["sentAt"] = sent_at
    return {"event": "trade_update", "account": str(account_id), "data": data}


def _trade_frame(account_id: int, i: int) -> str:
    """The ``i``-th distinct ``trade_update`` of a blast, stamped with its send time."""
    return json.dumps(trade_update(account_id, 600_000_000_000_000_000 + i, time.time()))


async def _send_many(ws: ServerConnection, frames: list[str]) -> None:
    """Several text frames in one write, waiting while the peer's reading lags (flow control).

    websockets sends one message per ``send``, each its own write (a system call); this uses
    its sans-I/O layer (``protocol.send_text``) inside the connection's own send context, which
    then waits for the transport to drain.
    """
    async with ws.send_context():
        for frame in frames:
            ws.protocol.send_text(frame.encode())
        ws.transport.write(b"".join(ws.protocol.data_to_send()))
