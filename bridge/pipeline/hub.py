"""The hub: deduplicates events, keeps current state per topic, maps events to topics."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from bridge.model.events import (
    AnyEvent,
    LinkStateEvent,
    PositionEvent,
    RawEvent,
    SnapshotEvent,
)
from bridge.mqtt.discovery import Discovery
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Outbox

_SEGMENT = {"balance": "balance", "position": "position", "account_status": "status"}
"""Topic level under an account for each kind a snapshot can cover (see ``TopicMap``)."""

EVENT_KINDS = ("transaction", "order", "trade", "notification")
"""Kinds of events Home Assistant sees as ``event`` entities (when the provider declares them)."""

BOOKKEEPING = frozenset({"id", "received_at", "source_time"})
"""Fields that do not make a state change: a repetition with new ones is not republished."""

UP = ("connected", "fallback")

MAX_PAYLOAD = 65_536
"""Largest payload republished (bytes); a larger event is replaced by a raw summary."""

log = logging.getLogger(__name__)


IDENTITY = ("kind", "provider", "account", "asset", "symbol", "topic", "market")
"""Fields of a retained payload that say what it was about, repeated in its removal notice."""


def removal_notice(previous: bytes | None, reason: str) -> bytes:
    """The JSON published (not retained) on a state topic just before its retained clear.

    A subscriber that parses every payload as JSON (Node-RED's ``mqtt in``) never sees the empty
    clear; this tells it the state is gone and why (``closed``, ``gone``, ``stale``, ``removed``).
    """
    notice: dict[str, object] = {"schema": 1, "state": "removed", "reason": reason}
    try:
        before = json.loads(previous) if previous else {}
    except ValueError:
        before = {}
    if isinstance(before, dict):
        notice.update({k: before[k] for k in IDENTITY if k in before})
    notice["removed_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(notice, separators=(",", ":")).encode()


def payload_of(event: AnyEvent) -> bytes:
    """The JSON payload of an event as published.

    ``model_dump_json`` itself, less its Python wrapper (a dozen keyword arguments passed on)
    and the ``encode`` of its ``str``: the model's serializer writes the bytes (41k -> 34k
    instructions per trade).
    """
    return event.__pydantic_serializer__.to_json(event, by_alias=True)


def content_of(event: AnyEvent) -> bytes:
    """A digest of what a state event says (its payload without bookkeeping)."""
    data = event.__pydantic_serializer__.to_json(event, exclude=BOOKKEEPING)  # type: ignore[arg-type]
    return hashlib.blake2b(data, digest_size=16).digest()


class Hub:
    """Turns events into outbox entries following the MQTT contract."""

    def __init__(
        self,
        topics: TopicMap,
        outbox: Outbox,
        discovery: Discovery | None,
        event_qos: int,
        cleanup_delay: float = 30.0,
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.retained = outbox.retained
        self.seen = outbox.seen
        self.discovery = discovery
        self.event_qos = event_qos
        self.cleanup_delay = cleanup_delay
        self.duplicates = 0
        self.max_payload = max_payload
        self.oversized = 0
        """Events larger than ``max_payload``, published as a summary instead."""
        self._entities: dict[str, list[str]] = {}
        """State topic → the discovery config topics published for it."""
        self._event_entities: set[tuple[str, str | None, str]] = set()
        """(provider, account, kind) whose Home Assistant event entities are published."""

    def submit(self, events: Iterable[AnyEvent]) -> None:
        """Route each event: retained state is replaced, events are deduplicated and queued."""
        for event in events:
            if isinstance(event, SnapshotEvent):
                self._apply_snapshot(event)
            elif event.retained:
                self._set_state(event)
            else:
                self._queue_event(event)

    def _apply_snapshot(self, snapshot: SnapshotEvent) -> None:
        owner = self.topics.owner(snapshot.provider, snapshot.account)
        kept = {self.topics.for_event(item) for item in snapshot.items}
        prefixes = tuple(f"{owner}/{_SEGMENT[kind]}/" for kind in snapshot.covers)
        for topic in self.retained.topics(prefixes):
            if topic not in kept and self._in_scope(topic, snapshot.scope):
                self.clear_state(topic, reason="gone")
        self.submit(snapshot.items)

    def _in_scope(self, topic: str, scope: dict[str, str]) -> bool:
        """True when the retained payload's ``details`` carry every value of ``scope``."""
        if not scope:
            return True
        details = self._retained_json(topic).get("details")
        return isinstance(details, dict) and all(details.get(k) == v for k, v in scope.items())

    def _retained_json(self, topic: str) -> dict[str, object]:
        payload = self.outbox.state(topic)
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _queue_event(self, event: AnyEvent) -> None:
        key = f"{event.provider}\x1f{event.id}"
        if key in self.seen or self.outbox.waiting(key):
            self.duplicates += 1
            return
        payload = payload_of(event)
        if len(payload) > self.max_payload:
            self._oversized(event, len(payload))
            return
        self._event_entities_of(event.provider, event.account, event.kind)
        topic = self.topics.for_event(event)
        received = event.received_at.timestamp()
        self.outbox.put_event(topic, payload, self.event_qos, key, received)

    def _oversized(self, event: AnyEvent, size: int) -> None:
        """A summary (kind, name, size) on the raw topic instead of an over-large event."""
        self.oversized += 1
        if self.oversized == 1 or self.oversized % 1000 == 0:
            log.warning(
                "%s: a %s event of %d bytes exceeds the %d-byte limit; publishing a summary "
                "(%d so far, counted in bridge/stats as oversized_events)",
                event.provider,
                event.kind,
                size,
                self.max_payload,
                self.oversized,
            )
        name = event.name if isinstance(event, RawEvent) else event.kind
        summary = RawEvent(
            provider=event.provider,
            account=event.account,
            id=f"oversized-{event.id}",
            source_time=event.source_time,
            received_at=event.received_at,
            name=name,
            data={"kind": event.kind, "size": size, "limit": self.max_payload},
            error=f"{size} bytes, larger than the {self.max_payload}-byte limit: not republished",
        )
        self._queue_event(summary)

    def _merge_partial(self, event: AnyEvent, topic: str) -> AnyEvent:
        """A partial update completed with the retained state's fields it does not carry."""
        previous = self._retained_json(topic)
        if not previous:
            return event
        carried = event.model_dump(exclude_none=True, by_alias=True)
        merged = {k: v for k, v in previous.items() if k not in carried and k != "details"}
        details = previous.get("details")
        if isinstance(details, dict):
            carried["details"] = {**details, **carried.get("details", {})}
        try:
            return type(event).model_validate({**merged, **carried})
        except ValidationError:
            return event  # a retained payload of an older schema: the update alone

    def _set_state(self, event: AnyEvent) -> None:
        topic = self.topics.for_event(event)
        if isinstance(event, PositionEvent) and event.direction == "closed":
            self.clear_state(topic, reason="closed")
            return
        if getattr(event, "partial", False):
            event = self._merge_partial(event, topic)
        if isinstance(event, LinkStateEvent):
            self._link_state(event)
        content = content_of(event)
        if self.retained.unchanged(topic, content):
            return
        payload = payload_of(event)
        if len(payload) > self.max_payload:
            self._oversized(event, len(payload))
            return
        owner = (event.provider, event.account)
        if self.discovery is not None and topic not in self._entities:
            configs = self.discovery.configs(event, topic, self._link_topic(event))
            for config in configs:
                self.outbox.set_state(config.topic, config.encode(), owner=owner)
            self._entities[topic] = [config.topic for config in configs]
            if event.account is not None:  # an account's automation triggers, before its events
                for kind in EVENT_KINDS:
                    self._event_entities_of(event.provider, event.account, kind)
        self.outbox.set_state(topic, payload, content=content, owner=owner)

    def _event_entities_of(self, provider: str, account: str | None, kind: str) -> None:
        """Publish the ``event`` entities of one account's (or no account's) ``kind`` once."""
        key = (provider, account, kind)
        if self.discovery is None or key in self._event_entities:
            return
        self._event_entities.add(key)
        for config in self.discovery.event_configs(provider, account, kind):
            self.outbox.set_state(config.topic, config.encode(), owner=(provider, account))

    def _link_state(self, event: LinkStateEvent) -> None:
        self.retained.link_seen(event.provider, event.account)
        if event.state in UP:
            self.retained.link_up(
                event.provider, event.account, time.monotonic() + self.cleanup_delay
            )

    def clear_state(self, topic: str, reason: str = "removed") -> None:
        """Remove a retained topic and the Home Assistant entities made from it.

        The entities go first (Home Assistant never renders the notice); a state topic gets a
        JSON removal notice (not retained) just before its clear; a discovery config does not.
        """
        for config_topic in self._entities.pop(topic, []):
            self.outbox.clear_state(config_topic)
        notice = b""
        if topic.startswith(f"{self.topics.base}/"):
            notice = removal_notice(self.retained.payload(topic), reason)
        self.outbox.clear_state(topic, notice)

    def clear_stale(self, now: float) -> int:
        """Clear what the previous run owned and its providers have not re-established."""
        topics = self.retained.due_stale(now)
        for topic in topics:
            self.clear_state(topic, reason="stale")
        return len(topics)

    def clear_instances_gone(self, configured: set[str]) -> int:
        """Clear what the previous run owned for provider instances no longer configured."""
        topics = self.retained.gone_instances(configured)
        for topic in topics:
            self.clear_state(topic, reason="instance_removed")
        return len(topics)

    def _link_topic(self, event: AnyEvent) -> str | None:
        """The link whose state tells whether this event's entities are available."""
        if event.kind == "link":
            return None
        for account in (event.account, None):
            topic = self.topics.link(event.provider, account)
            if self.outbox.state(topic):
                return topic
        return None
