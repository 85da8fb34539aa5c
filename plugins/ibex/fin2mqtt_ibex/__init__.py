"""IBEX FI: a wallet's balances, transactions, KYC, IBAN and recovery status, live.

One WebSocket per user (the server allows no second one): authenticated by a JWT message, then
an initial burst in no particular order, then updates. When the WebSocket cannot be held, the
same state is polled over HTTP within the documented rate limits (see ``fallback``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bridge.api import (
    BALANCE,
    LINK,
    NOTIFICATIONS,
    STANDARD_ENTITIES,
    TRANSACTIONS,
    AnyEvent,
    AuthFailure,
    Connection,
    ConnectionSpec,
    DoNotReconnect,
    Endpoint,
    EntitySpec,
    LinkFailure,
    ParseContext,
    Provider,
    ProviderContext,
    RateLimiter,
    WebSocketSpec,
    enum_sensor,
    renew_when_due,
)
from fin2mqtt_ibex.auth import TokenGate
from fin2mqtt_ibex.fallback import IbexFallback
from fin2mqtt_ibex.parse import Naming, is_signal_only, parse_frame
from fin2mqtt_ibex.settings import IbexSettings

CONNECTED = ("auth_success", "connection_success")

KYC_STATUS = enum_sensor(
    "account_status",
    "status",
    "KYC status",
    "status",
    {"not_started": "Not started", "pending": "Pending", "verified": "Verified"},
    icon="mdi:account-check",
    attributes=("raw",),
    match=(("topic", "kyc"),),
)
IBAN_STATUS = enum_sensor(
    "account_status",
    "status",
    "IBAN status",
    "status",
    {
        "approved": "Approved",
        "not_approved": "Not approved",
        "pending": "Pending",
        "rejected": "Rejected",
    },
    icon="mdi:bank",
    attributes=("raw",),
    match=(("topic", "iban"),),
)
RECOVERY = enum_sensor(
    "account_status",
    "status",
    "Recovery",
    "status",
    {"enabled": "Enabled", "disabled": "Disabled", "pending": "Pending"},
    icon="mdi:shield-account",
    entity_category="diagnostic",
    match=(("topic", "recovery"),),
)
CHAINS = {"1": "Ethereum", "10": "Optimism", "100": "Gnosis", "137": "Polygon", "8453": "Base"}
"""EVM chain ids and their names (the ``chain`` status is the user's default chain id)."""
_CHAIN_NAMES = json.dumps(CHAINS)
DEFAULT_CHAIN = EntitySpec(
    kind="account_status",
    key="status",
    name="Default chain",
    value_template="{{ "
    + json.dumps(CHAINS)
    + ".get(value_json.status, 'Chain ' ~ value_json.status) }}",
    icon="mdi:link-variant",
    entity_category="diagnostic",
    attributes=("status",),
    match=(("topic", "chain"),),
)
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
    sensitive_keys: ClassVar[frozenset[str]] = frozenset(
        {"safeAddress", "address", "recoveryAddress", "id", "userId", "existingConnectionId"}
    )
    display_name: ClassVar[str] = "IBEX"
    entities: ClassVar[Sequence[EntitySpec]] = (
        LINK,
        BALANCE,
        KYC_STATUS,
        IBAN_STATUS,
        RECOVERY,
        RECOVERY_PENDING,
        DEFAULT_CHAIN,
        TRANSACTIONS,
        NOTIFICATIONS,
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
            publish_addresses=settings.publish_addresses,
        )
        self.limiter = RateLimiter(settings.rate_limits)
        """One per user, across link restarts: the limits are the server's."""
        self.gate = TokenGate(
            settings.source(), settings.expected_issuer, retry_refused=settings.auth_retry
        )
        self._user_changed = asyncio.Event()

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """The user's one WebSocket, gated by a usable token, with its HTTP fallback."""
        s, gate = self.settings, self.gate

        async def endpoint() -> Endpoint:
            await gate.fresh()  # TokenUnusable (auth_failed, with the reason) until one works
            return Endpoint(s.websocket_url)

        async def renew() -> str:
            """Reconnect with a fresher token shortly before the current one expires."""
            assert gate.current is not None
            return await renew_when_due(gate.source, gate.current, poll=s.token_poll)

        def failed(failure: LinkFailure) -> None:
            if isinstance(failure, AuthFailure):
                gate.failed(failure)

        fallback = IbexFallback(s, self.naming, ctx, gate, self.limiter, self._user_changed)
        # the token gate is asked again every token_poll while no token is usable
        retry = s.retry_policy(auth_retry=s.token_poll, hold_off=s.duplicate_retry)
        return [
            WebSocketSpec(
                endpoint=endpoint, renew=renew, retry=retry, fallback=fallback, on_failure=failed
            )
        ]

    async def on_connect(self, conn: Connection) -> None:
        """Send the JWT; connected once ``auth_success`` (or ``connection_success``) arrives."""
        assert self.gate.current is not None
        await conn.send(
            {"type": "auth", "token": self.gate.current, "clientName": self.settings.client_name}
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
        if is_signal_only(frame):
            self._user_changed.set()

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        """Frames to events (see ``fin2mqtt_ibex.parse``)."""
        return parse_frame(self.naming, frame, ctx.received_at)


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
