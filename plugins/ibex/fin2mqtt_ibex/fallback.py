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
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bridge.api import (
    AnyEvent,
    AuthFailure,
    DoNotReconnect,
    LinkFailure,
    RawEvent,
    UpstreamConfigFailure,
    stable_id,
)
from bridge.backoff import Backoff
from bridge.http import HttpClient, RateLimiter
from bridge.links.reconnect import Reconnector
from fin2mqtt_ibex.auth import TokenGate
from fin2mqtt_ibex.feed import FeedContext
from fin2mqtt_ibex.parse import (
    Naming,
    parse_balances_response,
    parse_transactions_response,
    parse_user,
    to_json,
)
from fin2mqtt_ibex.settings import IbexSettings

BALANCES = "/v1.2/users/me/balances"
TRANSACTIONS = "/v1.2/users/me/transactions"
USER = "/v1.2/users/me"

Parser = Callable[[Naming, Any, datetime], list[AnyEvent]]


class Fallback:
    """The HTTP side of one IBEX FI instance; ``run`` until cancelled."""

    def __init__(
        self,
        settings: IbexSettings,
        naming: Naming,
        feed: FeedContext,
        gate: TokenGate,
        reconnector: Reconnector,
        limiter: RateLimiter,
        user_changed: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.naming = naming
        self.feed = feed
        self.gate = gate
        self.reconnector = reconnector
        self.limiter = limiter
        self.user_changed = user_changed
        self.polls = 0

    async def run(self) -> None:
        """Poll when needed, reconcile after reconnects, re-read the user on signals."""
        s = self.settings
        async with (
            HttpClient(
                s.api_url,
                headers=self._headers,
                limiter=self.limiter,
                timeout=s.http_timeout,
                retries=2,
                backoff=Backoff(s.retry_min, s.retry_max),
            ) as http,
            asyncio.TaskGroup() as tg,
        ):
            tg.create_task(self._poll_when_needed(http), name="ibex-poll")
            tg.create_task(self._reconcile_after_reconnects(http), name="ibex-reconcile")
            tg.create_task(self._reread_user_on_signal(http), name="ibex-user")

    async def _headers(self) -> dict[str, str]:
        token = self.gate.current or await self.gate.fresh()
        return {"Authorization": f"Bearer {token}"}

    # --- polling ----------------------------------------------------------------------------

    async def _poll_when_needed(self, http: HttpClient) -> None:
        while True:
            await self.feed.wait(self._pollable)
            if not await self._websocket_given_up():
                continue
            self.feed.polling_started(self.settings.poll_interval)
            try:
                async with asyncio.TaskGroup() as tg:
                    poller = tg.create_task(self._poll_forever(http), name="ibex-poll-loop")
                    await self.feed.wait(lambda: not self._pollable())
                    poller.cancel()
            finally:
                self.feed.polling_stopped()

    def _pollable(self) -> bool:
        """The WebSocket is down for a reason HTTP does not share (not the token's fault)."""
        return not self.feed.connected and self.feed.ws_state != "auth_failed"

    def _refused(self) -> bool:
        """The server will not take the WebSocket for a while (duplicate session, config)."""
        failure = self.reconnector.last_failure
        return self._pollable() and isinstance(failure, DoNotReconnect | UpstreamConfigFailure)

    async def _websocket_given_up(self) -> bool:
        """Wait until the WebSocket was refused, or down for ``fallback_after``; False when it
        came back first or the token is the trouble (HTTP would be refused as well)."""
        feed = self.feed
        deadline = feed.down_since + self.settings.fallback_after
        await feed.wait(
            lambda: not self._pollable() or self._refused(),
            max(0.0, deadline - time.monotonic()),
        )
        return self._pollable()

    async def _poll_forever(self, http: HttpClient) -> None:
        s = self.settings
        backoff = Backoff(s.retry_min, s.retry_max)
        while True:
            started = time.monotonic()
            try:
                await self._poll_once(http)
            except LinkFailure as exc:
                self.feed.poll_result(str(exc))
                pause = max(backoff.next(), s.poll_interval)
            else:
                self.feed.poll_result(None)
                backoff.reset()
                pause = s.poll_interval - (time.monotonic() - started)
            await asyncio.sleep(max(0.0, pause))

    async def _poll_once(self, http: HttpClient) -> None:
        self.polls += 1
        balances = await self._read(http, BALANCES, parse_balances_response)
        self.feed.emit([*balances, *await self._transactions(http)])

    async def _transactions(self, http: HttpClient) -> list[AnyEvent]:
        params: dict[str, str | int] = {"limit": self.settings.transactions_limit, "offset": 0}
        return await self._read(http, TRANSACTIONS, parse_transactions_response, params)

    # --- reconciling and user re-reads -------------------------------------------------------

    async def _reconcile_after_reconnects(self, http: HttpClient) -> None:
        seen = 0
        while True:
            await self.feed.wait(functools.partial(self._connected_since, seen))
            first = seen == 0
            seen = self.feed.connections
            if not first:
                what = "reconciling transactions after a reconnect"
                await self._quietly(what, self._transactions(http))

    def _connected_since(self, seen: int) -> bool:
        return self.feed.connections > seen

    async def _reread_user_on_signal(self, http: HttpClient) -> None:
        while True:
            await self.user_changed.wait()
            self.user_changed.clear()
            what = "re-reading the user after an update signal"
            await self._quietly(what, self._read(http, USER, parse_user))

    async def _quietly(self, what: str, read: Awaitable[list[AnyEvent]]) -> None:
        """One read whose failure is logged, not fatal (the next signal or poll repairs it)."""
        try:
            self.feed.emit(await read)
        except LinkFailure as exc:
            self.feed.logger.warning("%s failed: %s", what, exc)

    # --- one request ------------------------------------------------------------------------

    async def _read(
        self,
        http: HttpClient,
        path: str,
        parser: Parser,
        params: dict[str, str | int] | None = None,
    ) -> list[AnyEvent]:
        """GET and parse; a 401 re-reads the token once; an unexpected body is published raw."""
        try:
            body = await http.get_json(path, params)
        except AuthFailure:
            self.gate.refused()
            previous = self.gate.current
            if await self._fresh_token_now() == previous:
                raise
            body = await http.get_json(path, params)
        received_at = self.feed.now()
        try:
            return parser(self.naming, body, received_at)
        except (ValueError, TypeError, KeyError) as exc:
            self.feed.emit([self._unexpected(path, body, received_at, exc)])
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
