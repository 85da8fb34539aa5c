"""The settings of one Vezgo instance (one client app: its webhooks and its users' accounts)."""

from __future__ import annotations

import ipaddress
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator, model_validator

from bridge.api import ProviderSettings, stable_id

VEZGO_SOURCES = ("52.60.234.183/32", "52.60.240.87/32", "52.60.241.79/32", "52.60.242.161/32")
"""The four fixed addresses every Vezgo webhook comes from (their webhook documentation)."""


class VezgoAccount(ProviderSettings):
    """An account known by id: its alias in topics and the user it belongs to."""

    id: str = Field(min_length=1)
    """The Vezgo account id (as in webhooks' ``account.id``)."""
    alias: str = Field(min_length=1)
    """Its name in topics: ``<base>/<instance>/<alias>/…``."""
    login_name: str | None = None
    """The user's ``loginName`` (needed for "Sync now"); default: the instance's ``login_name``."""

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class VezgoSettings(ProviderSettings):
    """One Vezgo client app."""

    client_id: str = Field(min_length=1)
    """Your client app id: the ``x-client-id`` of every webhook, and ``clientId`` for tokens."""
    webhook_client_id: str | None = None
    """The ``x-client-id`` webhooks must carry, when it is not ``client_id``."""
    secret: SecretStr | None = None
    """The client secret (``secret_file`` / credential ``provider__<instance>__secret``); without
    it there is no "Sync now"."""
    login_name: str | None = None
    """The ``loginName`` of the user whose accounts these are (default for ``accounts``)."""
    accounts: list[VezgoAccount] = Field(default_factory=list)
    """Aliases (and users) of accounts; "Sync now" exists for those with a login name."""
    expose_ids: bool = False
    """Opt in: accounts without an alias appear under their Vezgo id (default: ``acct-<hash>``),
    and payloads carry account ids."""
    webhook_path: str = "/hooks/vezgo"
    """The path of the webhook URL registered in Vezgo's client portal."""
    allowed_sources: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ipaddress.ip_network(n) for n in VEZGO_SOURCES]
    )
    """Source addresses (networks) allowed to post; default: Vezgo's four."""
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    """Reverse proxies whose ``X-Forwarded-For`` names the real sender (besides ``[webhooks]``)."""
    api_url: str = "https://api.vezgo.com"
    """The API host for "Sync now"."""
    failure_threshold: int = Field(default=3, ge=1)
    """Consecutive failures after which a ``TemporaryFailureError`` needs attention."""
    http_timeout: float = Field(default=15.0, gt=0)
    """Seconds per API request of "Sync now"."""

    @field_validator("webhook_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or "?" in value or "#" in value:
            raise ValueError("must be a path such as /hooks/vezgo")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL such as https://api.vezgo.com")
        if parts.path not in ("", "/") or parts.query:
            raise ValueError("must be the API host only, without a path")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        aliases = [a.alias for a in self.accounts]
        if len(set(aliases)) != len(aliases):
            raise ValueError("account aliases must be unique")
        if len({a.id for a in self.accounts}) != len(self.accounts):
            raise ValueError("each account id may appear once")
        return self

    @property
    def expected_client_id(self) -> str:
        """What ``x-client-id`` must say."""
        return self.webhook_client_id or self.client_id

    def alias(self, account_id: str) -> str:
        """An account's name in topics: its alias, else its id (opted in) or a short hash."""
        for account in self.accounts:
            if account.id == account_id:
                return account.alias
        if self.expose_ids:
            return account_id
        return f"acct-{stable_id('vezgo-account', account_id)[:8]}"

    def syncable(self) -> dict[str, tuple[str, str]]:
        """Alias → (account id, login name) of the accounts "Sync now" can serve."""
        if self.secret is None:
            return {}
        found = {}
        for account in self.accounts:
            login = account.login_name or self.login_name
            if login:
                found[account.alias] = (account.id, login)
        return found
