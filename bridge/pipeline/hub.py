"""The hub: deduplicates events, keeps current state per topic, maps events to topics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

from bridge.model.events import AnyEvent, LinkStateEvent, PositionEvent, SnapshotEvent
from bridge.mqtt.discovery import Discovery
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Outbox

_SEGMENT = {"balance": "balance", "position": "position", "account_status": "status"}
"""Topic level under an account for each kind a snapshot can cover (see ``TopicMap``)."""

BOOKKEEPING = frozenset({"id", "received_at", "source_time"})
"""Fields that do not make a state change: a repetition with new ones is not republished."""

UP = ("connected", "fallback")


def payload_of(event: AnyEvent) -> bytes:
    """The JSON payload of an event as published."""
    return event.model_dump_json(by_alias=True).encode()


def content_of(event: AnyEvent) -> bytes:
    """A digest of what a state event says (its payload without bookkeeping)."""
    data = event.model_dump_json(exclude=BOOKKEEPING).encode()  # type: ignore[arg-type]
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
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.retained = outbox.retained
        self.seen = outbox.seen
        self.discovery = discovery
        self.event_qos = event_qos
        self.cleanup_delay = cleanup_delay
        self.duplicates = 0
        self._entities: dict[str, list[str]] = {}
        """State topic → the discovery config topics published for it."""

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
            if topic not in kept:
                self.clear_state(topic)
        self.submit(snapshot.items)

    def _queue_event(self, event: AnyEvent) -> None:
        key = f"{event.provider}\x1f{event.id}"
        if key in self.seen or self.outbox.waiting(key):
            self.duplicates += 1
            return
        self.outbox.put_event(self.topics.for_event(event), payload_of(event), self.event_qos, key)

    def _set_state(self, event: AnyEvent) -> None:
        topic = self.topics.for_event(event)
        if isinstance(event, PositionEvent) and event.direction == "closed":
            self.clear_state(topic)
            return
        if isinstance(event, LinkStateEvent):
            self._link_state(event)
        content = content_of(event)
        if self.retained.unchanged(topic, content):
            return
        owner = (event.provider, event.account)
        if self.discovery is not None and topic not in self._entities:
            configs = self.discovery.configs(event, topic, self._link_topic(event))
            for config_topic, config in configs:
                self.outbox.set_state(config_topic, config, owner=owner)
            self._entities[topic] = [config_topic for config_topic, _ in configs]
        self.outbox.set_state(topic, payload_of(event), content=content, owner=owner)

    def _link_state(self, event: LinkStateEvent) -> None:
        self.retained.link_seen(event.provider, event.account)
        if event.state in UP:
            self.retained.link_up(
                event.provider, event.account, time.monotonic() + self.cleanup_delay
            )

    def clear_state(self, topic: str) -> None:
        """Remove a retained topic and the Home Assistant entities made from it."""
        self.outbox.clear_state(topic)
        for config_topic in self._entities.pop(topic, []):
            self.outbox.clear_state(config_topic)

    def clear_stale(self, now: float) -> int:
        """Clear what the previous run owned and its providers have not re-established."""
        topics = self.retained.due_stale(now)
        for topic in topics:
            self.clear_state(topic)
        return len(topics)

    def clear_instances_gone(self, configured: set[str]) -> int:
        """Clear what the previous run owned for provider instances no longer configured."""
        topics = self.retained.gone_instances(configured)
        for topic in topics:
            self.clear_state(topic)
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
