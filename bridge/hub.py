"""The hub: deduplicates events, keeps current state per topic, maps events to topics."""

from __future__ import annotations

from collections.abc import Iterable

from bridge.dedup import SeenIds
from bridge.discovery import Discovery
from bridge.events import AnyEvent, PositionEvent, SnapshotEvent
from bridge.outbox import Outbox
from bridge.topics import TopicMap

_SEGMENT = {"balance": "balance", "position": "position", "account_status": "status"}
"""Topic level under an account for each kind a snapshot can cover (see ``TopicMap``)."""


def payload_of(event: AnyEvent) -> bytes:
    """The JSON payload of an event as published."""
    return event.model_dump_json(by_alias=True).encode()


class Hub:
    """Turns events into outbox entries following the MQTT contract."""

    def __init__(
        self,
        topics: TopicMap,
        outbox: Outbox,
        seen: SeenIds,
        discovery: Discovery | None,
        event_qos: int,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.seen = seen
        self.discovery = discovery
        self.event_qos = event_qos
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
        for topic in self.outbox.state_topics():
            if topic.startswith(prefixes) and topic not in kept and self.outbox.state(topic):
                self.clear_state(topic)
        self.submit(snapshot.items)

    def _queue_event(self, event: AnyEvent) -> None:
        if not self.seen.add(f"{event.provider}\x1f{event.id}"):
            self.duplicates += 1
            return
        self.outbox.put_event(self.topics.for_event(event), payload_of(event), self.event_qos)

    def _set_state(self, event: AnyEvent) -> None:
        topic = self.topics.for_event(event)
        if isinstance(event, PositionEvent) and event.direction == "closed":
            self.clear_state(topic)
            return
        if self.discovery is not None and topic not in self._entities:
            configs = self.discovery.configs(event, topic, self._link_topic(event))
            for config_topic, config in configs:
                self.outbox.set_state(config_topic, config)
            self._entities[topic] = [config_topic for config_topic, _ in configs]
        self.outbox.set_state(topic, payload_of(event))

    def clear_state(self, topic: str) -> None:
        """Remove a retained topic and the Home Assistant entities made from it."""
        self.outbox.set_state(topic, b"")
        for config_topic in self._entities.pop(topic, []):
            self.outbox.set_state(config_topic, b"")

    def _link_topic(self, event: AnyEvent) -> str | None:
        """The link whose state tells whether this event's entities are available."""
        if event.kind == "link":
            return None
        for account in (event.account, None):
            topic = self.topics.link(event.provider, account)
            if self.outbox.state(topic):
                return topic
        return None
