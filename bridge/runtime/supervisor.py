"""Runs a provider instance's connections: one supervised task each, isolated from the others.

A connection whose link raises a bug is restarted with backoff; its link topic says what failed
(the leaf exception, never the ExceptionGroup around it) and the traceback is shown once per
kind and place. Its fallback poller runs beside it; nothing the poller does ends the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bridge.config.settings import SupervisorSettings
from bridge.links.backoff import Backoff
from bridge.links.link_state import LinkStatus
from bridge.links.webhook import WebhookLink
from bridge.links.websocket import WebSocketLink
from bridge.model.errors import AuthFailure, LinkFailure
from bridge.model.events import LinkStateName
from bridge.pipeline.context import InstanceContext
from bridge.plugin.connections import (
    ConnectionSpec,
    CustomSpec,
    FallbackPoller,
    SocketIOSpec,
    WebhookSpec,
    WebSocketSpec,
)
from bridge.plugin.provider import Link, Provider
from bridge.runtime.faults import SeenFaults, describe, leaf


class ConnectionContext:
    """What one connection's link works with: frames to ``parse``, state to its ``LinkStatus``."""

    def __init__(self, ctx: InstanceContext, account: str | None, status: LinkStatus) -> None:
        self._ctx = ctx
        self._account = account
        self.status = status

    @property
    def account(self) -> str | None:
        """The connection's account."""
        return self._account

    def deliver(self, frame: Any) -> None:
        """Parse one frame and publish its events."""
        self._ctx.deliver(frame, account=self._account)

    def room(self) -> Awaitable[None]:
        """Return once the broker keeps up with the events (``Outbox.room`` itself: links ask
        before every frame, one coroutine per frame is enough)."""
        return self._ctx.hub.outbox.room()

    def report(self, state: LinkStateName, error: str | None = None) -> None:
        """The transport's state."""
        self.status.report(state, error)

    def connected(self) -> None:
        """A custom link is up."""
        self.status.report("connected")


def _label(spec: ConnectionSpec) -> str:
    match spec:
        case WebSocketSpec():
            return "WebSocket"
        case SocketIOSpec():
            return "Socket.IO connection"
        case WebhookSpec():
            return "webhook"
        case _:
            return "link"


RESYNC_GRACE = 2.0
"""Seconds a link may take to end after its clean stop on a resync, before it is cancelled."""


class ConnectionRunner:
    """Keeps one declared connection running, with its fallback poller beside it."""

    def __init__(
        self,
        provider: Provider[Any],
        ctx: InstanceContext,
        spec: ConnectionSpec,
        settings: SupervisorSettings,
        faults: SeenFaults,
    ) -> None:
        self.provider = provider
        self.ctx = ctx
        self.spec = spec
        self.settings = settings
        self.faults = faults
        self.status = LinkStatus(self._publish, ctx.logger, _label(spec))
        self.link_ctx = ConnectionContext(ctx, spec.account, self.status)
        self.backoff = Backoff(settings.restart_min, settings.restart_max)
        self.restarts = 0
        self._where = f" ({spec.account})" if spec.account else ""
        self._link: Link | None = None
        self._refused = False
        self._stopping = asyncio.Event()
        self._resync = asyncio.Event()
        self._running: asyncio.Future[None] | None = None
        """The link's ``run`` (cancelled by a resync when a clean stop does not end it)."""
        self._log = logging.getLogger(f"fin2mqtt.supervisor.{provider.name}")

    def _publish(self, state: LinkStateName, error: str | None) -> None:
        self.ctx.set_link_state(state, error=error, account=self.spec.account)

    async def run(self) -> None:
        """Run the link (restarting it after a bug) and its fallback, until ``close``."""
        poller = self.spec.fallback
        async with asyncio.TaskGroup() as tg:
            fallback = None
            if poller is not None:
                fallback = tg.create_task(
                    self._guarded("fallback", lambda: self._fallback(poller), 1.0),
                    name=f"fallback-{self.provider.name}{self._where}",
                )
            await self._link_forever()
            if fallback is not None:
                fallback.cancel()

    async def close(self) -> None:
        """Ask the link for a clean stop (the caller bounds the time and cancels)."""
        self._stopping.set()
        link = self._link
        if link is None:
            return
        try:
            await link.close()
        except Exception:  # noqa: BLE001 - a failed goodbye must not block the shutdown
            self._log.warning("clean stop%s failed", self._where, exc_info=True)

    async def resync(self) -> None:
        """Reconnect now: the link is stopped cleanly and opened again at once (its hooks
        subscribe and ask for a snapshot again); not a restart, no backoff."""
        self._resync.set()
        link, running = self._link, self._running
        if link is None or running is None:
            return
        try:
            await link.close()
        except Exception:  # noqa: BLE001 - the link is rebuilt anyway
            self._log.warning("clean stop%s for a resync failed", self._where, exc_info=True)
        await asyncio.wait({running}, timeout=RESYNC_GRACE)
        running.cancel()  # a link whose clean stop does not end its run

    # --- the link -----------------------------------------------------------------------------

    async def _link_forever(self) -> None:
        while not self._stopping.is_set():
            self._resync.clear()
            started = time.monotonic()
            reason = await self._run_once()
            if self._stopping.is_set():
                return
            if self._resync.is_set():
                self._log.info("resync%s: reconnecting", self._where)
                self.status.report("connecting")
                self.backoff.reset()
                continue
            if time.monotonic() - started >= self.settings.healthy_after:
                self.backoff.reset()
            delay = self.backoff.next()
            self.restarts += 1
            refused = self._refused
            self.status.report("auth_failed" if refused else "disconnected", reason)
            if not refused:  # a refusal is logged once, as a link transition (context.py)
                self._log.warning("%s%s; restarting in %.1f s", reason, self._where, delay)
            else:
                self._log.debug("%s%s; restarting in %.1f s", reason, self._where, delay)
            await _first_of(self._stopping, self._resync, timeout=delay)

    async def _run_once(self) -> str:
        """One life of the link; returns why it ended."""
        try:
            self._link = self._build()
            self._running = asyncio.ensure_future(self._link.run())
            await self._running
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._resync.is_set() and task is not None and not task.cancelling():
                return "resync"  # only the link's run was cancelled, by ``resync``
            raise
        except Exception as exc:  # noqa: BLE001 - isolation: no plugin error stops the daemon
            # refused credentials: not a bug (no traceback), the link state says auth_failed
            self._refused = isinstance(leaf(exc), AuthFailure)
            if not self._refused and self.faults.first(exc):  # a bug: where, once per kind/place
                self._log.error("provider crashed%s", self._where, exc_info=exc)
            return describe(exc)
        finally:
            self._link = self._running = None
        self._refused = False
        return "link ended"

    def _build(self) -> Link:
        spec, ctx = self.spec, self.link_ctx
        match spec:
            case WebSocketSpec():
                return WebSocketLink(
                    ctx,
                    self.provider,
                    spec.endpoint,
                    options=spec.options,
                    retry=spec.retry,
                    renew=spec.renew,
                    on_failure=self._failed,
                )
            case SocketIOSpec():
                from bridge.links.socketio import SocketIOLink  # python-socketio: only if used

                return SocketIOLink(
                    ctx,
                    self.provider,
                    spec.endpoint,
                    options=spec.options,
                    retry=spec.retry,
                    on_failure=self._failed,
                )
            case WebhookSpec():
                return WebhookLink(ctx, self.ctx.webhooks, spec.route)
            case CustomSpec():
                if self.status.state != "auth_failed":  # no flapping while refused
                    self.status.report("connecting")
                return spec.link(ctx)
        raise TypeError(f"unknown kind of connection: {type(spec).__name__}")

    def _failed(self, failure: LinkFailure) -> None:
        self.status.failed(failure)
        if self.spec.on_failure is not None:
            self.spec.on_failure(failure)

    # --- the fallback -------------------------------------------------------------------------

    async def _guarded(self, what: str, work: Callable[[], Awaitable[None]], pause: float) -> None:
        """Run ``work`` until it returns; a failure is logged and ``work`` started again."""
        while True:
            try:
                await work()
            except LinkFailure as exc:
                self._log.warning("%s%s failed: %s", what, self._where, exc)
            except Exception as exc:  # noqa: BLE001 - the fallback never ends the connection
                if self.faults.first(exc):
                    self._log.error("%s%s crashed", what, self._where, exc_info=exc)
                else:
                    self._log.warning("%s%s crashed: %s", what, self._where, describe(exc))
            else:
                return
            await asyncio.sleep(pause)

    async def _fallback(self, poller: FallbackPoller) -> None:
        async with poller, asyncio.TaskGroup() as tg:
            tg.create_task(self._poll_when_needed(poller), name="fallback-poll")
            tg.create_task(self._after_reconnects(poller), name="fallback-reconnected")
            tg.create_task(
                self._guarded("fallback reads", poller.serve, poller.interval),
                name="fallback-serve",
            )

    async def _poll_when_needed(self, poller: FallbackPoller) -> None:
        status = self.status
        while True:
            await status.wait(status.pollable)
            if not await self._given_up(poller):
                continue
            status.polling_started(poller.interval)
            try:
                async with asyncio.TaskGroup() as tg:
                    polls = tg.create_task(self._poll_forever(poller), name="fallback-polls")
                    await status.wait(lambda: not status.pollable())
                    polls.cancel()
            finally:
                status.polling_stopped()

    async def _given_up(self, poller: FallbackPoller) -> bool:
        """Wait until the link was refused, or down for ``after``; False when it came back
        first or its credentials are the trouble (polling would be refused as well)."""
        status = self.status
        deadline = status.down_since + poller.after
        await status.wait(
            lambda: not status.pollable() or status.refused,
            max(0.0, deadline - time.monotonic()),
        )
        return status.pollable()

    async def _poll_forever(self, poller: FallbackPoller) -> None:
        retry = self.spec.retry
        backoff = Backoff(retry.backoff_min, retry.backoff_max)
        while True:
            started = time.monotonic()
            try:
                await poller.poll()
            except LinkFailure as exc:
                self.status.poll_result(str(exc) or type(exc).__name__)
                pause = max(backoff.next(), poller.interval)
            except Exception as exc:  # noqa: BLE001 - a poller bug is its failure, not the link's
                if self.faults.first(exc):
                    self._log.error("fallback poll%s crashed", self._where, exc_info=exc)
                self.status.poll_result(describe(exc))
                pause = max(backoff.next(), poller.interval)
            else:
                self.status.poll_result(None)
                backoff.reset()
                pause = poller.interval - (time.monotonic() - started)
            await asyncio.sleep(max(0.0, pause))

    async def _after_reconnects(self, poller: FallbackPoller) -> None:
        seen = 0
        while True:
            await self.status.wait(functools.partial(self._connected_since, seen))
            first = seen == 0
            seen = self.status.connections
            if not first:
                await self._guarded("reading after a reconnect", poller.reconnected, 0.0)

    def _connected_since(self, seen: int) -> bool:
        return self.status.connections > seen


class ProviderRunner:
    """Runs one provider instance: asks for its connections, runs each in its own task."""

    def __init__(
        self,
        provider: Provider[Any],
        ctx: InstanceContext,
        settings: SupervisorSettings,
        owns: Callable[[str, str | None], bool] | None = None,
    ) -> None:
        """``owns(instance, account)`` says which connections this daemon runs (sharding)."""
        self.provider = provider
        self.owns = owns
        self.ctx = ctx
        self.settings = settings
        self.backoff = Backoff(settings.restart_min, settings.restart_max)
        self.faults = SeenFaults()
        self.connections: list[ConnectionRunner] = []
        self._failed_starts = 0
        self._stopping = asyncio.Event()
        self._log = logging.getLogger(f"fin2mqtt.supervisor.{provider.name}")

    @property
    def restarts(self) -> int:
        """Restarts of the instance's connections after a crash (and failed starts)."""
        return self._failed_starts + sum(c.restarts for c in self.connections)

    async def run(self) -> None:
        """Run every connection until ``close`` (or cancellation)."""
        while not self._stopping.is_set():
            try:
                specs = self._specs()
            except Exception as exc:  # noqa: BLE001 - a plugin bug: retry, never stop the daemon
                self._failed_starts += 1
                delay = self.backoff.next()
                if self.faults.first(exc):
                    self._log.error("provider crashed", exc_info=exc)
                self._log.warning("%s; restarting in %.1f s", describe(exc), delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # not wait_for: see Outbox.room
                        await self._stopping.wait()
                continue
            if self._stopping.is_set():
                return
            self.ctx.own_links({spec.account for spec in specs})
            self.connections = [
                ConnectionRunner(self.provider, self.ctx, spec, self.settings, self.faults)
                for spec in specs
            ]
            async with asyncio.TaskGroup() as tg:
                for runner in self.connections:
                    where = f"/{runner.spec.account}" if runner.spec.account else ""
                    tg.create_task(runner.run(), name=f"connection-{self.provider.name}{where}")
            return

    def _specs(self) -> Sequence[ConnectionSpec]:
        specs = list(self.provider.connections(self.ctx))
        accounts = [spec.account for spec in specs]
        if len(set(accounts)) != len(accounts):
            raise ValueError(f"two connections of {self.provider.name} share an account")
        if self.owns is None:
            return specs
        mine = [spec for spec in specs if self.owns(self.provider.name, spec.account)]
        if len(mine) != len(specs):
            self._log.info(
                "running %d of %d connection(s); the others belong to other shards",
                len(mine),
                len(specs),
            )
        return mine

    async def resync(self) -> int:
        """Reconnect every connection of the instance now; how many there are."""
        connections = list(self.connections)
        async with asyncio.TaskGroup() as tg:
            for runner in connections:
                tg.create_task(runner.resync())
        return len(connections)

    async def close(self) -> None:
        """Ask every connection for a clean stop at once."""
        self._stopping.set()
        async with asyncio.TaskGroup() as tg:
            for runner in self.connections:
                tg.create_task(runner.close())


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Wait until one of ``events`` is set, at most ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
