"""The one reconnect loop every link uses: classify the failure, report it, wait, try again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field
from websockets.exceptions import WebSocketException

from bridge.config.settings import SecretFileModel
from bridge.links.backoff import Backoff
from bridge.model.errors import (
    AuthFailure,
    DoNotReconnect,
    LinkFailure,
    TransportFailure,
    UpstreamConfigFailure,
)
from bridge.model.events import LinkStateName

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a link waits after each kind of failure (seconds)."""

    backoff_min: float = 1.0
    backoff_max: float = 30.0
    healthy_after: float = 30.0
    """A connection that stayed up this long resets the backoff."""
    auth_retry: float = 300.0
    """After credentials were rejected (the secret is read again before the next try)."""
    config_retry: float = 3600.0
    """After the upstream rejected our settings."""
    hold_off: float = 600.0
    """After a "do not reconnect" answer such as a duplicate session."""


class RetrySettings(SecretFileModel):
    """The retry keys every plugin's settings share; embed it, then ``retry_policy()``."""

    retry_min: float = Field(default=1.0, gt=0)
    """First reconnect delay, seconds (doubling, jittered)."""
    retry_max: float = Field(default=30.0, gt=0)
    """Longest reconnect delay, seconds."""
    auth_retry: float = Field(default=300.0, gt=0)
    """Seconds between attempts after the credentials were refused."""

    def retry_policy(self, **overrides: float) -> RetryPolicy:
        """The ``RetryPolicy`` these settings describe (``overrides`` for the other fields)."""
        values = {
            "backoff_min": self.retry_min,
            "backoff_max": self.retry_max,
            "auth_retry": self.auth_retry,
            **overrides,
        }
        return RetryPolicy(**values)


def as_failure(exc: BaseException) -> LinkFailure | None:
    """The LinkFailure an exception means, or None for a bug that should reach the supervisor.

    Transport errors of the libraries under the links (websockets, python-socketio, aiohttp) are
    network trouble, never bugs; the failure keeps the original as its ``__cause__``.
    """
    if isinstance(exc, LinkFailure):
        return exc
    if isinstance(exc, TimeoutError):
        failure = TransportFailure("timed out")
    elif isinstance(exc, OSError | EOFError) or _is_library_transport_error(exc):
        failure = TransportFailure(f"{type(exc).__name__}: {exc}".rstrip(": "))
    else:
        return None
    failure.__cause__ = exc
    return failure


def _is_library_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, WebSocketException):
        return True
    # python-socketio and aiohttp are imported only where used: an error of one that is not
    # loaded cannot be raised
    if (socketio := sys.modules.get("socketio.exceptions")) is not None and isinstance(
        exc, socketio.SocketIOError
    ):
        return True
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientError)


class StateReport(Protocol):
    """Where a link reports its transport's state: the core's owner of the link topic."""

    def report(self, state: LinkStateName, error: str | None = None) -> None:
        """The transport is now in ``state`` (with the failure that put it there)."""
        ...


class Reconnector:
    """Runs connection sessions forever with the right pause after each failure."""

    def __init__(
        self,
        ctx: StateReport,
        policy: RetryPolicy,
        *,
        label: str = "link",
        on_failure: Callable[[LinkFailure], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.label = label
        self.on_failure = on_failure
        self.backoff = Backoff(policy.backoff_min, policy.backoff_max)
        self.attempts = 0
        self.closing = asyncio.Event()
        self._connected_at: float | None = None
        self.last_failure: LinkFailure | None = None
        """What ended the last session (None while none has ended yet)."""

    def connected(self) -> None:
        """A session calls this once it is fully up (authenticated, subscribed)."""
        self._connected_at = time.monotonic()
        self.ctx.report("connected")

    def dialing(self) -> None:
        """A session calls this once it knows where to connect (its endpoint answered).

        Not before: an endpoint that keeps waiting for usable credentials stays ``auth_failed``
        instead of flapping through ``connecting`` on every look.
        """
        self.ctx.report("connecting")

    async def run(self, session: Callable[[], Awaitable[None]]) -> None:
        """Call ``session`` again and again until ``close``; returns after a clean close."""
        self.ctx.report("connecting")
        while not self.closing.is_set():
            self.attempts += 1
            self._connected_at = None
            try:
                await session()
                failure: LinkFailure = TransportFailure("connection ended")
            except Exception as exc:
                mapped = as_failure(exc)
                if mapped is None:
                    raise
                failure = mapped
            if self.closing.is_set():
                return
            self.last_failure = failure
            delay = self._delay(failure)
            state: LinkStateName = (
                "auth_failed" if isinstance(failure, AuthFailure) else "disconnected"
            )
            self.ctx.report(state, str(failure) or type(failure).__name__)
            if self.on_failure is not None:
                self.on_failure(failure)
            log.debug("%s: %s; next attempt in %.3f s", self.label, failure, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: see Outbox.room
                    await self.closing.wait()

    def close(self) -> None:
        """Stop after the current session."""
        self.closing.set()

    def _delay(self, failure: LinkFailure) -> float:
        p = self.policy
        up = self._connected_at
        if up is not None and time.monotonic() - up >= p.healthy_after:
            self.backoff.reset()
        backoff = self.backoff.next()
        if isinstance(failure, AuthFailure):
            return max(backoff, p.auth_retry)
        if isinstance(failure, UpstreamConfigFailure):
            return max(backoff, p.config_retry)
        if isinstance(failure, DoNotReconnect):
            return max(backoff, p.hold_off)
        return backoff


def session_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What ended a session's TaskGroup: the first LinkFailure, else the first bug.

    On Python 3.11 a TaskGroup whose child failed raises the group even when the task was also
    cancelled from outside, and leaves the task's cancel count raised, so a cancellation can be
    lost here: stop links with ``close()`` (the supervisor does), not by cancelling them alone.
    """
    leaves: list[BaseException] = []

    def collect(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                collect(inner)
        else:
            leaves.append(exc)

    collect(group)
    for exc in leaves:
        if (failure := as_failure(exc)) is not None:
            return failure
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return asyncio.CancelledError()
