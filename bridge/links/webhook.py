"""A webhook link: a route on the daemon's shared webhook server instead of a connection."""

from __future__ import annotations

import asyncio

from bridge.api import Link, ProviderContext
from bridge.webhooks import WebhookRoute


class WebhookLink(Link):
    """Registers a route for the provider; accepted bodies go to ``ProviderContext.deliver``."""

    def __init__(
        self, ctx: ProviderContext, route: WebhookRoute, *, account: str | None = None
    ) -> None:
        self.ctx = ctx
        self.route = route
        self.account = account
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Serve the route until ``close``; the link is ``connected`` while the server listens."""
        server = self.ctx.webhooks
        server.add(self.route, self.ctx.deliver)
        try:
            self.ctx.set_link_state("connecting", account=self.account)
            await server.listening.wait()
            self.ctx.set_link_state("connected", account=self.account)
            await self._stop.wait()
        finally:
            server.remove(self.route.path)

    async def close(self) -> None:
        """Stop accepting posts on the route."""
        self._stop.set()
