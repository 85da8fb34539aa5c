"""Hibachi account stream: one WebSocket per account, ``stream.start`` / ``ping`` / ``stop``.

The listen key expires 10 s after the last ``stream.ping`` (the doc; the vendor SDK pings only
after 15 s idle, which contradicts it): we ping every ``ping_interval`` seconds (3 s), and a
missing or rejected reply, or a ``stream_expired`` event, opens a fresh connection whose
``stream.start`` snapshot replaces the retained balance and positions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.api import (
    AnyEvent,
    AuthFailure,
    Connection,
    ConnectionSpec,
    Endpoint,
    ParseContext,
    Provider,
    ProviderContext,
    ProviderSettings,
    RetrySettings,
    TransportFailure,
    UpstreamConfigFailure,
    WebSocketOptions,
    WebSocketSpec,
    account_alias_problems,
)
from fin2mqtt_hibachi.parse import event_name, parse_frame


class HibachiAccount(ProviderSettings):
    """One Hibachi account of the instance."""

    id: int = Field(ge=0)
    alias: str | None = None
    """Name in topics (default: the account id)."""


class HibachiSettings(RetrySettings, ProviderSettings):
    """One Hibachi API key and the accounts it streams (one WebSocket each)."""

    api_key: SecretStr
    accounts: list[HibachiAccount] = Field(min_length=1)
    base_url: str = "wss://api.hibachi.xyz"
    ping_interval: float = Field(default=3.0, gt=0, lt=10)
    """Seconds between ``stream.ping``s; the listen key dies 10 s after the last one."""
    request_timeout: float = Field(default=2.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("must start with wss:// (or ws:// for a local simulator)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique(self) -> HibachiSettings:
        ids = [a.id for a in self.accounts]
        if len(set(ids)) != len(ids):
            raise ValueError("each account id may appear once")
        problems = account_alias_problems([a.alias or str(a.id) for a in self.accounts])
        if problems:
            raise ValueError("; ".join(problems))
        return self


class HibachiProvider(Provider[HibachiSettings]):
    """The Hibachi account stream."""

    settings_model = HibachiSettings
    sensitive_keys: ClassVar[frozenset[str]] = frozenset({"listenKey", "accountId", "account_id"})
    display_name: ClassVar[str] = "Hibachi"

    def __init__(self, name: str, settings: HibachiSettings) -> None:
        super().__init__(name, settings)
        self.keepalive_interval = settings.ping_interval  # type: ignore[misc]
        self._aliases = {str(a.id): a.alias or str(a.id) for a in settings.accounts}
        self._ids = {alias: int(raw) for raw, alias in self._aliases.items()}
        self._live_keys: dict[str | None, str] = {}
        """Account → the listen key of its live connection."""
        self._foreign_keys_seen: set[str] = set()
        self._log = logging.getLogger(f"fin2mqtt.provider.{name}")

    def alias(self, raw_account: str) -> str:
        """The topic name of an account id (the id itself when it is not configured)."""
        return self._aliases.get(raw_account, raw_account)

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """One WebSocket per account, each with its own link topic and its own failures."""
        s = self.settings
        options = WebSocketOptions(request_timeout=s.request_timeout)
        specs: list[ConnectionSpec] = []
        for account in s.accounts:
            url = f"{s.base_url}/ws/account?accountId={account.id}"

            async def endpoint(url: str = url) -> Endpoint:
                return Endpoint(url, {"Authorization": s.api_key.get_secret_value()})

            alias = account.alias or str(account.id)
            specs.append(
                WebSocketSpec(
                    account=alias, endpoint=endpoint, options=options, retry=s.retry_policy()
                )
            )
        return specs

    def _request(self, conn: Connection, method: str, **params: Any) -> dict[str, Any]:
        assert conn.account is not None
        return {
            "method": method,
            "params": {"accountId": self._ids[conn.account], **params},
            "timestamp": int(time.time()),
        }

    async def on_connect(self, conn: Connection) -> None:
        """``stream.start``: its snapshot goes to ``parse``; keep the listen key."""
        reply = await conn.request(self._request(conn, "stream.start"), deliver_reply=True)
        status = reply.get("status")
        if status in (401, 403):
            raise AuthFailure(f"stream.start refused: {status} {reply.get('error', '')}".strip())
        if status != 200 or "result" not in reply:
            raise UpstreamConfigFailure(
                f"stream.start failed: {status} {reply.get('error', '')}".strip()
            )
        conn.data["listenKey"] = key = str(reply["result"]["listenKey"])
        self._live_keys[conn.account] = key

    async def keepalive(self, conn: Connection) -> None:
        """``stream.ping`` with the listen key; a missing or bad reply renews the connection."""
        reply = await conn.request(
            self._request(conn, "stream.ping", listenKey=conn.data["listenKey"])
        )
        if reply.get("status") != 200:
            raise TransportFailure(
                f"stream.ping rejected: {reply.get('status')} {reply.get('error', '')}".strip()
            )

    async def on_stop(self, conn: Connection) -> None:
        """``stream.stop`` on a clean shutdown."""
        key = conn.data.get("listenKey")
        if key is not None:
            await conn.request(self._request(conn, "stream.stop", listenKey=key), timeout=1.0)

    def control(self, frame: Any) -> None:
        """``stream_expired``: the listen key is gone; start over on a fresh connection.

        Only for a key of ours: a ``stream_expired`` naming a listen key no live connection of
        this instance holds (another session's, an old one) is ignored, so a healthy stream is
        not dropped.
        """
        if (
            not isinstance(frame, dict)
            or "stream_expired" not in (frame.get("event"), frame.get("topic"))  # most frames
            or event_name(frame) != "stream_expired"
        ):
            return
        params = frame.get("params")
        key = params.get("listenKey") if isinstance(params, dict) else None
        if key is not None and str(key) not in self._live_keys.values():
            if str(key) not in self._foreign_keys_seen:
                self._foreign_keys_seen.add(str(key))
                self._log.info("ignoring stream_expired for a listen key that is not ours")
            return
        raise TransportFailure("listen key expired (stream_expired)")

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        """Frames to events (see ``fin2mqtt_hibachi.parse``)."""
        return parse_frame(self.name, self.alias, frame, ctx.received_at, ctx.account)


__all__ = ["HibachiAccount", "HibachiProvider", "HibachiSettings"]
