"""The settings of one Vezta instance: where, which channels, which markets, and an optional JWT."""

from __future__ import annotations

from typing import Literal, Self, get_args
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bridge.api import OverflowPolicy, ProviderSettings, RetrySettings, TokenSettings

Channel = Literal[
    "market:prices",
    "market:orderbook",
    "market:trades",
    "monitor:signals",
    "user:orders",
    "user:notifications",
    "user:portfolio",
    "user:copy-trade",
]
CHANNELS: tuple[str, ...] = get_args(Channel)
USER_CHANNELS = tuple(c for c in CHANNELS if c.startswith("user:"))
PUBLIC_CHANNELS = tuple(c for c in CHANNELS if not c.startswith("user:"))
QUIET_PUBLIC = ("monitor:signals",)
"""What an instance without a token subscribes to unless told (the market channels are noisy)."""


class VeztaSettings(TokenSettings, RetrySettings, ProviderSettings):
    """One Vezta user (or none): public channels need no token, ``user:*`` channels need one."""

    url: str = "wss://backend.vezta.io/ws"
    """The Socket.IO server and namespace (the path): ``wss://backend.vezta.io/ws``."""
    socketio_path: str = "socket.io"
    account: str = Field(default="main", min_length=1)
    """Alias of the token's user in topics (``<base>/<instance>/<account>/…``)."""
    channels: list[Channel] | None = None
    """Default: the four ``user:*`` channels with a token, else ``monitor:signals``."""
    markets: list[str] = Field(default_factory=list)
    """Market ids or slugs to keep from the ``market:*`` channels; empty: every market."""
    aliases: dict[str, str] = Field(default_factory=dict)
    """Topic names for markets, by market id or slug (default: the market id)."""
    currency: str = Field(default="USD", min_length=1)
    """The currency of portfolio amounts (the asset of the portfolio value's balance topic)."""
    orderbook_depth: int = Field(default=1, ge=1, le=100)
    """Price levels per side kept in an order book topic (1: the top of the book)."""
    subscribe_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for ``subscribed`` (or a refusal) after each ``subscribe``."""
    connect_timeout: float = Field(default=10.0, gt=0)
    queue_size: int = Field(default=10_000, ge=10)
    """Frames waiting for processing per connection; past it, ``market_overflow`` applies to
    the public connection and a reconnect to the user's."""
    market_overflow: OverflowPolicy = "drop_oldest"
    """``drop_oldest`` (latest prices win, drops counted) or ``reconnect``."""

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        # overrides TokenSettings' rule: the token is optional here (public channels)
        given = [n for n in ("token", "token_file", "token_command") if getattr(self, n)]
        if len(given) > 1:
            raise ValueError(f"give at most one of token, token_file, token_command (got {given})")
        if self.channels is not None and not self.channels:
            raise ValueError("channels: name at least one channel")
        needy = [c for c in self.subscribed if c in USER_CHANNELS]
        if needy and not self.has_token:
            raise ValueError(f"channels {', '.join(needy)} need a token (token or token_file)")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("wss", "ws", "https", "http") or not parts.hostname:
            raise ValueError("must be a URL such as wss://backend.vezta.io/ws")
        return value

    @property
    def has_token(self) -> bool:
        """True when a token (or a file or command giving one) is configured."""
        return any((self.token, self.token_file, self.token_command))

    @property
    def subscribed(self) -> tuple[str, ...]:
        """The channels this instance subscribes to, in a fixed order."""
        if self.channels is not None:
            return tuple(c for c in CHANNELS if c in self.channels)
        return USER_CHANNELS if self.has_token else QUIET_PUBLIC

    @property
    def server(self) -> str:
        """The server URL without the namespace (what python-socketio connects to)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def namespace(self) -> str:
        """The Socket.IO namespace: the URL's path (``/ws``), ``/`` without one."""
        return urlsplit(self.url).path.rstrip("/") or "/"
