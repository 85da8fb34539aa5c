"""What waits to be published: retained state (latest per topic) and a bounded event queue.

Retained state is coalesced: while a topic waits, a newer payload replaces the older one, and after
every reconnect all of it is sent again. Events are kept in order until the broker acknowledges
them; past ``capacity`` the oldest are dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL = 10.0


@dataclass(slots=True, frozen=True)
class Message:
    """One MQTT publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """Publishes waiting for the broker, shared by the hub (producer) and the publisher."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._state: dict[str, bytes] = {}
        self._dirty: dict[str, None] = {}
        self._events: deque[Message] = deque()
        self._inflight = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.dropped = 0
        self.published = 0
        self._dropped_since_log = 0
        self._last_drop_log = 0.0

    # producer side

    def set_state(self, topic: str, payload: bytes) -> None:
        """Make ``payload`` the retained state of ``topic`` (an empty payload clears it)."""
        self._state[topic] = payload
        self._dirty[topic] = None
        self._wake()

    def state(self, topic: str) -> bytes | None:
        """The current retained payload of a topic, if any."""
        return self._state.get(topic)

    def state_topics(self) -> list[str]:
        """Every topic with retained state."""
        return list(self._state)

    def put_event(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue a non-retained event; drops the oldest one when the queue is full."""
        if len(self._events) >= self.capacity:
            self._events.popleft()
            self._count_drop()
        self._events.append(Message(topic, payload, qos, retain=False))
        self._wake()

    def republish_state(self) -> None:
        """Mark every retained topic for sending again (after a reconnect)."""
        for topic in self._state:
            self._dirty[topic] = None
        self._wake()

    # publisher side

    async def get(self) -> Message:
        """The next message to publish: retained state first, then events in order."""
        while not (self._dirty or self._events):
            self._ready.clear()
            await self._ready.wait()
        self._inflight += 1
        self._idle.clear()
        if self._dirty:
            topic = next(iter(self._dirty))
            del self._dirty[topic]
            return Message(topic, self._state[topic], 1, retain=True)
        return self._events.popleft()

    def done(self, msg: Message) -> None:
        """The broker acknowledged ``msg``."""
        self.published += 1
        if msg.retain and msg.payload == b"" and self._state.get(msg.topic) == b"":
            del self._state[msg.topic]  # the clear is delivered; nothing left to re-send
        self._release()

    def retry(self, msg: Message) -> None:
        """``msg`` was not acknowledged (connection lost): send it again first."""
        if msg.retain:
            if msg.topic in self._state:
                self._dirty[msg.topic] = None
        else:
            self._events.appendleft(msg)
        self._release()
        self._wake()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def pending_events(self) -> int:
        """Events waiting (not yet handed to the broker)."""
        return len(self._events)

    @property
    def pending_state(self) -> int:
        """Retained topics waiting to be (re)sent."""
        return len(self._dirty)

    @property
    def inflight(self) -> int:
        """Publishes handed to the broker and not yet acknowledged."""
        return self._inflight

    # internals

    def _wake(self) -> None:
        self._idle.clear()
        self._ready.set()

    def _release(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and not self._dirty and not self._events:
            self._idle.set()

    def _count_drop(self) -> None:
        self.dropped += 1
        self._dropped_since_log += 1
        now = time.monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.warning(
                "outbox full (%d events): dropped %d oldest event(s), %d in total",
                self.capacity,
                self._dropped_since_log,
                self.dropped,
            )
            self._dropped_since_log = 0
            self._last_drop_log = now
