"""The settings of one IBEX FI instance (one user: one WebSocket, all of the user's Safes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bridge.api import ProviderSettings, RetrySettings, TokenSettings, account_alias_problems
from fin2mqtt_ibex.auth import rp_id_of, token_problem

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

REQUESTS_PER_POLL = 2
"""A fallback poll reads balances and transactions."""


class Safe(ProviderSettings):
    """A name for one Safe address in topics (``<base>/<instance>/<alias>/…``)."""

    address: str
    alias: str = Field(min_length=1)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _ADDRESS.match(value):
            raise ValueError("must be a 0x-prefixed 40-hex-digit Safe address")
        return value.lower()


class IbexSettings(TokenSettings, RetrySettings, ProviderSettings):
    """One IBEX FI user: the JWT (``token``, ``token_file`` or ``token_command``) and the API."""

    api_url: str = "https://api.ibex.fi"
    """The API host; the WebSocket is ``wss://<host>/ws``, the HTTP fallback ``https://<host>``."""
    rp_id: str | None = None
    """The JWT issuer the server expects; default: the host's registrable domain (``ibex.fi``)."""
    blockchain_id: int | None = Field(default=None, gt=0)
    """Ask the WebSocket for one chain (``?blockchainId=``); default: the server's choice."""
    client_name: str = "fin2mqtt"
    safes: list[Safe] = Field(default_factory=list)
    """Aliases for Safe addresses; Safes without one appear as ``safe-<short hash>``."""
    publish_addresses: bool = False
    """Opt in to Safes without an alias appearing under their full address in topics."""
    default_asset: str = "EURe"
    """The token of a balance update that names none."""
    default_decimals: int = Field(default=18, ge=0, le=36)
    """Decimals of that token: an integer balance string in an update is in its base units."""
    fallback_after: float = Field(default=30.0, ge=0)
    """Seconds without a working WebSocket before polling over HTTP (at once when refused)."""
    poll_interval: float = Field(default=30.0, gt=0)
    """Seconds between fallback polls (one poll is two requests)."""
    transactions_limit: int = Field(default=50, ge=1, le=500)
    rate_limits: list[tuple[int, float]] = Field(
        default_factory=lambda: [(100, 60.0), (20, 10.0)], min_length=1
    )
    """HTTP limits as ``[requests, seconds]`` windows; the documented ones by default."""
    http_timeout: float = Field(default=10.0, gt=0)
    auth_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for ``auth_success`` after sending the token."""
    token_poll: float = Field(default=10.0, gt=0)
    """Seconds between looks for a fresh token while the current one is expired."""
    auth_retry: float = Field(default=60.0, gt=0)
    """Seconds before trying again after the server refused the token."""
    duplicate_retry: float = Field(default=900.0, gt=0)
    """Seconds before trying again after "already connected" (another client holds the stream)."""

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL such as https://api.ibex.fi")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("must be the API host only, without a path")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = account_alias_problems([s.alias for s in self.safes])
        if problems:
            raise ValueError("; ".join(problems))
        if len({s.address for s in self.safes}) != len(self.safes):
            raise ValueError("each Safe address may appear once")
        fastest = max(REQUESTS_PER_POLL * period / count for count, period in self.rate_limits)
        if self.poll_interval < fastest:
            raise ValueError(
                f"poll_interval {self.poll_interval:g} s would exceed the rate limit: "
                f"at least {fastest:g} s ({REQUESTS_PER_POLL} requests per poll)"
            )
        if self.token is not None:
            problem = token_problem(
                self.token.get_secret_value(), self.expected_issuer, datetime.now(UTC)
            )
            if problem is not None:
                raise ValueError(f"token: {problem}")
        return self

    @property
    def host(self) -> str:
        """The API host name."""
        return urlsplit(self.api_url).hostname or ""

    @property
    def expected_issuer(self) -> str:
        """The ``iss`` a token must carry for this host."""
        return self.rp_id or rp_id_of(self.host)

    @property
    def websocket_url(self) -> str:
        """``wss://<host>/ws`` (``?blockchainId=`` when set)."""
        scheme = "wss" if self.api_url.startswith("https") else "ws"
        url = f"{scheme}://{self.api_url.split('://', 1)[1]}/ws"
        return url if self.blockchain_id is None else f"{url}?blockchainId={self.blockchain_id}"
