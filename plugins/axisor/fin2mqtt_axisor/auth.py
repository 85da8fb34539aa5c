"""The Axisor JWT: whether a token can be used now, read from its source before every attempt."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bridge.api import AuthFailure, StaticToken, TokenSource, jwt_claims, jwt_expiry


def token_problem(token: str, now: datetime) -> str | None:
    """Why the server would refuse this token, or None when it looks usable."""
    if not jwt_claims(token):
        return "the token is not a JWT"
    expiry = jwt_expiry(token)
    if expiry is not None and expiry <= now:
        return f"the token expired at {expiry.isoformat()}"
    return None


class TokenUnusable(AuthFailure):
    """No token that could work right now (expired, unreadable, or just refused)."""


class TokenGate:
    """Hands out a token only when it can work; never opens a connection with a doomed one.

    While the source's token is expired, unreadable or the one the server just refused,
    ``fresh`` raises ``TokenUnusable`` with the reason: the core reports ``auth_failed`` and
    asks again after ``auth_retry`` (``token_poll``), so a replaced token file is used within
    seconds. A refused token is offered again after ``retry_refused`` seconds.
    """

    def __init__(self, source: TokenSource, *, retry_refused: float) -> None:
        self.source = source
        self.retry_refused = retry_refused
        self.current: str | None = None
        self._refused: tuple[str, float] | None = None

    def failed(self, failure: AuthFailure) -> None:
        """The server refused the current token (not our own refusal to offer one)."""
        if not isinstance(failure, TokenUnusable) and self.current is not None:
            self._refused = (self.current, time.monotonic())

    async def fresh(self) -> str:
        """A usable token, or ``TokenUnusable`` saying why there is none."""
        try:
            token = await self.source.get()
        except AuthFailure as exc:
            raise TokenUnusable(str(exc)) from exc
        where = self.source.description
        wait = "restart after changing it" if isinstance(self.source, StaticToken) else "waiting"
        problem = token_problem(token, datetime.now(UTC))
        if problem is not None:
            raise TokenUnusable(f"{problem} ({where}; {wait} for a fresh token)")
        refused = self._refused
        if (
            refused is not None
            and refused[0] == token
            and time.monotonic() - refused[1] < self.retry_refused
        ):
            raise TokenUnusable(
                f"the server refused this token ({where}; {wait} for a fresh one, "
                f"or trying it again after {self.retry_refused:g} s)"
            )
        self.current = token
        return token
