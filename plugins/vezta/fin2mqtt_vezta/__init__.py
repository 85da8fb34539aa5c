"""Vezta: prediction-market prices, order books and trades, and a user's orders and portfolio, live.

Upstream: a Socket.IO server, namespace ``/ws`` (``wss://backend.vezta.io/ws``), auth
``{"token": <JWT>}``. ``emit("subscribe", {"channel"})`` is answered by the event ``subscribed``
``{"channel"}``; every broadcast is the event ``data`` ``{"channel", "data"}``. Public channels
(``market:*``, ``monitor:signals``) need no token; ``user:*`` channels do, and are refused with
``error`` ``{"channel", "message": "Unauthorized"}`` without a valid one.

Two connections, so that a refused token never costs the public data: the public channels on
one without a token (link ``<base>/<instance>/link``), the user channels on one with the token
(link ``<base>/<instance>/<account>/link``, ``auth_failed`` when a channel is refused). The core
reconnects both and ``on_connect`` subscribes again every time, including after a namespace
disconnect by the server (which python-socketio would not reconnect by itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from bridge.api import (
    LINK,
    MARKET_PRICE,
    NOTIFICATIONS,
    ORDERS,
    TRADES,
    AnyEvent,
    AuthFailure,
    Connection,
    ConnectionSpec,
    EntitySpec,
    ParseContext,
    Provider,
    ProviderContext,
    SocketIOEndpoint,
    SocketIOOptions,
    SocketIOSpec,
    UpstreamConfigFailure,
)
from fin2mqtt_vezta.parse import Markets, Parser
from fin2mqtt_vezta.settings import CHANNELS, USER_CHANNELS, VeztaSettings

ERRORS = ("error", "exception")
"""Events refusing a subscription: ``error`` (PROTOCOLS.md) or NestJS's ``exception``."""
REFUSALS = ("unauthorized", "unauthenticated", "forbidden", "invalid token", "jwt")


def _monetary(key: str, name: str, template: str) -> EntitySpec:
    return EntitySpec(
        kind="balance",
        key=key,
        name=name,
        value_template=template,
        device_class="monetary",
        state_class="total",
        unit="{asset}",
    )


PORTFOLIO_VALUE = _monetary("total", "Portfolio value", "{{ value_json.total }}")
UNREALIZED_PNL = _monetary(
    "unrealized_pnl", "Unrealized PnL", "{{ value_json.details.unrealized_pnl }}"
)
REALIZED_PNL = _monetary("realized_pnl", "Realized PnL", "{{ value_json.details.realized_pnl }}")
DAY_PNL = _monetary("day_pnl", "Day PnL", "{{ value_json.details.day_pnl }}")
OPEN_ORDERS = EntitySpec(
    kind="account_status",
    key="count",
    name="Open orders",
    value_template="{{ value_json.details.count }}",
    state_class="measurement",
    unit="orders",
    icon="mdi:format-list-checks",
    match=(("topic", "open_orders"),),
)


def unwrap(payload: Any) -> Any:
    """The document's literal ``{"event": …, "data": {…}}`` shape, as a payload, unwrapped."""
    if isinstance(payload, dict) and set(payload) == {"event", "data"}:
        return payload["data"]
    return payload


def channel_of(payload: Any) -> str | None:
    """The channel a ``subscribed``/``error`` payload names (a bare string names one too)."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("channel"), str):
        return str(payload["channel"])
    return None


def message_of(payload: Any) -> str:
    """The text of an ``error``/``exception`` payload."""
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or payload)
    return str(payload)


def refusal(frame: Any) -> tuple[str | None, str] | None:
    """``(channel, message)`` of an ``error`` that refuses the token; None for anything else."""
    if not isinstance(frame, dict) or frame.get("event") not in ERRORS:
        return None
    payload = unwrap(frame.get("data"))
    text = message_of(payload)
    status = payload.get("status") if isinstance(payload, dict) else None
    if status not in (401, 403) and not any(word in text.lower() for word in REFUSALS):
        return None
    return (channel_of(payload) if isinstance(payload, dict) else None), text


def answers(channel: str) -> Callable[[Any], bool]:
    """Matches the server's answer to ``subscribe`` for ``channel``."""

    def match(frame: Any) -> bool:
        if not isinstance(frame, dict):
            return False
        name, payload = frame.get("event"), unwrap(frame.get("data"))
        if name == "subscribed":
            return channel_of(payload) == channel
        if name in ERRORS:  # an error naming no channel answers the pending subscription
            named = channel_of(payload) if isinstance(payload, dict) else None
            return named in (None, channel)
        return False

    return match


class VeztaProvider(Provider[VeztaSettings]):
    """Vezta's Socket.IO channels: public market data and one user's account."""

    settings_model = VeztaSettings
    display_name: ClassVar[str] = "Vezta"
    entities: ClassVar[Sequence[EntitySpec]] = (
        LINK,
        MARKET_PRICE,
        PORTFOLIO_VALUE,
        UNREALIZED_PNL,
        REALIZED_PNL,
        DAY_PNL,
        OPEN_ORDERS,
        ORDERS,
        TRADES,
        NOTIFICATIONS,
    )

    def __init__(self, name: str, settings: VeztaSettings) -> None:
        super().__init__(name, settings)
        # a share's price is in the settlement currency (a market name says no pair)
        price = replace(MARKET_PRICE, unit=settings.currency)
        self.entities = tuple(  # type: ignore[misc]
            price if s is MARKET_PRICE else s for s in self.entities
        )
        markets = Markets(frozenset(settings.markets), dict(settings.aliases))
        self.parser = Parser(markets, settings.currency, settings.orderbook_depth)
        subscribed = settings.subscribed
        self.channels: dict[str | None, tuple[str, ...]] = {
            None: tuple(c for c in subscribed if c not in USER_CHANNELS),
            settings.account: tuple(c for c in subscribed if c in USER_CHANNELS),
        }
        """The channels of each connection, by its account (None: the public one)."""
        self.subscribing: dict[str | None, str] = {}
        """The channel each connection is subscribing to right now (names a bare refusal)."""

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """A public connection without a token and a user connection with it (when needed)."""
        s = self.settings
        retry = s.retry_policy()

        def options(overflow: Any) -> SocketIOOptions:
            return SocketIOOptions(
                connect_timeout=s.connect_timeout,
                request_timeout=s.subscribe_timeout,
                queue_size=s.queue_size,
                overflow=overflow,
            )

        async def public() -> SocketIOEndpoint:
            return SocketIOEndpoint(s.server, namespace=s.namespace, socketio_path=s.socketio_path)

        specs: list[ConnectionSpec] = []
        if self.channels[None]:
            specs.append(
                SocketIOSpec(endpoint=public, retry=retry, options=options(s.market_overflow))
            )
        if self.channels[s.account]:
            source = s.source()

            async def user() -> SocketIOEndpoint:  # per attempt: a rotated token file is used
                return SocketIOEndpoint(
                    s.server,
                    namespace=s.namespace,
                    auth={"token": await source.get()},
                    socketio_path=s.socketio_path,
                )

            # a full queue reconnects: user events must not be dropped silently
            specs.append(
                SocketIOSpec(
                    account=s.account, endpoint=user, retry=retry, options=options("reconnect")
                )
            )
        return specs

    async def on_connect(self, conn: Connection) -> None:
        """Subscribe to this connection's channels, each confirmed by ``subscribed``."""
        for channel in self.channels.get(conn.account, ()):
            await self._subscribe(conn, channel)

    async def _subscribe(self, conn: Connection, channel: str) -> None:
        timeout = self.settings.subscribe_timeout
        self.subscribing[conn.account] = channel
        async with asyncio.TaskGroup() as tg:
            answer = tg.create_task(
                conn.expect(answers(channel), timeout=timeout, what=f"subscribed to {channel}"),
                name=f"vezta-subscribed-{channel}",
            )
            await asyncio.sleep(0)  # the waiter is in place before the server can answer
            await conn.send({"event": "subscribe", "data": {"channel": channel}})
        del self.subscribing[conn.account]
        frame = answer.result()
        if frame.get("event") == "subscribed":
            return
        if refusal(frame) is not None:
            raise AuthFailure(f"{channel}: {message_of(unwrap(frame.get('data')))}")
        raise UpstreamConfigFailure(f"{channel}: {message_of(unwrap(frame.get('data')))}")

    def control(self, frame: Any) -> None:
        """A refusal of the token (also one arriving after subscribing) is ``auth_failed``."""
        refused = refusal(frame)
        if refused is not None:
            # only user channels are refused, so a refusal naming none is the user connection's
            channel = refused[0] or self.subscribing.get(self.settings.account)
            raise AuthFailure(f"{channel}: {refused[1]}" if channel else refused[1])

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
        """One Socket.IO event (``{"event", "data"}``) to events."""
        if not isinstance(frame, dict):
            return None
        name, payload = frame.get("event"), unwrap(frame.get("data"))
        if name in ("subscribed", "unsubscribed"):
            return []  # answers to our own requests: on_connect has seen them
        if name in ERRORS:
            return [] if refusal(frame) else None  # a refusal is on the link topic
        if name == "data" and isinstance(payload, dict) and "channel" in payload:
            channel, body = str(payload["channel"]), unwrap(payload.get("data"))
        elif name in CHANNELS:  # a broadcast emitted under the channel's own name
            channel, body = str(name), payload
        else:
            return None
        events = self.parser.parse(channel, body, ctx)
        return events if events is not None else [ctx.raw(channel, body)]
