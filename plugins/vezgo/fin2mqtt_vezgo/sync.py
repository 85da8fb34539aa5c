""" "Sync now": a user token, then ``POST /v1/accounts/:id/sync``.

``POST /v1/auth/token`` with the header ``loginName`` and the body ``{"clientId", "secret"}``
answers ``{"token"}``; the sync answers 200 with the account object or 202 (Vezgo's client code
and documentation differ; both mean "started"). The result arrives later as a webhook.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pydantic import JsonValue

from bridge.api import ActionFailed, ActionRequest, HttpClient, LinkFailure
from fin2mqtt_vezgo.settings import VezgoSettings


class SyncNow:
    """The action's ``run``: one token and one sync request per press, no retries."""

    def __init__(self, settings: VezgoSettings) -> None:
        self.settings = settings
        self.accounts = settings.syncable()

    async def __call__(self, request: ActionRequest) -> JsonValue:
        """Ask Vezgo to sync the account; the answer says whether it accepted."""
        alias = request.account or ""
        account_id, login_name = self.accounts[alias]
        path = f"/v1/accounts/{quote(account_id, safe='')}/sync"
        try:
            token = await self._token(login_name)
            reply = await self._post(path, {"Authorization": f"Bearer {token}"})
        except LinkFailure as exc:
            # the path names the full account id: the answer names the alias
            text = str(exc).replace(quote(account_id, safe=""), alias)
            raise ActionFailed(text.replace(account_id, alias)) from None
        started = "account" if isinstance(reply, dict) and reply else "accepted"
        return {"sync": "requested", "reply": started}

    async def _token(self, login_name: str) -> str:
        secret = self.settings.secret
        if secret is None:  # syncable() offers no account without it
            raise ActionFailed("no secret configured")
        body = {"clientId": self.settings.client_id, "secret": secret.get_secret_value()}
        reply = await self._post("/v1/auth/token", {"loginName": login_name}, body)
        token = reply.get("token") if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token:
            raise ActionFailed("POST /v1/auth/token: the answer has no token")
        return token

    async def _post(self, path: str, headers: Mapping[str, str], body: Any = None) -> Any:
        async def fixed() -> Mapping[str, str]:
            return headers

        async with HttpClient(
            self.settings.api_url, headers=fixed, timeout=self.settings.http_timeout, retries=0
        ) as http:
            return await http.request_json("POST", path, body=body)
