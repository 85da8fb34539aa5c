"""Axisor: market prices, margin guard, positions, notifications and platform status, live.

One WebSocket per user (PROTOCOLS.md §3): the JWT as a handshake header or as the first
message, a connection reply (``connection``/``connected`` or ``connection_established``), then
the configured rooms, each confirmed by its ``room_subscription`` reply and all of them checked
with ``list_rooms`` after every (re)connect. Our own messages stay within the server's limit
(100 per 60 s), and ``RATE_LIMIT_EXCEEDED`` silences us for a whole window.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bridge.api import (
    ACCOUNT_STATUS,
    LINK,
    MARKET_PRICE,
    AccountStatusEvent,
    AnyEvent,
    AuthFailure,
    Connection,
    ConnectionSpec,
    Endpoint,
    EntitySpec,
    LinkFailure,
    NotificationEvent,
    ParseContext,
    Provider,
    ProviderContext,
    TransportFailure,
    WebSocketSpec,
    renew_when_due,
    stable_id,
)
from fin2mqtt_axisor.auth import TokenGate
from fin2mqtt_axisor.parse import (
    CONTROL,
    RATE_LIMITED,
    Naming,
    error_code,
    error_text,
    parse_frame,
)
from fin2mqtt_axisor.rooms import (
    Mailbox,
    RefusedRooms,
    SendBudget,
    is_error,
    listed_rooms,
    room_reply,
)
from fin2mqtt_axisor.settings import AxisorSettings

HELLO = ("connection", "connection_established")
"""The connection reply: the doc's ``connection``, the server code's ``connection_established``."""
SUBSCRIBE_TRIES = 3
"""Times one room is asked for when the server answers ``RATE_LIMIT_EXCEEDED``."""

POSITION_AT_RISK = EntitySpec(
    kind="position",
    key="at_risk",
    name="{symbol} at risk",
    component="binary_sensor",
    value_template="{{ 'ON' if value_json.details.at_risk else 'OFF' }}",
    device_class="problem",
)
POSITION_DISTANCE = EntitySpec(
    kind="position",
    key="distance_to_liquidation",
    name="{symbol} distance to liquidation",
    value_template="{{ value_json.details.distance_to_liquidation }}",
    state_class="measurement",
    # the document's examples (0.82 at risk, 0.92 not) read as a percentage of the price
    unit="%",
    icon="mdi:gauge",
)


class AxisorProvider(Provider[AxisorSettings]):
    """The Axisor events WebSocket of one user."""

    settings_model = AxisorSettings
    entities: ClassVar[Sequence[EntitySpec]] = (
        LINK,
        MARKET_PRICE,
        POSITION_AT_RISK,
        POSITION_DISTANCE,
        ACCOUNT_STATUS,
    )
    close_codes: ClassVar[Mapping[int, type[LinkFailure]]] = {1008: AuthFailure}

    def __init__(self, name: str, settings: AxisorSettings) -> None:
        super().__init__(name, settings)
        self.keepalive_interval = settings.ping_interval  # type: ignore[misc]
        self.gate = TokenGate(settings.source(), retry_refused=settings.auth_retry)
        self.budget = SendBudget(settings.max_messages, settings.rate_window)
        """One per instance, across reconnects: a reconnect storm cannot spam the server."""
        self.mailbox = Mailbox()
        self.refused = RefusedRooms(settings.invalid_room_retry)
        self.user_id: str | None = None
        """The connected user's id, from the connection reply (never published)."""
        self.naming = Naming(settings.account, settings.aliases, lambda: self.user_id)
        self._ctx: ProviderContext | None = None
        self._quiet_list_rooms = False

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """The user's one WebSocket, opened only with a token that can work."""
        self._ctx = ctx
        s, gate = self.settings, self.gate
        # At debug level websockets logs every handshake header and every frame sent, i.e. the
        # JWT in both auth modes; the core does not quiet it (yet), so we do.
        quiet = logging.getLogger("websockets.client")
        quiet.setLevel(max(quiet.getEffectiveLevel(), logging.INFO))

        async def endpoint() -> Endpoint:
            token = await gate.fresh()  # TokenUnusable (auth_failed, with the reason) until then
            self.mailbox.reset()
            if s.auth_mode == "message":
                return Endpoint(s.url)
            return Endpoint(s.url, {"Authorization": f"Bearer {token}"})

        async def renew() -> str:
            """Reconnect with a fresher token shortly before the current one expires."""
            assert gate.current is not None
            return await renew_when_due(gate.source, gate.current, poll=s.token_poll)

        def failed(failure: LinkFailure) -> None:
            if isinstance(failure, AuthFailure):
                gate.failed(failure)

        # the token gate is asked again every token_poll while no token is usable
        retry = s.retry_policy(auth_retry=s.token_poll)
        return [WebSocketSpec(endpoint=endpoint, renew=renew, retry=retry, on_failure=failed)]

    async def on_connect(self, conn: Connection) -> None:
        """Authenticate, wait for the connection reply, restore and verify the rooms."""
        s = self.settings
        if s.auth_mode == "message":
            await self.budget.send(conn, {"type": "auth", "token": self.gate.current})
        hello = await self.mailbox.next(
            lambda f: f.get("type") in HELLO, s.reply_timeout, "connection reply"
        )
        status = hello.get("status")
        if hello.get("type") == "connection" and status not in (None, "connected"):
            raise AuthFailure(f"connection refused: status {status}")
        subscribed = [room for room in self.refused.to_ask(s.subscriptions) if await
                      self._subscribe(conn, room)]  # fmt: skip
        await self._verify(conn, subscribed)
        self._emit_rooms(subscribed)

    async def _subscribe(self, conn: Connection, room: str) -> bool:
        """Ask for one room and check its reply; False when the server refused it."""
        for _ in range(SUBSCRIBE_TRIES):
            await self.budget.send(conn, {"type": "subscribe", "channel": room})
            reply = await self.mailbox.next(
                room_reply(room), self.settings.reply_timeout, f"reply to subscribing {room}"
            )
            if is_error(reply, RATE_LIMITED):
                continue  # control() paused the budget: ask again after a quiet window
            if is_error(reply, "INVALID_ROOM"):
                self._refuse(room, error_text(reply))
                return False
            if reply.get("status") in (None, "subscribed", "already_subscribed"):
                self.refused.accept(room)
                return True
            self._refuse(room, f"status {reply.get('status')}")
            return False
        raise TransportFailure(f"subscribing {room}: rate limited {SUBSCRIBE_TRIES} times")

    async def _verify(self, conn: Connection, subscribed: list[str]) -> None:
        """``list_rooms`` must show every room the server confirmed."""
        if not subscribed:
            return
        for _ in range(SUBSCRIBE_TRIES):
            await self.budget.send(conn, {"type": "list_rooms"})
            try:
                reply = await self.mailbox.next(
                    lambda f: (
                        is_error(f, RATE_LIMITED)
                        or (listed_rooms(f) is not None and f.get("channel") is None)
                    ),
                    self.settings.reply_timeout,
                    "answer to list_rooms",
                )
            except TransportFailure:
                if not self._quiet_list_rooms:  # a server without list_rooms: trust the replies
                    self._quiet_list_rooms = True
                    self._log().warning("no answer to list_rooms: trusting the room replies")
                return
            if not is_error(reply, RATE_LIMITED):  # else: asked again after a quiet window
                break
        else:
            raise TransportFailure(f"list_rooms: rate limited {SUBSCRIBE_TRIES} times")
        missing = sorted(set(subscribed) - set(listed_rooms(reply) or []))
        if missing:
            raise TransportFailure(f"rooms missing after subscribing: {', '.join(missing)}")

    def _refuse(self, room: str, why: str) -> None:
        """Report a refused room once (log and notification); it is not asked for a while."""
        if not self.refused.refuse(room):
            return
        retry = self.settings.invalid_room_retry
        text = f"the server refused room {room} ({why}); asking again after {retry:g} s"
        self._log().warning("%s", text)
        ctx = self._parse_context()
        self._emit([ctx.event(NotificationEvent, id=stable_id("invalid-room", room),
                              category="error", severity="warning", title="INVALID_ROOM",
                              message=text, details={"room": room})])  # fmt: skip

    def _emit_rooms(self, subscribed: list[str]) -> None:
        """The rooms' state, retained (published when it changes)."""
        refused = self.refused.refused
        ctx = self._parse_context()
        rooms = {"subscribed": subscribed, "refused": refused}
        self._emit([ctx.event(AccountStatusEvent, id=stable_id("rooms", subscribed, refused),
                              topic="rooms", status="degraded" if refused else "ok",
                              raw=rooms, details=rooms)])  # fmt: skip

    async def keepalive(self, conn: Connection) -> None:
        """App-level ``ping``; a missing ``pong`` ends the connection, unless the server never
        answered one (then the protocol-level pings alone judge liveness)."""
        if conn.data.get("no_app_ping"):
            return
        await self.budget.send(conn, {"type": "ping"})
        try:
            await self.mailbox.next(
                lambda f: f.get("type") == "pong", self.settings.reply_timeout, "pong"
            )
        except TransportFailure:
            if conn.data.get("pong"):
                raise
            conn.data["no_app_ping"] = True
            self._log().info("no answer to app-level pings: relying on protocol pings")
            return
        conn.data["pong"] = True

    def control(self, frame: Any) -> None:
        """Auth failures end the connection; rate limits pause us; replies go to the hooks."""
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "error":
            code = error_code(frame)
            if code == "AUTHENTICATION_FAILED":
                raise AuthFailure(f"AUTHENTICATION_FAILED: {error_text(frame)}")
            if code == RATE_LIMITED:
                self._log().warning(
                    "the server says we exceed its rate limit; sending nothing for %g s",
                    self.budget.window,
                )
                self.budget.pause()
            self.mailbox.post(frame)
        elif kind in CONTROL:
            if kind in HELLO and frame.get("userId") is not None:
                self.user_id = str(frame["userId"])
            self.mailbox.post(frame)

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
        """Frames to events (see ``fin2mqtt_axisor.parse``)."""
        return parse_frame(self.naming, frame, ctx)

    def _parse_context(self) -> ParseContext:
        assert self._ctx is not None
        return ParseContext(self.name, None, self._ctx.now())

    def _emit(self, events: list[AnyEvent]) -> None:
        assert self._ctx is not None
        self._ctx.emit(events)

    def _log(self) -> Any:
        assert self._ctx is not None
        return self._ctx.logger


__all__ = ["AxisorProvider", "AxisorSettings"]
