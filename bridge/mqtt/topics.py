"""The MQTT contract's topic names (public API: change only with a version bump)."""

from __future__ import annotations

import re
from functools import lru_cache

from bridge.model.events import (
    AccountStatusEvent,
    AnyEvent,
    BalanceEvent,
    LinkStateEvent,
    MarketPriceEvent,
    OrderBookEvent,
    PositionEvent,
)

_NOT_SLUG = re.compile(r"[^a-z0-9_-]+")


@lru_cache(maxsize=4096)  # the same accounts, assets and symbols come again and again
def slug(text: str) -> str:
    """One safe topic level: ``"ETH/USDT-P"`` → ``"eth-usdt-p"``."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-") or "_"


RESERVED_INSTANCES = frozenset({"bridge", "homeassistant"})
"""Instance names that would collide with the bridge's own topics (``<base>/bridge/…``)."""

RESERVED_NODES = frozenset({"state", "info", "stats", "health", "request", "response", "logging"})
"""Node ids that would collide with the single-node bridge topics (``<base>/bridge/state``, …)."""

RESERVED_ACCOUNTS = frozenset({
    "bridge", "market", "link", "raw", "trade", "order", "transaction", "notification",
    "balance", "position", "status",
})  # fmt: skip
"""Account aliases that would collide with an instance's own topics (``<instance>/market/…``,
``<instance>/link``, events of no account such as ``<instance>/trade``)."""


def account_alias_problems(aliases: list[str]) -> list[str]:
    """What is wrong with a provider instance's account aliases, as they become topic levels.

    A reserved name, or two aliases that are one after slugging (``Main`` and ``main``).
    """
    problems: list[str] = []
    seen: dict[str, str] = {}
    for alias in aliases:
        level = slug(alias)
        if level in RESERVED_ACCOUNTS:
            problems.append(
                f"account alias '{alias}' is reserved (it would collide with the instance's own "
                f"topics; reserved: {', '.join(sorted(RESERVED_ACCOUNTS))})"
            )
        elif level in seen:
            problems.append(
                f"account aliases '{seen[level]}' and '{alias}' are the same topic level "
                f"'{level}'; aliases must differ after lower-casing and replacing other "
                "characters than a-z 0-9 _ - by '-'"
            )
        else:
            seen[level] = alias
    return problems


class TopicMap:
    """Maps events and bridge messages to topics under one base topic.

    The bridge's own topics are ``<base>/bridge/…``, or ``<base>/bridge/<node_id>/…`` for one
    of several daemons sharing a broker.
    """

    def __init__(self, base: str, node_id: str | None = None) -> None:
        self.base = base
        self.node_id = node_id
        self.bridge = f"{base}/bridge/{node_id}" if node_id else f"{base}/bridge"
        self.bridge_state = f"{self.bridge}/state"
        self.bridge_info = f"{self.bridge}/info"
        self.bridge_stats = f"{self.bridge}/stats"
        self.bridge_health = f"{self.bridge}/health"
        self.bridge_requests = f"{self.bridge}/request/#"
        """Every request topic (ops may have more than one level: ``discovery/refresh``)."""
        self._request_prefix = f"{self.bridge}/request/"

    def request(self, op: str) -> str:
        """Where a client publishes the request ``<op>``."""
        return f"{self.bridge}/request/{op}"

    def response(self, op: str) -> str:
        """Where the answer to ``bridge/request/<op>`` goes."""
        return f"{self.bridge}/response/{op}"

    def request_op(self, topic: str) -> str | None:
        """The ``<op>`` of a request topic, or None when it is not one."""
        if topic.startswith(self._request_prefix):
            return topic[len(self._request_prefix) :]
        return None

    def owner(self, provider: str, account: str | None) -> str:
        """``<base>/<instance>`` or ``<base>/<instance>/<account>``."""
        if account is None:
            return f"{self.base}/{provider}"
        return f"{self.base}/{provider}/{slug(account)}"

    def link(self, provider: str, account: str | None = None) -> str:
        """Retained link state of an instance (or of one account's link)."""
        return f"{self.owner(provider, account)}/link"

    def for_event(self, event: AnyEvent) -> str:
        """The topic an event is published on."""
        owner = self.owner(event.provider, event.account)
        if not event.retained:  # events: one topic per kind
            return f"{owner}/{event.kind}"
        match event:
            case LinkStateEvent():
                return f"{owner}/link"
            case BalanceEvent():
                return f"{owner}/balance/{slug(event.asset)}"
            case PositionEvent():
                return f"{owner}/position/{slug(event.symbol)}"
            case AccountStatusEvent():
                return f"{owner}/status/{slug(event.topic)}"
            case MarketPriceEvent():
                return f"{self.base}/{event.provider}/market/{slug(event.market)}/price"
            case OrderBookEvent():
                return f"{self.base}/{event.provider}/market/{slug(event.market)}/orderbook"
            case _:
                return f"{owner}/{event.kind}"
