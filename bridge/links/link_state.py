"""The one writer of a connection's link topic: its transport's state, composed with its fallback.

- transport ``connected``: ``connected``;
- down, fallback polling and its last poll worked: ``fallback`` (``<why down>; polling over HTTP
  every <n> s``);
- down, fallback polling and failing: the transport's state (``<why down>; HTTP fallback
  failing: <why>``);
- otherwise the transport's own state and error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bridge.model.errors import DoNotReconnect, LinkFailure, UpstreamConfigFailure
from bridge.model.events import LinkStateName

Publish = Callable[[LinkStateName, str | None], None]


class LinkStatus:
    """One connection's state as the core knows it; publishes every change of the composition."""

    def __init__(self, publish: Publish, logger: logging.Logger, label: str = "link") -> None:
        self._publish_to = publish
        self.logger = logger
        self.label = label
        self.state: LinkStateName = "connecting"
        self.error: str | None = None
        self.trouble: str | None = None
        """The last reason the transport was not connected."""
        self.refused = False
        """The last failure says the upstream will not take the connection for a while."""
        self.down_since = time.monotonic()
        self.connections = 0
        """Times the transport reached ``connected``."""
        self.auth_failures = 0
        """Times the upstream refused the credentials (each attempt counts)."""
        self.polling = False
        self.poll_ok = False
        self.poll_error: str | None = None
        self.poll_interval = 0.0
        self._changed = asyncio.Event()

    # --- the transport ------------------------------------------------------------------------

    def report(self, state: LinkStateName, error: str | None = None) -> None:
        """The transport's state (from its reconnect loop or the supervisor)."""
        if state == "connected" and self.state != "connected":
            self.connections += 1
            self.trouble = None
            self.refused = False
        elif state != "connected" and self.state == "connected":
            self.down_since = time.monotonic()
        if state == "auth_failed":
            self.auth_failures += 1
        self.state, self.error = state, error
        if error is not None:
            self.trouble = error
        self._publish()

    def failed(self, failure: LinkFailure) -> None:
        """What ended the last attempt (decides whether a fallback starts at once)."""
        self.refused = isinstance(failure, DoNotReconnect | UpstreamConfigFailure)
        self._changed.set()

    @property
    def reconnects(self) -> int:
        """Times the transport came back after having been connected."""
        return max(0, self.connections - 1)

    @property
    def connected(self) -> bool:
        """True while the transport is up (authenticated, subscribed)."""
        return self.state == "connected"

    # --- the fallback -------------------------------------------------------------------------

    def pollable(self) -> bool:
        """Down for a reason polling does not share (refused credentials it would share)."""
        return not self.connected and self.state != "auth_failed"

    def polling_started(self, interval: float) -> None:
        """The fallback poller took over."""
        self.polling, self.poll_ok, self.poll_error = True, False, None
        self.poll_interval = interval
        self.logger.warning(
            "%s unavailable (%s): polling over HTTP every %g s",
            self.label,
            self.trouble or self.state,
            interval,
        )
        self._publish()

    def poll_result(self, error: str | None) -> None:
        """The outcome of the last poll (None: it worked)."""
        if error != self.poll_error or self.poll_ok != (error is None):
            self.poll_error, self.poll_ok = error, error is None
            self._publish()

    def polling_stopped(self) -> None:
        """The transport is back, or its credentials are refused, or the connection stops."""
        if self.polling:
            self.polling, self.poll_ok, self.poll_error = False, False, None
            if self.connected:
                self.logger.info("HTTP polling stopped: the %s is back", self.label)
            else:
                self.logger.warning("HTTP polling stopped: %s", self.error or self.state)
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
                async with asyncio.timeout(left):  # not wait_for: see Outbox.room
                    await self._changed.wait()
            except TimeoutError:
                return predicate()
        return True

    def _publish(self) -> None:
        self._changed.set()
        if self.connected:
            self._publish_to("connected", None)
        elif self.polling and self.poll_ok:
            why = self.trouble or f"{self.label} down"
            self._publish_to("fallback", f"{why}; polling over HTTP every {self.poll_interval:g} s")
        elif self.polling and self.poll_error is not None:
            down = self.error or self.trouble
            self._publish_to(self.state, f"{down}; HTTP fallback failing: {self.poll_error}")
        else:
            self._publish_to(self.state, self.error)
