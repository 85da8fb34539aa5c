"""What must never leave the bridge: secret values, URL credentials, full addresses.

``SECRETS`` is the process-wide set of secret values: the configuration's (every ``SecretStr``,
the arguments of token commands, passwords and query values in URLs) and the tokens read at run
time (a token file, a token command's output). The log filter, link errors, raw events,
``bridge/info`` and ``fin2mqtt check`` replace each of them by ``MASK``. It is process-wide on
purpose: a secret must be masked whichever layer happens to print it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "**********"

MIN_SECRET = 4
"""Shorter values are not treated as secrets (masking ``ab`` everywhere would garble logs)."""

_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}\b")


class SecretValues:
    """Known secret values, replaced by ``MASK`` in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        """Remember secret values (None, empty and very short ones are ignored)."""
        new = {v for v in values if v and len(v) >= MIN_SECRET} - self._values
        if not new:
            return
        self._values |= new
        # longest first: a secret that contains another is masked whole
        ordered = sorted(self._values, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def add_url(self, url: str) -> None:
        """The password and query values of a URL are secrets."""
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return
        self.add(password, *(v for _, v in parse_qsl(parts.query)))

    def add_command(self, argv: Iterable[str]) -> None:
        """Every argument of a command after its name (``sh -c "curl -u user:pw …"``)."""
        args = list(argv)[1:]
        self.add(*(a for a in args if not a.startswith("-")))

    def clear(self) -> None:
        """Forget everything (tests)."""
        self._values.clear()
        self._pattern = None

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``MASK``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def scrub_json(self, value: Any) -> Any:
        """JSON data with every string scrubbed (keys too)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_json(v) for v in value]
        return value


SECRETS = SecretValues()
"""The process's secret values (see the module docstring)."""


def public_url(url: str) -> str:
    """A URL without user info and without query (``wss://u:p@h/ws?key=…`` → ``wss://h/ws``)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def mask_address(address: str) -> str:
    """``0x1234…5678``: enough to recognise one's own address, not to look it up."""
    return f"{address[:6]}…{address[-4:]}"


def public_text(text: str) -> str:
    """A configuration string as it may be shown: secrets masked, URLs and addresses shortened."""
    text = SECRETS.scrub(text)
    if "://" in text and " " not in text:
        return public_url(text)
    return _ADDRESS.sub(lambda m: mask_address(m.group(0)), text)
