"""A simulated Vezgo: the token and sync endpoints, and webhooks posted like Vezgo posts them.

``POST /v1/auth/token`` (header ``loginName``, body ``{"clientId", "secret"}``) → ``{"token"}``;
``POST /v1/accounts/:id/sync`` (``Authorization: Bearer <token>``) → 200 with the account, or
202 (``sync_reply``); then, ``webhook_delay`` seconds later, the sync's webhook (``SyncAccount``,
or ``SyncError`` with ``sync_error``) to ``webhook_url`` from ``source``. Faults: ``token_status``
/ ``sync_status`` force an HTTP status, ``stall`` delays every answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import ClientError, web

from bridge.testing.simulator import DemoSetup, HttpSimulator, WebhookSender

ALLOWED_SOURCE = "127.0.0.2"
"""The loopback alias tests and the demo allow, standing in for Vezgo's addresses."""
OTHER_SOURCE = "127.0.0.3"
"""A loopback alias nobody allows."""


@dataclass(frozen=True, slots=True)
class Call:
    """One API request the simulator received."""

    path: str
    login_name: str | None
    authorization: str | None
    body: Any


def sync_account(account_id: str, provider: str = "binance", login: str = "alice") -> Any:
    """A ``SyncAccount`` body."""
    return {
        "hook": "SyncAccount",
        "user": {"id": f"user-{login}", "loginName": login},
        "account": {"id": account_id, "provider": provider},
    }


def sync_error(account_id: str, error: Any, provider: str = "binance", login: str = "alice") -> Any:
    """A ``SyncError`` body."""
    return {**sync_account(account_id, provider, login), "hook": "SyncError", "error": error}


def new_account_event(message: Any) -> Any:
    """An opt-in real-time ``newAccountEvent`` body."""
    return {
        "hook": "newAccountEvent",
        "institution_id": "binance",
        "app_id": "app-1",
        "websocket_id": "ws-1",
        "message": message,
    }


class VezgoSimulator(HttpSimulator):
    """Vezgo's API for one client app and its users' accounts."""

    def __init__(
        self,
        client_id: str = "app-1",
        secret: str = "s3cret-value",  # noqa: S107 - a simulator's own test secret
        accounts: Mapping[str, str] | None = None,
    ) -> None:
        self.client_id = client_id
        self.secret = secret
        self.accounts = dict(accounts or {"acc-1001": "alice"})
        """Account id → the login name of its user."""
        self.tokens: dict[str, str] = {}
        self.calls: list[Call] = []
        self.token_status: int | None = None
        self.sync_status: int | None = None
        self.stall = 0.0
        self.sync_reply: Literal["account", "accepted"] = "account"
        self.sync_error: str | None = None
        """The webhook after a sync: ``SyncAccount``, or ``SyncError`` with this name."""
        self.webhook_url: str | None = None
        self.source = ALLOWED_SOURCE
        self.webhook_delay = 0.05
        self.webhooks: list[tuple[Any, int]] = []
        """Webhooks sent after syncs, with the status they were answered."""
        super().__init__()

    def setup(self) -> None:
        """The two endpoints."""
        self.app.router.add_post("/v1/auth/token", self._token)
        self.app.router.add_post("/v1/accounts/{id}/sync", self._sync)

    def sender(self, url: str, *, source: str | None = None) -> WebhookSender:
        """A webhook sender with this app's ``x-client-id``, from ``source``."""
        return WebhookSender(url, {"x-client-id": self.client_id}, source=source or self.source)

    async def _answer(self, status: int, body: Any) -> web.Response:
        if self.stall:
            await asyncio.sleep(self.stall)
        self.changed()
        return web.json_response(body, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        login = request.headers.get("loginName")
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.calls.append(Call(request.path, login, None, body))
        if self.token_status is not None:
            return await self._answer(self.token_status, {"error": "forced"})
        if not login:
            return await self._answer(400, {"error": "loginName header is required"})
        good = isinstance(body, dict) and body.get("clientId") == self.client_id
        if not good or body.get("secret") != self.secret:
            return await self._answer(401, {"error": "invalid client credentials"})
        token = secrets.token_hex(8)
        self.tokens[token] = login
        return await self._answer(200, {"token": token})

    async def _sync(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        account = request.match_info["id"]
        self.calls.append(Call(request.path, None, auth, None))
        if self.sync_status is not None:
            return await self._answer(self.sync_status, {"error": "forced"})
        login = self.tokens.get((auth or "").removeprefix("Bearer "))
        if login is None:
            return await self._answer(401, {"error": "invalid token"})
        if self.accounts.get(account) != login:
            return await self._answer(404, {"error": "account not found"})
        if self.webhook_url is not None:
            self.later(self._hook_after_sync(account, login), name=f"vezgo-hook-{account}")
        if self.sync_reply == "accepted":
            return await self._answer(202, None)
        return await self._answer(200, {"id": account, "provider": "binance", "status": "syncing"})

    async def _hook_after_sync(self, account: str, login: str) -> None:
        await asyncio.sleep(self.webhook_delay)
        assert self.webhook_url is not None
        body = (
            sync_account(account, login=login)
            if self.sync_error is None
            else sync_error(account, self.sync_error, login=login)
        )
        try:
            status, _ = await self.sender(self.webhook_url).send(body)
        except (OSError, ClientError, ValueError):
            status = 0  # nobody listening: Vezgo would not retry either
        self.webhooks.append((body, status))
        self.changed()


def demo() -> DemoSetup:
    """``fin2mqtt demo``: two accounts that sync, fail now and then, and a stranger's post."""
    sim = VezgoSimulator(
        client_id="demo-app", accounts={"acc-1001": "demo-user", "acc-2002": "demo-user"}
    )
    rng = random.Random(7)  # noqa: S311 - demo activity, not cryptography

    def settings() -> dict[str, Any]:
        return {
            "client_id": "demo-app",
            "secret": sim.secret,
            "login_name": "demo-user",
            "api_url": sim.url,
            "allowed_sources": [f"{ALLOWED_SOURCE}/32"],
            "failure_threshold": 2,
            "accounts": [
                {"id": "acc-1001", "alias": "binance"},
                {"id": "acc-2002", "alias": "ledger"},
            ],
        }

    def webhooks(server: str) -> None:
        sim.webhook_url = f"{server}/hooks/vezgo"  # the plugin's default path

    async def drive() -> None:
        assert sim.webhook_url is not None
        vezgo = sim.sender(sim.webhook_url)
        errors = ["TemporaryFailureError", "TemporaryFailureError", "LoginFailedError", None]
        for n in itertools.count(1):
            await asyncio.sleep(2.5)
            account = rng.choice(list(sim.accounts))
            error = rng.choice(errors)
            body = sync_account(account) if error is None else sync_error(account, error)
            with contextlib.suppress(OSError, ClientError, ValueError):
                await vezgo.send(body)
                if n % 4 == 0:  # someone else tries: refused (403), nothing published
                    await vezgo.send(body, source=OTHER_SOURCE)

    return DemoSetup(sim, settings, drive, webhooks)
