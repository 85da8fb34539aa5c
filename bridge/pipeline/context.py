"""The context one provider instance's link works with: deliver frames, emit events, link state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.links.webhook_server import WebhookServer
from bridge.model.events import (
    AccountStatusEvent,
    AnyEvent,
    LinkStateEvent,
    LinkStateName,
    RawEvent,
    SnapshotEvent,
    stable_id,
)
from bridge.model.redaction import SECRETS
from bridge.pipeline.hub import Hub
from bridge.plugin.helpers import ParseContext
from bridge.plugin.parsing import frame_events, raw_name, unparsed_event
from bridge.plugin.provider import Provider


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def recall_statuses(
    statuses: dict[tuple[str | None, str], AccountStatusEvent], payloads: Iterable[bytes]
) -> None:
    """Account statuses published before a restart, from their kept payloads."""
    for payload in payloads:
        try:
            event = AccountStatusEvent.model_validate_json(payload)
        except ValueError:
            continue  # another kind of state (a link, a balance)
        statuses[(event.account, event.topic)] = event


def remember_statuses(
    statuses: dict[tuple[str | None, str], AccountStatusEvent], events: Iterable[AnyEvent]
) -> None:
    """Keep the latest account status per (account, topic), also those inside snapshots."""
    for event in events:
        if isinstance(event, AccountStatusEvent):
            statuses[(event.account, event.topic)] = event
        elif isinstance(event, SnapshotEvent):
            remember_statuses(statuses, event.items)


@dataclass(slots=True)
class Traffic:
    """What one connection (or ``emit``) delivered: events in, and when the last came."""

    events: int = 0
    last: datetime | None = None


class InstanceContext:
    """``bridge.api.ProviderContext`` for one provider instance."""

    def __init__(
        self,
        provider: Provider[Any],
        hub: Hub,
        webhooks: WebhookServer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.provider = provider
        self.hub = hub
        self._webhooks = webhooks
        self._clock = clock
        self.logger = logging.getLogger(f"fin2mqtt.provider.{provider.name}")
        self.parse_errors = 0
        self.traffic: dict[str | None, Traffic] = {}
        """Events received per account (None: the instance's own connection or ``emit``)."""
        self._links: dict[str | None, LinkStateEvent] = {}
        self.statuses: dict[tuple[str | None, str], AccountStatusEvent] = {}
        """The last account status per (account, topic), what ``ParseContext.status`` reads."""
        self._trouble: dict[str | None, str] = {}
        self._failures_logged: set[tuple[str, str]] = set()

    @property
    def instance(self) -> str:
        """The instance name."""
        return self.provider.name

    @property
    def webhooks(self) -> WebhookServer:
        """The daemon's shared webhook server."""
        if self._webhooks is None:
            raise RuntimeError("this context has no webhook server")
        return self._webhooks

    def now(self) -> datetime:
        """The current time (UTC)."""
        return self._clock()

    def deliver(self, frame: Any, account: str | None = None) -> None:
        """Parse one frame of ``account``'s connection and publish its events.

        An unparsable frame becomes a RawEvent.
        """
        ctx = ParseContext(self.instance, account, self._clock(), self.statuses)
        try:
            events = frame_events(self.provider, frame, ctx)
        except Exception as exc:  # noqa: BLE001 - a bad frame must never stop the link
            events = [self._unparsed(frame, ctx, exc)]
        self._publish(events, account, ctx.received_at)

    def emit(self, events: Iterable[AnyEvent], account: str | None = None) -> None:
        """Publish events built outside ``parse`` (counted as received by ``account``'s link)."""
        self._publish(list(events), account, self._clock())

    def _publish(self, events: list[AnyEvent], account: str | None, now: datetime) -> None:
        traffic = self.traffic.get(account)
        if traffic is None:
            traffic = self.traffic[account] = Traffic()
        traffic.events += len(events)
        traffic.last = now
        remember_statuses(self.statuses, events)
        self.hub.submit(events)

    def set_link_state(
        self, state: LinkStateName, *, error: str | None = None, account: str | None = None
    ) -> None:
        """Publish a link state change (repeats of the same state and error are ignored)."""
        if error is not None:
            error = SECRETS.scrub(error)
        previous = self._links.get(account)
        if previous is not None and previous.state == state and previous.error == error:
            return
        now = self._clock()
        since = previous.since if previous is not None and previous.state == state else now
        event = LinkStateEvent(
            provider=self.instance,
            account=account,
            id=stable_id(self.instance, account, "link", state, since.isoformat()),
            received_at=now,
            source_time=now,
            state=state,
            since=since,
            error=error,
        )
        self._links[account] = event
        self._log_transition(previous, event)
        self.hub.submit([event])

    def own_links(self, accounts: set[str | None]) -> None:
        """The connections now running: clear every other link topic of this instance.

        Also those written by an earlier run or version (e.g. an instance-level link of a
        provider whose links are per account), so no link topic is left behind, untrue.
        """
        owned = {self.hub.topics.link(self.instance, account) for account in accounts}
        for account in [a for a in self._links if a not in accounts]:
            del self._links[account]
            self._trouble.pop(account, None)
        prefix = f"{self.hub.topics.owner(self.instance, None)}/"
        # this run's link topics and those the previous run left (the retained-state store)
        for topic in self.hub.retained.topics((prefix,)):
            levels = topic.removeprefix(prefix).split("/")
            if len(levels) <= 2 and levels[-1] == "link" and topic not in owned:
                self.hub.clear_state(topic)

    def link_state(self, account: str | None = None) -> LinkStateEvent | None:
        """The last link state reported for ``account``."""
        return self._links.get(account)

    def _log_transition(self, previous: LinkStateEvent | None, event: LinkStateEvent) -> None:
        """Log a lost link, a change in its trouble, and its return; not every retry."""
        where = f" ({event.account})" if event.account else ""
        if event.state == "connected":
            if self._trouble.pop(event.account, None) is not None:
                self.logger.info("link%s connected again", where)
            elif previous is None or previous.state != "connected":
                self.logger.info("link%s connected", where)
        elif event.state in ("disconnected", "auth_failed", "fallback"):
            trouble = f"{event.state}: {event.error or 'no reason given'}"
            if self._trouble.get(event.account) != trouble:
                self._trouble[event.account] = trouble
                self.logger.warning("link%s %s (retrying)", where, trouble)
        else:
            self.logger.debug("link%s %s", where, event.state)

    def _unparsed(self, frame: Any, ctx: ParseContext, exc: Exception) -> RawEvent:
        """Counted, and logged once per kind of failure (exception type and frame name)."""
        self.parse_errors += 1
        kind = (type(exc).__name__, raw_name(frame))
        if kind not in self._failures_logged:
            self._failures_logged.add(kind)
            self.logger.warning(
                "could not parse a %s frame (%s: %s); publishing it raw "
                "(failures of this kind are counted in bridge/stats, not logged again)",
                kind[1],
                kind[0],
                SECRETS.scrub(str(exc)),
            )
        return unparsed_event(self.provider, frame, ctx, exc)
