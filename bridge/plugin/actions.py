"""Provider actions declared as data: things a user can ask a provider to do ("sync now").

A provider returns its ``Action``s from ``Provider.actions()``. The core answers MQTT requests on
``<base>/bridge/request/action`` (``{"instance", "action", "account", "params", "transaction"}``)
by running the action's ``run`` in a task of its own, bounded by ``timeout``, and publishes one
Home Assistant ``button`` per action (per account of ``accounts`` when ``per_account``) whose
command topic is that request topic.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pydantic import JsonValue

ACTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
"""Action names are topic- and id-safe: lower-case letters, digits, ``_`` and ``-``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequest:
    """One request to run an action, as the action's ``run`` sees it."""

    instance: str
    """The provider instance asked."""
    action: str
    """The action's name."""
    account: str | None
    """The account alias (as in topics) for a per-account action; None otherwise."""
    params: Mapping[str, JsonValue] = field(default_factory=dict)
    """The request's ``params`` object (empty when it has none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """Something a user can ask a provider instance to do, from MQTT or a Home Assistant button.

    ``run`` returns JSON data for the ``ok`` answer; it raises ``ActionFailed("why")`` (or a
    ``LinkFailure``) for an ``error`` answer with that text. Anything else it raises is answered
    with the exception's type and text, and its traceback is logged. A run longer than
    ``timeout`` seconds is cancelled and answered as an error. One run per action and account
    at a time: a request while one runs is answered as an error.
    """

    name: str
    """Identifies the action in requests (``"sync"``); ``a-z 0-9 _ -``."""
    title: str
    """The button's name in Home Assistant (``"Sync now"``)."""
    run: Callable[[ActionRequest], Awaitable[JsonValue]]
    per_account: bool = False
    """True: every request names one of ``accounts``; one button per account."""
    accounts: tuple[str, ...] = ()
    """The account aliases a per-account action serves (others are refused)."""
    timeout: float = 30.0
    icon: str | None = None
    """A Material Design icon for the button, e.g. ``"mdi:sync"``."""

    def __post_init__(self) -> None:
        if not ACTION_NAME.match(self.name):
            raise ValueError(f"action name {self.name!r} must match {ACTION_NAME.pattern}")
        if self.accounts and not self.per_account:
            raise ValueError(f"action {self.name!r} lists accounts but is not per_account")
        if self.timeout <= 0:
            raise ValueError(f"action {self.name!r}: timeout must be positive")
