"""Where a provider's token comes from: the configuration, a file (re-read), or a command.

``TokenSettings`` is a settings block plugins embed; ``source()`` gives the ``TokenSource``.
JWT expiry is read (unverified) to warn before it passes and to renew the connection when a
fresh token is available.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import jwt
from pydantic import Field, SecretStr, model_validator

from bridge.config.credentials import read_secret_file
from bridge.config.settings import SecretFileModel
from bridge.model.errors import AuthFailure, ConfigError
from bridge.model.redaction import SECRETS

log = logging.getLogger(__name__)


class TokenSource(ABC):
    """Gives the current token; called before every connection attempt."""

    @abstractmethod
    async def get(self) -> str:
        """The token to use now (raises AuthFailure when none can be had)."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the token comes from, for log lines (never the token)."""


class StaticToken(TokenSource):
    """A token written in the configuration."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def get(self) -> str:
        """The configured token."""
        return self._token.get_secret_value()

    @property
    def description(self) -> str:
        """``configuration``."""
        return "configuration"


class FileToken(TokenSource):
    """A token file, read again before every connection (rotate it without a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def get(self) -> str:
        """The file's content, without the trailing newline."""
        try:
            token = read_secret_file(self.path)
        except OSError as exc:
            raise AuthFailure(f"cannot read token file {self.path}: {exc.strerror}") from exc
        if not token:
            raise AuthFailure(f"token file {self.path} is empty")
        SECRETS.add(token)
        return token

    @property
    def description(self) -> str:
        """The file's path."""
        return f"file {self.path}"


class CommandToken(TokenSource):
    """A command that prints a fresh token (e.g. a password manager or an OAuth helper)."""

    def __init__(self, argv: list[str], timeout: float = 30.0) -> None:
        self.argv = argv
        self.timeout = timeout

    async def get(self) -> str:
        """Run the command; its standard output is the token."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AuthFailure(f"token command {self.argv[0]} timed out") from None
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise AuthFailure(
                f"token command {self.argv[0]} exited {proc.returncode}: "
                f"{SECRETS.scrub(tail[0])}".rstrip(": ")
            )
        token = out.decode(errors="replace").strip()
        SECRETS.add(token)
        return token

    @property
    def description(self) -> str:
        """The command's name."""
        return f"command {self.argv[0]}"


class TokenSettings(SecretFileModel):
    """Exactly one of ``token``, ``token_file`` (re-read on every connect) or ``token_command``."""

    token: SecretStr | None = None
    token_file: Path | None = None
    token_command: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [n for n in ("token", "token_file", "token_command") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of token, token_file, token_command"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def source(self) -> TokenSource:
        """The token source these settings describe."""
        if self.token is not None:
            return StaticToken(self.token)
        if self.token_file is not None:
            return FileToken(self.token_file)
        assert self.token_command is not None
        return CommandToken(self.token_command)


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the upstream verifies it); {} when it is no JWT."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims


def jwt_expiry(token: str) -> datetime | None:
    """When a JWT expires (``exp``), if it says."""
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, int | float):
        return datetime.fromtimestamp(exp, UTC)
    return None


def check_not_expired(token: str, now: datetime, what: str) -> None:
    """ConfigError when the JWT has expired (pyjwt's unverified decode does not check ``exp``)."""
    expiry = jwt_expiry(token)
    if expiry is not None and expiry <= now:
        raise ConfigError([f"{what}: the token expired at {expiry.isoformat()}"])


async def renew_when_due(
    source: TokenSource,
    current: str,
    *,
    margin: timedelta = timedelta(minutes=2),
    poll: float = 30.0,
    now: Any = None,
) -> str:
    """Return (a reason) once ``current`` is within ``margin`` of expiry and a newer token exists.

    Warns once when the token is about to expire and the source has nothing newer.
    """
    clock = now or (lambda: datetime.now(UTC))
    expiry = jwt_expiry(current)
    if expiry is None:
        await asyncio.Event().wait()  # never due
    assert expiry is not None
    warned = False
    while True:
        due_in = (expiry - margin - clock()).total_seconds()
        if due_in > 0:
            await asyncio.sleep(min(due_in, poll))
            continue
        try:
            fresh = await source.get()
        except AuthFailure as exc:
            fresh, problem = current, str(exc)
        else:
            problem = ""
        fresh_expiry = jwt_expiry(fresh)
        if fresh != current and (fresh_expiry is None or fresh_expiry > expiry):
            return f"a fresh token is available from {source.description}"
        if not warned:
            warned = True
            log.warning(
                "token from %s expires at %s and no newer one is available%s",
                source.description,
                expiry.isoformat(),
                f" ({problem})" if problem else "",
            )
        await asyncio.sleep(poll)
