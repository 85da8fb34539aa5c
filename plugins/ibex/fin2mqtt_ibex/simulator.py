"""A faithful in-process IBEX FI API (PROTOCOLS.md §1): the WebSocket and the HTTP fallback.

- ``/ws``: the client sends ``{"type": "auth", "token"}``; the JWT must verify (HS256 with the
  simulator's key), carry ``exp`` in the future and ``iss`` equal to the rpId of the Host
  header. Otherwise ``auth_error`` (``TOKEN_EXPIRED`` / ``INVALID_TOKEN``) and close 1008.
  A second connection of the user gets ``auth_error`` ``ALREADY_CONNECTED`` and close 4003.
- after auth: ``auth_success``, ``connection_success``, then the burst in shuffled order, with
  ``user_data`` twice; then updates pushed by the test (``update_balance``, ``add_transaction``,
  ``set_kyc``, ``set_iban``), in the v1.1 or v1.2 generation (``generation``).
- with ``enforce_expiry`` an authenticated connection whose token expires gets ``auth_error``
  ``TOKEN_EXPIRED`` and close 1008.
- HTTP (same host): ``GET /v1.2/users/me``, ``/v1.2/users/me/balances``,
  ``/v1.2/users/me/transactions`` with ``Authorization: Bearer <JWT>`` (401 otherwise), the
  documented rate limits (429 beyond them, counted in ``rate_limited``), ``http_fail`` to
  answer every request with a status such as 500, ``html_body`` to answer with a maintenance page.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.testing.simulator import (
    DemoSetup,
    WebSocketSimulator,
    json_response,
    text_response,
)
from fin2mqtt_ibex.auth import rp_id_of

SECRET = "fin2mqtt-ibex-simulator-signing-key-0123456789"  # noqa: S105 - a simulator's key
"""HS256 key of the simulator's JWTs (pyjwt warns about HMAC keys under 32 bytes)."""
USER_ID = "user-42"
MAIN_SAFE = "0x" + "a1" * 20
SAVINGS_SAFE = "0x" + "b2" * 20
CHAIN = 100
EURE = "0x" + "e0" * 20

Generation = Literal["v1.1", "v1.2"]

MAINTENANCE_PAGE = "<html><body><h1>Scheduled maintenance</h1></body></html>"


def iso(ts: float | None = None) -> str:
    """An ISO-8601 UTC timestamp (now by default)."""
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat()


@dataclass
class SimSafe:
    """One Safe of the simulated user."""

    address: str
    tokens: dict[str, Decimal] = field(default_factory=lambda: {"EURe": Decimal("100.00")})
    transactions: list[dict[str, Any]] = field(default_factory=list)
    iban: str | None = "approved"
    """approved / pending / rejected / None (never requested)."""
    recovery_pending: bool = False


@dataclass
class Session:
    """One authenticated WebSocket."""

    id: str
    ws: ServerConnection
    expires_at: float


class IbexSimulator(WebSocketSimulator):
    """The IBEX FI API; counters and logs let tests see what the client did."""

    path = "/ws"

    def __init__(
        self,
        *,
        secret: str = SECRET,
        rate_limits: Sequence[tuple[int, float]] = ((100, 60.0), (20, 10.0)),
        generation: Generation = "v1.2",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.secret = secret
        self.rate_limits = list(rate_limits)
        self.generation: Generation = generation
        self.random = random.Random(seed)  # noqa: S311 - shuffles a burst, not a secret
        self.kyc = "1"
        self.safes = {a: SimSafe(a) for a in (MAIN_SAFE, SAVINGS_SAFE)}
        self.safes[SAVINGS_SAFE].iban = None
        self.safes[SAVINGS_SAFE].tokens = {"EURe": Decimal("2500.50"), "USDC": Decimal("12.5")}
        self.sessions: dict[str, Session] = {}
        self.enforce_expiry = False
        self.auth_failures: list[str] = []
        self.http_log: list[tuple[float, str, int]] = []
        """Every HTTP request: (monotonic time, path, status answered)."""
        self.http_fail: int | None = None
        self.html_body = False
        self.repeat_gap = 0.25
        """Seconds between the burst and its closing repetition of ``user_data``."""
        """Answer HTTP reads with a maintenance page (200, text/html) instead of JSON."""
        self.rate_limited = 0
        self._ids = itertools.count(1)
        self._tx = itertools.count(1)
        for safe in self.safes.values():
            self.add_transaction(safe.address, Decimal("100.00"), "IN", push=False)

    # --- tokens ---------------------------------------------------------------------------

    def mint(self, *, expires_in: float = 3600.0, issuer: str = "127.0.0.1") -> str:
        """A JWT for the simulated user."""
        now = time.time()
        claims = {"sub": USER_ID, "iss": issuer, "iat": int(now), "exp": now + expires_in}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token: Any, host: str) -> tuple[str | None, dict[str, Any]]:
        """``(error_code, claims)``: error_code None when the token is good for this host."""
        rp_id = rp_id_of(host.rsplit(":", 1)[0])
        try:
            claims = jwt.decode(
                str(token), self.secret, algorithms=["HS256"], issuer=rp_id, leeway=0
            )
        except jwt.ExpiredSignatureError:
            return "TOKEN_EXPIRED", {}
        except jwt.PyJWTError:
            return "INVALID_TOKEN", {}
        return None, claims

    # --- the WebSocket --------------------------------------------------------------------

    async def session(self, ws: ServerConnection) -> None:
        """Auth, the burst, then whatever the client asks."""
        message = await self.recv_json(ws)
        if message.get("type") != "auth":
            await ws.close(4001, "authentication required")
            return
        host = ws.request.headers.get("Host", "") if ws.request else ""
        code, claims = self.verify(message.get("token"), host)
        if code is not None:
            self.auth_failures.append(code)
            text = (
                "JWT token expired, please refresh your token"
                if code == "TOKEN_EXPIRED"
                else ("Invalid JWT token")
            )
            await self._auth_error(ws, code, text)
            await ws.close(1008, text)
            return
        if self.sessions:
            existing = next(iter(self.sessions))
            self.auth_failures.append("ALREADY_CONNECTED")
            await self._auth_error(
                ws, "ALREADY_CONNECTED", "User already connected", existingConnectionId=existing
            )
            await ws.close(4003, "Duplicate session")
            return
        sid = f"conn-{next(self._ids)}"
        self.sessions[sid] = Session(sid, ws, float(claims["exp"]))
        self.changed()
        try:
            await self._welcome(ws)
            async with asyncio.TaskGroup() as tg:
                expiry = None
                if self.enforce_expiry:
                    expiry = tg.create_task(self._expire(ws, float(claims["exp"])))
                await self._serve(ws)
                if expiry is not None:
                    expiry.cancel()
        finally:
            self.sessions.pop(sid, None)
            self.changed()

    async def _auth_error(self, ws: ServerConnection, code: str, text: str, **extra: Any) -> None:
        data = {"message": text, "error_code": code, "context": "auth_process", **extra}
        await self.send_json(ws, self.envelope("auth_error", data))

    async def _welcome(self, ws: ServerConnection) -> None:
        body = {"safeAddress": MAIN_SAFE, "message": "Connected to real-time updates"}
        await self.send_json(ws, self.envelope("auth_success", body))
        await self.send_json(ws, self.envelope("connection_success", body))
        burst = self.burst()
        for message in burst[:-1]:
            await self.send_json(ws, message)
        if self.repeat_gap:
            await asyncio.sleep(self.repeat_gap)  # the second user_data comes a moment later
        await self.send_json(ws, burst[-1])

    async def _serve(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await self.recv_json(ws)
                if message.get("type") == "get_balance":
                    for safe in self.safes.values():
                        reply = self.envelope("balance_data", self.balance_data(safe))
                        await self.send_json(ws, {**reply, "requestId": message.get("requestId")})

    async def _expire(self, ws: ServerConnection, exp: float) -> None:
        await asyncio.sleep(max(0.0, exp - time.time()))
        self.auth_failures.append("TOKEN_EXPIRED")
        text = "JWT token expired, please refresh your token"
        with contextlib.suppress(ConnectionClosed):
            await self._auth_error(ws, "TOKEN_EXPIRED", text)
        await ws.close(1008, text)

    def envelope(self, kind: str, data: Any) -> dict[str, Any]:
        """``{"type", "data", "timestamp"}``."""
        return {"type": kind, "data": data, "timestamp": iso()}

    def burst(self) -> list[dict[str, Any]]:
        """What follows ``auth_success``: order shuffled, ``user_data`` early and again last."""
        middle = [
            self.envelope("chainid_data", {"defaultChainId": CHAIN, "supportedChainIds": [CHAIN]})
        ]
        for safe in self.safes.values():
            middle.append(self.envelope("balance_data", self.balance_data(safe)))
            middle.append(self.envelope("transaction_data", self.transaction_data(safe)))
            middle.append(self.envelope("recovery_data", self.recovery_data(safe)))
        self.random.shuffle(middle)
        user = self.envelope("user_data", self.user_data())
        return [user, *middle, user]

    # --- payloads -------------------------------------------------------------------------

    def user_data(self) -> dict[str, Any]:
        """The user: KYC as the raw ``ky`` and, per Safe, ``iban`` only when approved."""
        safes = []
        for safe in self.safes.values():
            entry: dict[str, Any] = {"address": safe.address, "threshold": 1, "owners": 1}
            if safe.iban == "approved":
                entry["iban"] = {"chainId": CHAIN}
            safes.append(entry)
        return {"id": USER_ID, "ky": self.kyc, "signers": [{"id": "signer-1", "safes": safes}]}

    def balance_data(self, safe: SimSafe) -> dict[str, Any]:
        """``balance_data`` in the current generation's shape."""
        if self.generation == "v1.1":
            inner = {"address": safe.address, "balance": str(safe.tokens.get("EURe", 0))}
            return {"safeAddress": safe.address, "balance": {"timestamp": iso(), "balance": inner}}
        return {
            "mode": "initial",
            "safeAddress": safe.address,
            "balance": {"tokens": self.tokens(safe), "pending": []},
            "blockchainId": str(CHAIN),
        }

    def tokens(self, safe: SimSafe) -> list[dict[str, Any]]:
        """The token list of a Safe (v1.2 and HTTP)."""
        return [
            {"symbol": symbol, "decimals": 18, "balance": str(amount), "value_eur": str(amount)}
            for symbol, amount in safe.tokens.items()
        ]

    def transaction_data(self, safe: SimSafe) -> dict[str, Any]:
        """``transaction_data`` in the current generation's shape."""
        if self.generation == "v1.1":
            items = [self.v11_transaction(tx) for tx in safe.transactions]
            return {"safeAddress": safe.address, "transactions": {"data": items}}
        return {
            "mode": "initial",
            "safeAddress": safe.address,
            "crypto": {
                "blockchainId": CHAIN,
                "total": len(safe.transactions),
                "page": 1,
                "limit": 50,
                "totalPages": 1,
                "data": safe.transactions[-50:],
            },
        }

    @staticmethod
    def v11_transaction(tx: dict[str, Any]) -> dict[str, Any]:
        """A transaction as v1.1 lists it (``transactionHash``, no token fields)."""
        keep = ("blockNumber", "timestamp", "from", "to", "value", "direction")
        return {"transactionHash": tx["hash"], **{k: tx[k] for k in keep}}

    def recovery_data(self, safe: SimSafe) -> dict[str, Any]:
        """``recovery_data`` of a Safe."""
        return {
            "safeAddress": safe.address,
            "recoveryEnabled": safe.recovery_pending,
            "recoveryAddress": None,
            "delay": 86400 if safe.recovery_pending else None,
            "pendingRecovery": safe.recovery_pending,
            "canExecute": False,
            "executeAfter": iso(time.time() + 86400) if safe.recovery_pending else None,
        }

    # --- updates pushed by tests and the demo -----------------------------------------------

    async def push(self, kind: str, data: Any) -> int:
        """Send one message to every authenticated client; returns how many got it."""
        sent = 0
        for session in list(self.sessions.values()):
            with contextlib.suppress(ConnectionClosed):
                await session.ws.send(json.dumps(self.envelope(kind, data)))
                sent += 1
        return sent

    async def update_balance(self, address: str, symbol: str, amount: Decimal) -> None:
        """Change a balance and push ``balance_update`` (v1.1: wei string; v1.2: token list)."""
        safe = self.safes[address]
        safe.tokens[symbol] = amount
        if self.generation == "v1.1" and symbol == "EURe":
            wei = str(int(amount.scaleb(18)))
            await self.push(
                "balance_update", {"address": address, "balance": wei, "updated_at": iso()}
            )
        else:
            body = {"tokens": self.tokens(safe), "pending": []}
            await self.push("balance_update", {"safeAddress": address, "balance": body})

    def add_transaction(
        self, address: str, value: Decimal, direction: str = "IN", *, push: bool = True
    ) -> dict[str, Any]:
        """Record a transaction; ``push_transaction`` sends it."""
        n = next(self._tx)
        other = "0x" + f"{n:040x}"
        tx = {
            "hash": "0x" + f"{n:064x}",
            "blockNumber": 1_000_000 + n,
            "timestamp": iso(),
            "from": other if direction == "IN" else address,
            "to": address if direction == "IN" else other,
            "tokenAddress": EURE,
            "tokenType": "ERC20",
            "tokenSymbol": "EURe",
            "value": str(value),
            "direction": direction,
        }
        self.safes[address].transactions.append(tx)
        return tx

    async def push_transaction(self, address: str, value: Decimal, direction: str = "IN") -> None:
        """A new transaction: ``new_transaction`` with the recent ones."""
        tx = self.add_transaction(address, value, direction)
        recent = self.safes[address].transactions[-5:]
        body = {
            "address": address,
            "newTransaction": tx,
            "recentTransactions": recent,
            "transactionCount": len(self.safes[address].transactions),
            "historyLimit": 5,
        }
        await self.push("new_transaction", body)

    async def set_kyc(self, ky: str) -> None:
        """KYC changes: v1.1 one ``user.ky.updated`` per Safe; v1.2 a signal to re-read."""
        previous, self.kyc = self.kyc, ky
        if self.generation == "v1.2":
            await self.push("user_ky_updated", {"ky": "changed"})
            return
        for safe in self.safes.values():
            body = {
                "safeAddress": safe.address,
                "previousKyc": previous,
                "newKyc": ky,
                "updatedAt": iso(),
            }
            await self.push("user.ky.updated", body)

    async def set_iban(self, address: str, state: str) -> None:
        """IBAN status changes: v1.1 ``user.iban.updated``; v1.2 a signal to re-read."""
        safe = self.safes[address]
        previous, safe.iban = safe.iban, state
        if self.generation == "v1.2":
            await self.push("user_iban_updated", {"iban": "changed"})
            return
        body = {
            "safeAddress": address,
            "previousState": previous or "UNKNOWN",
            "newState": state,
            "updatedAt": iso(),
        }
        await self.push("user.iban.updated", body)

    # --- HTTP -----------------------------------------------------------------------------

    def http_request(self, request: Request) -> Response | None:
        """The REST endpoints, with auth and rate limits."""
        url = urlsplit(request.path)
        if not url.path.startswith("/v1.2/"):
            return None
        if self.html_body:
            self.http_log.append((time.monotonic(), url.path, 200))
            return text_response(200, MAINTENANCE_PAGE)
        status, body = self._http(request, url.path, parse_qs(url.query))
        self.http_log.append((time.monotonic(), url.path, status))
        return json_response(status, body)

    def _http(self, request: Request, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if self._over_limit():
            self.rate_limited += 1
            return 429, {"error": "Too Many Requests"}
        if self.http_fail is not None:
            return self.http_fail, {"error": "simulated failure"}
        auth = request.headers.get("Authorization", "")
        code, _ = self.verify(auth.removeprefix("Bearer "), request.headers.get("Host", ""))
        if not auth.startswith("Bearer ") or code is not None:
            return 401, {"error": "Unauthorized", "code": code}
        if path == "/v1.2/users/me":
            return 200, self.user_data()
        if path == "/v1.2/users/me/balances":
            crypto = {
                str(CHAIN): {
                    s.address: {"tokens": self.tokens(s), "pending": []}
                    for s in self.safes.values()
                }
            }
            return 200, {"timestamp": iso(), "crypto": crypto, "fiat": {}, "totals": {}}
        if path == "/v1.2/users/me/transactions":
            limit = int(query.get("limit", ["50"])[0])
            offset = int(query.get("offset", ["0"])[0])
            every = [
                {**tx, "safeAddress": s.address}
                for s in self.safes.values()
                for tx in s.transactions
            ]
            every.sort(key=lambda tx: tx["blockNumber"], reverse=True)
            page = every[offset : offset + limit]
            return 200, {"data": page, "total": len(every), "limit": limit, "offset": offset}
        return 404, {"error": "Not Found"}

    def _over_limit(self) -> bool:
        now = time.monotonic()
        return any(
            sum(1 for t, _, _ in self.http_log if now - t < period) >= count
            for count, period in self.rate_limits
        )

    def most_in_any_window(self, period: float, paths: Sequence[str] | None = None) -> int:
        """The most requests seen within any ``period`` seconds (the client's peak rate)."""
        times = [t for t, p, _ in self.http_log if paths is None or p in paths]
        best = 0
        for i, start in enumerate(times):
            best = max(best, sum(1 for t in times[i:] if t - start < period))
        return best


def demo() -> DemoSetup:
    """``fin2mqtt demo``: the simulator, a valid token, and a wallet that sees some activity."""
    sim = IbexSimulator()

    def settings() -> dict[str, Any]:
        return {
            "api_url": f"http://127.0.0.1:{sim.port}",
            "token": sim.mint(expires_in=7 * 86400),
            "safes": [
                {"address": MAIN_SAFE, "alias": "main"},
                {"address": SAVINGS_SAFE, "alias": "savings"},
            ],
        }

    async def drive() -> None:
        balance = Decimal("100.00")
        for n in itertools.count(1):
            await asyncio.sleep(2.0)
            amount = Decimal(sim.random.randint(1, 2000)) / 100
            balance += amount
            await sim.push_transaction(MAIN_SAFE, amount)
            await sim.update_balance(MAIN_SAFE, "EURe", balance)
            if n % 5 == 0:
                await sim.set_kyc("2" if sim.kyc != "2" else "1")

    return DemoSetup(sim, settings, drive)
