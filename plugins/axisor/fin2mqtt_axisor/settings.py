"""The settings of one Axisor instance: one user (one JWT), one WebSocket, its rooms."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from bridge.api import ProviderSettings, RetrySettings, TokenSettings
from fin2mqtt_axisor.auth import token_problem

_ALIAS = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
SERVER_LIMIT = 100
"""Messages per 60 s the server takes from one client (the server code); more is an error."""


class AxisorSettings(TokenSettings, RetrySettings, ProviderSettings):
    """One Axisor user: the JWT (``token``, ``token_file`` or ``token_command``) and its rooms."""

    url: str = "wss://api.axisor.com/ws"
    auth_mode: Literal["header", "message"] = "header"
    """``header``: ``Authorization: Bearer`` at the handshake; ``message``: ``{"type": "auth"}``."""
    account: str = "main"
    """The user's name in topics (the Axisor user id never appears in a topic)."""
    symbols: list[str] = Field(default_factory=lambda: ["BTC_USD"])
    """Markets to follow: each becomes the room ``market:<symbol>``."""
    rooms: list[str] = Field(default_factory=lambda: ["margin_guard", "positions", "notifications"])
    """Further rooms to subscribe to (the user's own room is joined by the server)."""
    aliases: dict[str, str] = Field(default_factory=dict)
    """Names in topics for other users' ids (admin rooms); others appear as ``user-<hash>``."""
    max_messages: int = Field(default=90, ge=1, le=SERVER_LIMIT)
    """Our own messages allowed per ``rate_window`` (the server takes 100 per 60 s)."""
    rate_window: float = Field(default=60.0, gt=0)
    """Seconds of the rate window; after ``RATE_LIMIT_EXCEEDED`` we send nothing for this long."""
    ping_interval: float = Field(default=25.0, gt=0)
    """Seconds between app-level ``ping``s (the server's ``pong`` proves it is alive)."""
    reply_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for the connection reply, a room reply, ``list_rooms`` or ``pong``."""
    invalid_room_retry: float = Field(default=3600.0, gt=0)
    """A room the server called ``INVALID_ROOM`` is not asked for again before this."""
    token_poll: float = Field(default=10.0, gt=0)
    """Seconds between looks for a fresh token while the current one is unusable."""
    auth_retry: float = Field(default=60.0, gt=0)
    """Seconds before a token the server refused is offered again."""

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, value: str) -> str:
        if not value.startswith(("wss://", "ws://")):
            raise ValueError("must start with wss:// (or ws:// for a local simulator)")
        return value

    @field_validator("account")
    @classmethod
    def _alias(cls, value: str) -> str:
        if not _ALIAS.match(value):
            raise ValueError("use lower-case letters, digits, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if any(not s.strip() or ":" in s for s in self.symbols):
            raise ValueError("symbols are market names such as BTC_USD (without 'market:')")
        if len(set(self.subscriptions)) != len(self.subscriptions):
            raise ValueError("each room (symbols and rooms together) may appear once")
        if self.token is not None:
            problem = token_problem(self.token.get_secret_value(), datetime.now(UTC))
            if problem is not None:
                raise ValueError(f"token: {problem}")
        return self

    @property
    def subscriptions(self) -> list[str]:
        """Every room we subscribe to, markets first."""
        return [f"market:{s}" for s in self.symbols] + list(self.rooms)
