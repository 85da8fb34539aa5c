"""Everything IBEX FI reads over HTTP, within the user's rate limits.

- polling: when the WebSocket has not been up for ``fallback_after`` seconds (at once when it
  was refused), read balances and transactions every ``poll_interval`` until it is back;
- reconciling: after every reconnect, read the transactions once (those pushed while the link
  was down; already published ones are dropped by the hub's deduplication);
- re-reading the user after a signal-only ``user_iban_updated`` / ``user_ky_updated``.

All requests share the provider's ``RateLimiter`` (100 per minute, 20 per 10 s by default).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from bridge.api import (
    AnyEvent,
    AuthFailure,
    Backoff,
    FallbackPoller,
    HttpClient,
    LinkFailure,
    ProviderContext,
    RateLimiter,
    RawEvent,
    UpstreamConfigFailure,
    stable_id,
    to_json,
)
from fin2mqtt_ibex.auth import TokenGate
from fin2mqtt_ibex.parse import (
    Naming,
    parse_balances_response,
    parse_transactions_response,
    parse_user,
)
from fin2mqtt_ibex.settings import IbexSettings

BALANCES = "/v1.2/users/me/balances"
TRANSACTIONS = "/v1.2/users/me/transactions"
USER = "/v1.2/users/me"

Parser = Callable[[Naming, Any, datetime], list[AnyEvent]]


class IbexFallback(FallbackPoller):
    """The HTTP side of one IBEX FI user; the core decides when to poll."""

    def __init__(
        self,
        settings: IbexSettings,
        naming: Naming,
        ctx: ProviderContext,
        gate: TokenGate,
        limiter: RateLimiter,
        user_changed: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.naming = naming
        self.ctx = ctx
        self.gate = gate
        self.limiter = limiter
        self.user_changed = user_changed
        self.after = settings.fallback_after
        self.interval = settings.poll_interval
        self.polls = 0
        self._http: HttpClient | None = None

    async def __aenter__(self) -> Self:
        """Open the HTTP client (shared by polls, reconciliations and user re-reads)."""
        s = self.settings
        self._http = await HttpClient(
            s.api_url,
            headers=self._headers,
            limiter=self.limiter,
            timeout=s.http_timeout,
            retries=2,
            backoff=Backoff(s.retry_min, s.retry_max),
        ).__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.__aexit__(exc_type, exc, tb)
            self._http = None

    async def _headers(self) -> dict[str, str]:
        token = self.gate.current or await self.gate.fresh()
        return {"Authorization": f"Bearer {token}"}

    async def poll(self) -> None:
        """Balances and transactions, while the WebSocket is down."""
        self.polls += 1
        balances = await self._read(BALANCES, parse_balances_response)
        self.ctx.emit([*balances, *await self._transactions()])

    async def reconnected(self) -> None:
        """The transactions pushed while the WebSocket was down (the hub drops known ones)."""
        await self._quietly("reconciling transactions after a reconnect", self._transactions())

    async def serve(self) -> None:
        """Re-read the user after each signal-only update (``user_iban_updated`` …)."""
        while True:
            await self.user_changed.wait()
            self.user_changed.clear()
            what = "re-reading the user after an update signal"
            await self._quietly(what, self._read(USER, parse_user))

    async def _transactions(self) -> list[AnyEvent]:
        params: dict[str, str | int] = {"limit": self.settings.transactions_limit, "offset": 0}
        return await self._read(TRANSACTIONS, parse_transactions_response, params)

    async def _quietly(self, what: str, read: Awaitable[list[AnyEvent]]) -> None:
        """One read whose failure is logged, not fatal (the next signal or poll repairs it)."""
        try:
            self.ctx.emit(await read)
        except LinkFailure as exc:
            self.ctx.logger.warning("%s failed: %s", what, exc)

    # --- one request ------------------------------------------------------------------------

    async def _read(
        self,
        path: str,
        parser: Parser,
        params: dict[str, str | int] | None = None,
    ) -> list[AnyEvent]:
        """GET and parse; a 401 re-reads the token once; an unexpected body is published raw."""
        http = self._http
        assert http is not None, "IbexFallback is used inside async with"
        try:
            body = await http.get_json(path, params)
        except AuthFailure:
            self.gate.refused()
            previous = self.gate.current
            if await self._fresh_token_now() == previous:
                raise
            body = await http.get_json(path, params)
        received_at = self.ctx.now()
        try:
            return parser(self.naming, body, received_at)
        except (ValueError, TypeError, KeyError) as exc:
            self.ctx.emit([self._unexpected(path, body, received_at, exc)])
            raise UpstreamConfigFailure(f"GET {path}: unexpected answer: {exc}") from None

    async def _fresh_token_now(self) -> str | None:
        """The source's token if it is usable right now (no waiting), else None."""
        return await self.gate.usable()

    def _unexpected(self, path: str, body: Any, received_at: datetime, exc: Exception) -> RawEvent:
        return RawEvent(
            provider=self.naming.instance,
            id=stable_id(self.naming.instance, "http", path, received_at.isoformat()),
            received_at=received_at,
            name=f"GET {path}",
            data=to_json(body),
            error=f"{type(exc).__name__}: {exc}",
        )
