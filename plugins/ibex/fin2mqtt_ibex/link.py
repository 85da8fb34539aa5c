"""One IBEX FI user's link: the WebSocket (one per user, ever) and the HTTP side beside it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bridge.api import AuthFailure, Link, ProviderContext
from bridge.http import RateLimiter
from bridge.links.websocket import Endpoint, WebSocketLink, WebSocketOptions
from bridge.tokens import renew_when_due
from fin2mqtt_ibex.auth import TokenGate
from fin2mqtt_ibex.fallback import Fallback
from fin2mqtt_ibex.feed import FeedContext
from fin2mqtt_ibex.parse import Naming

if TYPE_CHECKING:
    from fin2mqtt_ibex import IbexProvider


class IbexLink(Link):
    """The WebSocket with its token gate, and the fallback poller watching it."""

    def __init__(
        self,
        provider: IbexProvider,
        ctx: ProviderContext,
        naming: Naming,
        limiter: RateLimiter,
        user_changed: asyncio.Event,
    ) -> None:
        s = provider.settings
        self.settings = s
        self.feed = FeedContext(ctx)
        self.source = s.source()
        options = WebSocketOptions(
            # the token gate decides when a refused token may be tried again
            retry=s.retry_policy(auth_retry=s.retry_min, hold_off=s.duplicate_retry),
        )
        self.websocket = WebSocketLink(
            self.feed, provider, self._endpoint, options=options, renew=self._renew
        )
        self.gate = TokenGate(
            self.source,
            s.expected_issuer,
            self.feed,
            self.websocket.reconnector.closing,
            poll=s.token_poll,
            retry_refused=s.auth_retry,
        )
        self.fallback = Fallback(
            s, naming, self.feed, self.gate, self.websocket.reconnector, limiter, user_changed
        )

    async def run(self) -> None:
        """Hold the WebSocket; the HTTP side runs beside it until the link is closed."""
        async with asyncio.TaskGroup() as tg:
            http = tg.create_task(self.fallback.run(), name="ibex-http")
            await self.websocket.run()
            http.cancel()

    async def close(self) -> None:
        """Close the WebSocket (``run`` then stops the HTTP side)."""
        await self.websocket.close()

    async def _endpoint(self) -> Endpoint:
        if isinstance(self.websocket.reconnector.last_failure, AuthFailure):
            self.gate.refused()
        await self.gate.fresh()
        return Endpoint(self.settings.websocket_url)

    async def _renew(self) -> str:
        """Reconnect with a fresher token shortly before the current one expires."""
        current = self.gate.current
        assert current is not None
        return await renew_when_due(self.source, current, poll=self.settings.token_poll)
