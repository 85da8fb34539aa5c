"""A webhook link: a route on the daemon's shared webhook server instead of a connection."""

from __future__ import annotations

import asyncio

from bridge.links.session import LinkContext
from bridge.links.webhook_server import WebhookRoute, WebhookServer
from bridge.plugin.provider import Link


class WebhookLink(Link):
    """A route whose accepted bodies go to ``parse``; ``connected`` while the server listens."""

    def __init__(self, ctx: LinkContext, server: WebhookServer, route: WebhookRoute) -> None:
        self.ctx = ctx
        self.server = server
        self.route = route
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Serve the route until ``close``."""
        self.server.add(self.route, self.ctx.deliver)
        try:
            self.ctx.report("connecting")
            await self.server.listening.wait()
            self.ctx.report("connected")
            await self._stop.wait()
        finally:
            self.server.remove(self.route.path)

    async def close(self) -> None:
        """Stop accepting posts on the route."""
        self._stop.set()
