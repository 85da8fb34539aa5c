"""A faithful in-process Axisor events server (the seed and PROTOCOLS.md §3).

- ``/ws``; the JWT (HS256 with the simulator's key, ``exp`` checked) as the handshake header
  ``Authorization: Bearer <JWT>`` or as the first message ``{"type": "auth", "token"}``. A bad
  one gets ``error`` ``AUTHENTICATION_FAILED`` and close 1008.
- the connection reply in the doc's variant (``connection``, ``status: connected``) or the
  server code's (``connection_established``): ``reply_variant``.
- rooms: ``user:<id>`` joined on auth; ``subscribe``/``unsubscribe`` answered with
  ``room_subscription``; ``list_rooms`` with ``room_list`` (ours: the doc names no answer);
  an unknown room is ``INVALID_ROOM``.
- at most ``rate_limit`` messages per window from one connection; beyond it ``error``
  ``RATE_LIMIT_EXCEEDED`` (doc) or ``{"error": "Rate limit exceeded"}`` (server code):
  ``error_shape``; the message is ignored.
- ``ping`` → ``pong`` (``answer_ping``); websockets pings at protocol level by itself.
- ``push`` sends events (market data to ``market:<symbol>`` subscribers, the rest to the user);
  ``SEED_EVENTS`` holds every example of the seed.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import jwt
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from bridge.testing.simulator import DemoSetup, WebSocketSimulator

SECRET = "fin2mqtt-axisor-simulator-signing-key-0123456789"  # noqa: S105 - a simulator's key
USER_ID = "user_123"
SEED_EVENTS = Path(__file__).with_name("seed_events.json")
TOPIC_ROOMS = frozenset(
    {"margin_guard", "positions", "notifications", "alerts", "system", "market_data"}
)
"""Rooms by topic the doc's examples subscribe to."""
MARKET_EVENTS = ("market_data_update", "historical_data_update")

Variant = Literal["doc", "server"]


def iso(ts: float | None = None) -> str:
    """An ISO 8601 UTC time with ``Z`` (now by default)."""
    when = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def seed_events() -> list[dict[str, Any]]:
    """The seed's ten example events."""
    events: list[dict[str, Any]] = json.loads(SEED_EVENTS.read_text())
    return events


@dataclass
class SimSession:
    """One authenticated connection."""

    user: str
    admin: bool
    rooms: set[str] = field(default_factory=set)
    sent: deque[float] = field(default_factory=deque)
    """When the client's messages of the current window arrived."""


class AxisorSimulator(WebSocketSimulator):
    """The Axisor events server; ``log`` and counters let tests see what the client did."""

    path = "/ws"

    def __init__(
        self,
        *,
        secret: str = SECRET,
        reply_variant: Variant = "doc",
        error_shape: Variant = "doc",
        rate_limit: tuple[int, float] = (100, 60.0),
        symbols: tuple[str, ...] = ("BTC_USD", "ETH_USD"),
        auth_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.secret = secret
        self.reply_variant: Variant = reply_variant
        self.error_shape: Variant = error_shape
        self.rate_limit = rate_limit
        self.symbols = set(symbols)
        self.auth_timeout = auth_timeout
        self.answer_ping = True
        self.answer_list_rooms = True
        self.sessions: dict[ServerConnection, SimSession] = {}
        self.auth_failures: list[str] = []
        self.auth_modes: list[str] = []
        """How each successful client authenticated: ``header`` or ``message``."""
        self.log: list[tuple[float, str]] = []
        """Every client message: (monotonic time, type)."""
        self.rate_limited = 0
        self.prices = {"BTC_USD": Decimal("43250.50"), "ETH_USD": Decimal("2350.25")}
        self._ids = itertools.count(1)

    # --- tokens ---------------------------------------------------------------------------

    def mint(self, *, expires_in: float = 3600.0, user: str = USER_ID, admin: bool = False) -> str:
        """A JWT for a user (signed with the simulator's key)."""
        now = time.time()
        claims = {"sub": user, "iat": int(now), "exp": int(now + expires_in), "admin": admin}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: Any) -> dict[str, Any] | None:
        """The claims of a good token, None for a bad or expired one."""
        try:
            claims: dict[str, Any] = jwt.decode(str(token), self.secret, algorithms=["HS256"])
        except jwt.PyJWTError:
            return None
        return claims

    # --- one client -----------------------------------------------------------------------

    async def session(self, ws: ServerConnection) -> None:
        """Authenticate, answer the connection, then rooms, pings and the rate limit."""
        header = ws.request.headers.get("Authorization", "") if ws.request else ""
        mode, token = "header", header.removeprefix("Bearer ").strip()
        if not header:
            mode = "message"
            try:
                first = await asyncio.wait_for(self.recv_json(ws), self.auth_timeout)
            except TimeoutError:
                first = {}
            self.log.append((time.monotonic(), str(first.get("type"))))
            token = str(first.get("token") or "") if first.get("type") == "auth" else ""
        claims = self.verify(token) if token else None
        if claims is None:
            self.auth_failures.append(mode)
            await self.send_error(ws, "AUTHENTICATION_FAILED", "Authentication failed")
            await ws.close(1008, "Authentication failed")
            return
        self.auth_modes.append(mode)
        user = str(claims["sub"])
        state = SimSession(user, bool(claims.get("admin")), {f"user:{user}"})
        self.sessions[ws] = state
        self.subscribe(ws)
        try:
            await self.send_json(ws, self.hello(user))
            while True:
                message = await self.recv_json(ws)
                self.log.append((time.monotonic(), str(message.get("type"))))
                if self._over_limit(state):
                    self.rate_limited += 1
                    await self.send_error(ws, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded")
                    continue
                await self._answer(ws, state, message)
        finally:
            self.sessions.pop(ws, None)
            self.changed()

    def hello(self, user: str) -> dict[str, Any]:
        """The connection reply in the configured variant."""
        n = next(self._ids)
        if self.reply_variant == "server":
            return {"type": "connection_established", "connectionId": f"conn_{n}",
                    "userId": user, "timestamp": iso()}  # fmt: skip
        return {"type": "connection", "status": "connected", "userId": user,
                "sessionId": f"session_{n}", "serverTime": iso()}  # fmt: skip

    def _over_limit(self, state: SimSession) -> bool:
        count, window = self.rate_limit
        now = time.monotonic()
        while state.sent and now - state.sent[0] >= window:
            state.sent.popleft()
        if len(state.sent) >= count:
            return True
        state.sent.append(now)
        return False

    def valid_room(self, state: SimSession, room: str) -> bool:
        """Rooms this server knows for this user."""
        kind, _, name = room.partition(":")
        if kind == "market":
            return name in self.symbols
        if kind == "user":
            return name == state.user
        if kind == "admin":
            return state.admin
        return room in TOPIC_ROOMS

    async def _answer(self, ws: ServerConnection, state: SimSession, message: Any) -> None:
        kind, room = message.get("type"), str(message.get("channel"))
        if kind == "subscribe":
            if not self.valid_room(state, room):
                await self.send_error(ws, "INVALID_ROOM", f"Invalid room: {room}")
                return
            state.rooms.add(room)
            await self._room_reply(ws, state, room, "subscribed")
        elif kind == "unsubscribe":
            state.rooms.discard(room)
            await self._room_reply(ws, state, room, "unsubscribed")
        elif kind == "list_rooms" and self.answer_list_rooms:
            await self.send_json(ws, {"type": "room_list", "subscribedRooms": sorted(state.rooms)})
        elif kind == "ping" and self.answer_ping:
            await self.send_json(ws, {"type": "pong", "timestamp": iso()})
        self.changed()

    async def _room_reply(
        self, ws: ServerConnection, state: SimSession, room: str, status: str
    ) -> None:
        reply = {"type": "room_subscription", "channel": room, "status": status,
                 "subscribedRooms": sorted(state.rooms)}  # fmt: skip
        await self.send_json(ws, reply)

    async def send_error(self, ws: ServerConnection, code: str, message: str) -> None:
        """An ``error`` in the configured shape."""
        if self.error_shape == "server":
            await self.send_json(ws, {"type": "error", "error": message})
        else:
            await self.send_json(ws, {"type": "error", "code": code, "message": message})

    # --- what tests and the demo look at and push -----------------------------------------

    def rooms(self) -> list[set[str]]:
        """The rooms of every authenticated connection."""
        return [set(s.rooms) for s in self.sessions.values()]

    def sent(self, kind: str) -> list[float]:
        """When the client sent messages of one type."""
        return [t for t, k in self.log if k == kind]

    async def push(self, frame: dict[str, Any]) -> int:
        """Send an event to the connections that should get it; returns how many did."""
        data = frame["data"] if isinstance(frame.get("data"), dict) else {}
        room = f"market:{data.get('symbol')}" if frame.get("type") in MARKET_EVENTS else None
        sent = 0
        for ws, state in list(self.sessions.items()):
            if room is None or room in state.rooms:
                try:
                    await ws.send(json.dumps(frame, default=str))
                except ConnectionClosed:
                    continue
                sent += 1
        return sent

    async def error_to_all(self, code: str, message: str) -> None:
        """An ``error`` frame to every authenticated connection (faults on demand)."""
        for ws in list(self.sessions):
            try:
                await self.send_error(ws, code, message)
            except ConnectionClosed:
                continue

    def market_frame(self, symbol: str) -> dict[str, Any]:
        """A ``market_data_update`` (random walk), prices as JSON numbers like the doc."""
        price = self.prices[symbol]
        step = Decimal(random.randint(-500, 500)) / 100  # noqa: S311 - simulated prices
        self.prices[symbol] = new = (price + step).quantize(Decimal("0.01"))
        return {"type": "market_data_update", "channel": "market_data",
                "data": {"symbol": symbol, "price": float(new), "change": float(new - price),
                         "changePercent": float(((new - price) / price * 100).quantize(
                             Decimal("0.01"))),
                         "volume": 1250000.00, "high24h": float(max(new, price)),
                         "low24h": float(min(new, price)), "timestamp": iso()}}  # fmt: skip

    def position_frame(self, *, distance: Decimal, at_risk: bool) -> dict[str, Any]:
        """A ``position_status_update`` of the user's BTC_USD position."""
        price = self.prices["BTC_USD"]
        pnl = ((price - Decimal(43000)) * Decimal("0.02")).quantize(Decimal("0.01"))
        return {"type": "position_status_update", "channel": "positions",
                "data": {"userId": USER_ID, "position": {
                    "id": "pos_123", "symbol": "BTC_USD", "side": "long", "size": 1000,
                    "entryPrice": 43000, "currentPrice": float(price), "margin": 100,
                    "leverage": 10, "pnl": float(pnl), "distanceToLiquidation": float(distance),
                    "isAtRisk": at_risk, "updatedAt": iso()}}}  # fmt: skip

    async def drive(self, interval: float = 1.0) -> None:
        """Prices every ``interval``; positions, alerts and the seed's other events now and then."""
        others = [e for e in seed_events() if e["type"] not in MARKET_EVENTS]
        for tick in itertools.count():
            await asyncio.sleep(interval)
            for symbol in self.prices:
                await self.push(self.market_frame(symbol))
            if tick % 3 == 0:
                distance = Decimal(random.randint(60, 99)) / 100  # noqa: S311
                await self.push(self.position_frame(distance=distance, at_risk=distance < 80))
            if tick % 7 == 6:
                event = json.loads(json.dumps(others[(tick // 7) % len(others)]))
                for key in ("id", "executionId"):  # a new fact each time, not a replay
                    if key in event["data"]:
                        event["data"][key] = f"{event['data'][key]}_{tick}"
                await self.push(event)


def demo() -> DemoSetup:
    """The ``fin2mqtt.simulators`` entry point."""
    sim = AxisorSimulator()
    return DemoSetup(
        simulator=sim,
        settings=lambda: {
            "url": sim.url,
            "token": sim.mint(expires_in=7 * 86400),
            "symbols": sorted(sim.prices),
            "retry_min": 0.2,
            "retry_max": 2.0,
        },
        drive=sim.drive,
    )
