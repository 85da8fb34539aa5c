"""The IBEX FI JWT: which ``iss`` the server wants, and whether a token can be used now.

The server derives its ``rpId`` from the Host header and accepts a JWT only when ``iss`` equals
it. We check that (and ``exp``) before connecting, so a wrong or stale token is a clear error
instead of a refused connection.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime

from bridge.api import AuthFailure, StaticToken, TokenSource, jwt_claims


def rp_id_of(host: str) -> str:
    """The registrable domain of an API host: ``api.ibex.fi`` → ``ibex.fi``.

    IP addresses and single-label hosts (``localhost``) stay as they are. Hosts under a
    multi-label public suffix (``api.ibex.co.uk``) need the ``rp_id`` setting.
    """
    host = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        return ".".join(labels[-2:])
    return host


def token_problem(token: str, rp_id: str, now: datetime) -> str | None:
    """Why the server would refuse this token, or None when it looks usable."""
    claims = jwt_claims(token)
    if not claims:
        return "the token is not a JWT"
    issuer = claims.get("iss")
    if issuer != rp_id:
        return f"the token was issued for {issuer!r}, but this API host expects iss {rp_id!r}"
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        expiry = datetime.fromtimestamp(exp, UTC)
        if expiry <= now:
            return f"the token expired at {expiry.isoformat()}"
    return None


class TokenUnusable(AuthFailure):
    """No token that could work right now (expired, for another host, unreadable, refused)."""


class TokenGate:
    """Hands out a token only when it can work: read from the source before every attempt.

    While the token is expired, issued for another host, unreadable, or the one the server just
    refused, ``fresh`` raises ``TokenUnusable`` with the reason: the core reports
    ``auth_failed`` and asks again after the connection's ``auth_retry`` (``token_poll``), so a
    replaced token file is used within seconds and no doomed connection is ever opened. A
    refused token is tried again after ``retry_refused`` seconds (the server may have been wrong).
    """

    def __init__(self, source: TokenSource, issuer: str, *, retry_refused: float) -> None:
        self.source = source
        self.issuer = issuer
        self.retry_refused = retry_refused
        self.current: str | None = None
        """The last token handed out."""
        self._refused: tuple[str, float] | None = None

    def refused(self) -> None:
        """The server refused the current token: do not offer it again for a while."""
        if self.current is not None:
            self._refused = (self.current, time.monotonic())

    def failed(self, failure: AuthFailure) -> None:
        """What ended a connection: a refusal by the server marks the token as refused."""
        if not isinstance(failure, TokenUnusable):
            self.refused()

    async def fresh(self) -> str:
        """A usable token, or ``TokenUnusable`` saying why there is none."""
        problem = await self._problem()
        if problem is not None:
            raise TokenUnusable(problem)
        assert self.current is not None
        return self.current

    async def usable(self) -> str | None:
        """The source's token if it can be used right now (without waiting or reporting)."""
        return None if await self._problem() is not None else self.current

    async def _problem(self) -> str | None:
        try:
            token = await self.source.get()
        except AuthFailure as exc:
            return str(exc)
        where = self.source.description
        wait = "restart after changing it" if isinstance(self.source, StaticToken) else "waiting"
        problem = token_problem(token, self.issuer, datetime.now(UTC))
        if problem is not None:
            return f"{problem} ({where}; {wait} for a fresh token)"
        refused = self._refused
        if (
            refused is not None
            and refused[0] == token
            and time.monotonic() - refused[1] < self.retry_refused
        ):
            return (
                f"the server refused this token ({where}; {wait} for a fresh one, "
                f"or trying it again after {self.retry_refused:g} s)"
            )
        self.current = token
        return None
