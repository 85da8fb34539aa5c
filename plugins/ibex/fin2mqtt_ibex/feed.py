"""The instance's link topic when the data can come two ways: the WebSocket, or HTTP polling.

``FeedContext`` wraps the core's context. The WebSocket link (and the token gate) report their
state to it as to any context; it publishes ``connected`` while the WebSocket is up, ``fallback``
(with the WebSocket's trouble as ``error``) while polling keeps the data fresh, and the
WebSocket's own state otherwise. The fallback poller waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from bridge.api import AnyEvent, LinkStateName, ProviderContext
from bridge.webhooks import WebhookServer


class FeedContext:
    """``ProviderContext`` for the WebSocket link, composing its state with the poller's."""

    def __init__(self, ctx: ProviderContext) -> None:
        self._ctx = ctx
        self.ws_state: LinkStateName = "connecting"
        self.ws_error: str | None = None
        self.trouble: str | None = None
        """The last reason the WebSocket was not connected."""
        self.down_since = time.monotonic()
        self.connections = 0
        """Times the WebSocket reached ``connected``."""
        self.polling = False
        self.poll_ok = False
        """True once a poll worked (and until one fails)."""
        self.poll_error: str | None = None
        self.poll_interval = 0.0
        self._changed = asyncio.Event()

    # --- ProviderContext, passed through ----------------------------------------------------

    @property
    def instance(self) -> str:
        """The instance name."""
        return self._ctx.instance

    @property
    def logger(self) -> logging.Logger:
        """The instance's logger."""
        return self._ctx.logger

    @property
    def webhooks(self) -> WebhookServer:
        """The daemon's webhook server."""
        return self._ctx.webhooks

    def now(self) -> datetime:
        """The current time (UTC)."""
        return self._ctx.now()

    def deliver(self, frame: Any) -> None:
        """Parse and publish one frame."""
        self._ctx.deliver(frame)

    def emit(self, events: Iterable[AnyEvent]) -> None:
        """Publish events built outside ``parse``."""
        self._ctx.emit(events)

    # --- state ------------------------------------------------------------------------------

    def set_link_state(
        self, state: LinkStateName, *, error: str | None = None, account: str | None = None
    ) -> None:
        """The WebSocket's state (from its reconnect loop or the token gate)."""
        if state == "connected" and self.ws_state != "connected":
            self.connections += 1
            self.trouble = None
        elif state != "connected" and self.ws_state == "connected":
            self.down_since = time.monotonic()
        self.ws_state, self.ws_error = state, error
        if error is not None:
            self.trouble = error
        self._publish()

    @property
    def connected(self) -> bool:
        """True while the WebSocket is up and authenticated."""
        return self.ws_state == "connected"

    def polling_started(self, interval: float) -> None:
        """The poller took over."""
        self.polling, self.poll_ok, self.poll_error = True, False, None
        self.poll_interval = interval
        self._ctx.logger.warning(
            "WebSocket unavailable (%s): polling over HTTP every %g s",
            self.trouble or self.ws_state,
            interval,
        )
        self._publish()

    def poll_result(self, error: str | None) -> None:
        """The outcome of the last poll (None: it worked)."""
        if error != self.poll_error or self.poll_ok != (error is None):
            self.poll_error, self.poll_ok = error, error is None
            self._publish()

    def polling_stopped(self) -> None:
        """The WebSocket is back, or the token is refused (HTTP would be too), or closing."""
        if self.polling:
            self.polling, self.poll_ok, self.poll_error = False, False, None
            if self.connected:
                self._ctx.logger.info("HTTP polling stopped: the WebSocket is back")
            else:
                self._ctx.logger.warning("HTTP polling stopped: %s", self.ws_error or self.ws_state)
            self._publish()

    async def wait(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every change); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not predicate():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return predicate()
        return True

    def _publish(self) -> None:
        self._changed.set()
        if self.ws_state == "connected":
            self._ctx.set_link_state("connected")
        elif self.polling and self.poll_ok:
            self._ctx.set_link_state(
                "fallback",
                error=f"{self.trouble or 'WebSocket down'}; "
                f"polling over HTTP every {self.poll_interval:g} s",
            )
        elif self.polling and self.poll_error is not None:
            self._ctx.set_link_state(
                self.ws_state,
                error=f"{self.ws_error or self.trouble}; HTTP fallback failing: {self.poll_error}",
            )
        else:
            self._ctx.set_link_state(self.ws_state, error=self.ws_error)
