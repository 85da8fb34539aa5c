"""IBEX FI: a wallet's balances, transactions, KYC, IBAN and recovery status, live.

One WebSocket per user (the server allows no second one): authenticated by a JWT message, then
an initial burst in no particular order, then updates. When the WebSocket cannot be held, the
same state is polled over HTTP within the documented rate limits (see ``fallback``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from bridge.api import (
    STANDARD_ENTITIES,
    AnyEvent,
    AuthFailure,
    Connection,
    DoNotReconnect,
    EntitySpec,
    Link,
    LinkFailure,
    Provider,
    ProviderContext,
)
from bridge.entities import ACCOUNT_STATUS, BALANCE, LINK
from bridge.http import RateLimiter
from fin2mqtt_ibex.link import IbexLink
from fin2mqtt_ibex.parse import Naming, is_signal_only, parse_frame
from fin2mqtt_ibex.settings import IbexSettings

CONNECTED = ("auth_success", "connection_success")

RECOVERY_PENDING = EntitySpec(
    kind="account_status",
    key="pending",
    name="Recovery pending",
    component="binary_sensor",
    value_template="{{ 'ON' if value_json.status == 'pending' else 'OFF' }}",
    icon="mdi:shield-key",
    match=(("topic", "recovery"),),
)


class IbexProvider(Provider[IbexSettings]):
    """The IBEX FI wallet stream with its HTTP fallback."""

    settings_model = IbexSettings
    entities: ClassVar[Sequence[EntitySpec]] = (
        LINK,
        BALANCE,
        ACCOUNT_STATUS,
        RECOVERY_PENDING,
    )
    close_codes: ClassVar[Mapping[int, type[LinkFailure]]] = {
        1008: AuthFailure,  # invalid JWT: a fresh token, then reconnect
        4002: AuthFailure,  # authentication failed
        4003: DoNotReconnect,  # duplicate session: another client holds the user's only socket
        4000: DoNotReconnect,  # superseded by another connection of the same user
    }

    def __init__(self, name: str, settings: IbexSettings) -> None:
        super().__init__(name, settings)
        self.naming = Naming(
            name,
            {safe.address: safe.alias for safe in settings.safes},
            settings.default_asset,
            settings.default_decimals,
        )
        self.limiter = RateLimiter(settings.rate_limits)
        """One per user, across link restarts: the limits are the server's."""
        self._link: IbexLink | None = None
        self._user_changed: asyncio.Event | None = None

    def create_link(self, ctx: ProviderContext) -> Link:
        """The WebSocket and the HTTP fallback of this user."""
        self._user_changed = asyncio.Event()
        self._link = IbexLink(self, ctx, self.naming, self.limiter, self._user_changed)
        return self._link

    async def on_connect(self, conn: Connection) -> None:
        """Send the JWT; connected once ``auth_success`` (or ``connection_success``) arrives."""
        assert self._link is not None
        assert self._link.gate.current is not None
        await conn.send(
            {
                "type": "auth",
                "token": self._link.gate.current,
                "clientName": self.settings.client_name,
            }
        )
        await conn.expect(
            lambda f: isinstance(f, dict) and f.get("type") in CONNECTED,
            timeout=self.settings.auth_timeout,
            what="auth_success",
        )

    def control(self, frame: Any) -> None:
        """``auth_error`` ends the connection; a signal-only user update asks for a re-read."""
        if not isinstance(frame, dict):
            return
        if frame.get("type") == "auth_error":
            raise _auth_failure(frame.get("data"))
        if is_signal_only(frame) and self._user_changed is not None:
            self._user_changed.set()

    def parse(self, frame: Any, received_at: datetime) -> Sequence[AnyEvent]:
        """Frames to events (see ``fin2mqtt_ibex.parse``)."""
        return parse_frame(self.naming, frame, received_at)


def _auth_failure(data: Any) -> LinkFailure:
    data = data if isinstance(data, dict) else {}
    code = data.get("error_code") or "auth_error"
    message = data.get("message") or "authentication refused"
    if code == "ALREADY_CONNECTED":
        existing = data.get("existingConnectionId")
        held = f" (connection {existing})" if existing else ""
        return DoNotReconnect(
            f"ALREADY_CONNECTED: another client holds this user's only WebSocket{held}"
        )
    return AuthFailure(f"{code}: {message}")


__all__ = ["STANDARD_ENTITIES", "IbexProvider", "IbexSettings"]
