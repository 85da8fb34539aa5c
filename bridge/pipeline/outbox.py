"""What waits to be published: retained state (latest per topic) and a durable, bounded event queue.

Events are numbered in arrival order and kept until the broker acknowledges them (PUBACK); only
then does their id count as delivered (``SeenIds``). The journal writes waiting events to disk
in batches: an event acknowledged before its batch is written never touches the disk. Past
``capacity`` events or ``max_bytes`` of payload the oldest are dropped, counted and logged, and
their ids forgotten, so an upstream replay delivers them.

Sending interleaves state and events one for one (state first only right after a reconnect);
events unacknowledged when a connection dies go out again first, in their original order. Each
new message wakes one waiting publish worker, not all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.pipeline.journal_events import EventRow
from bridge.pipeline.retained_state import Owner, RetainedState
from bridge.pipeline.seen_ids import SeenIds

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL = 10.0
INGEST_LIMIT = 256
"""Events waiting for a connected broker past which ingestion pauses (``room``)."""
INGEST_WAIT_MAX = 2.0
"""Seconds ingestion waits for a broker that takes nothing before the outbox keeps what comes
(longer, and upstreams would close connections whose pongs sit unread)."""


class NotDurable(Exception):
    """The outbox could not be written to disk."""


@dataclass(slots=True)
class Message:
    """One MQTT publish; events carry their sequence number and dedup key. Never changed once
    made (not ``frozen``: that makes its construction, once per event, four times slower)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int = 0
    key: str | None = None
    notice: bool = False
    """A removal notice: published just before the retained clear of its topic."""
    received: float = 0.0
    """When the event reached the bridge (Unix time; 0 when unknown, e.g. read from disk)."""


class Outbox:
    """Publishes waiting for the broker, shared by the hub (producer) and the publisher."""

    def __init__(
        self,
        capacity: int,
        *,
        max_bytes: int = 2**26,
        retained: RetainedState | None = None,
        seen: SeenIds | None = None,
        ingest_limit: int = INGEST_LIMIT,
        ingest_wait_max: float = INGEST_WAIT_MAX,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.ingest_limit = ingest_limit
        """While the broker takes events, links wait (``room``) past this many waiting."""
        self.ingest_wait_max = ingest_wait_max
        self.retained = retained if retained is not None else RetainedState()
        self.seen = seen if seen is not None else SeenIds()
        self.persistent = False
        """True while events are written to the journal (``take_unsaved`` is called)."""
        self._events: deque[Message] = deque()
        self._bytes = 0
        self._retried: list[Message] = []
        self._waiting_keys: dict[str, int] = {}
        """Keys of events waiting or in flight, so a duplicate is recognised before delivery."""
        self._unsaved: dict[int, Message] = {}
        self._gone: list[int] = []
        self._seq = 0
        self._inflight = 0
        self._workers: deque[asyncio.Future[None]] = deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._state_turn = False
        self._state_first = False
        self._then: Message | None = None
        """The retained clear that follows the removal notice just handed out."""
        self._draining = False
        self._room = asyncio.Event()
        self._room.set()
        self._stalled = False
        """The broker did not catch up within ``ingest_wait_max``: nobody waits until it does
        (``_room`` stays clear meanwhile)."""
        self.ingest_waits = 0
        """How often a link waited for ``room``."""
        self._sync_waiters: list[asyncio.Future[None]] = []
        self.flush_wanted = asyncio.Event()
        """Set when someone waits for durability (``sync``): the journal writes at once."""
        self.dropped = 0
        self.published = 0
        self.on_delivered: Callable[[Message], None] | None = None
        """Hears every acknowledged event (metrics: who delivered, how long it took)."""
        self._dropped_since_log = 0
        self._last_drop_log = 0.0

    # previous run

    def load(self, rows: list[EventRow]) -> None:
        """Events the previous run left unacknowledged, in their order."""
        for seq, key, topic, payload, qos in rows:
            self._append(Message(topic, payload, qos, retain=False, seq=seq, key=key))
            self._seq = max(self._seq, seq)
        if rows:
            log.info("%d event(s) from the previous run wait for the broker", len(rows))

    # producer side

    def set_state(
        self,
        topic: str,
        payload: bytes,
        *,
        content: bytes | None = None,
        owner: Owner | None = None,
    ) -> None:
        """Make ``payload`` the retained state of ``topic``; nothing is sent when unchanged."""
        if self.retained.set(topic, payload, content=content, owner=owner):
            self._wake()

    def clear_state(self, topic: str, notice: bytes = b"") -> bool:
        """Clear a retained topic (after a non-retained ``notice`` on it, when given); False
        when it holds nothing."""
        if self.retained.clear(topic, notice):
            self._wake()
            return True
        return False

    def state(self, topic: str) -> bytes | None:
        """The current retained payload of a topic, if any."""
        return self.retained.payload(topic)

    def waiting(self, key: str) -> bool:
        """True when an event with ``key`` waits or is in flight."""
        return key in self._waiting_keys

    def put_event(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        key: str | None = None,
        received: float = 0.0,
    ) -> None:
        """Queue a non-retained event; drops the oldest ones when the queue is full."""
        self._merge_retried()
        while self._events and (
            len(self._events) >= self.capacity or self._bytes + len(payload) > self.max_bytes
        ):
            self._drop_oldest()
        self._seq += 1
        msg = Message(topic, payload, qos, False, self._seq, key, received=received)
        self._append(msg)
        if self.persistent:
            self._unsaved[msg.seq] = msg
        self._wake()

    def republish_state(self) -> None:
        """Send every retained topic again, before events (after a reconnect)."""
        self.retained.republish()
        self._state_first = True
        self._wake()

    async def sync(self) -> None:
        """Return once every event put so far is on disk or delivered (NotDurable if not)."""
        if not self.persistent or not (self._unsaved or self.retained.has_unsaved()):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._sync_waiters.append(waiter)
        self.flush_wanted.set()
        await waiter

    async def room(self) -> None:
        """Return once the broker keeps up: at once, unless it is connected and more than
        ``ingest_limit`` events wait for it (then once half of them are sent).

        Links call this before handing on more frames, so a burst faster than the broker takes
        it waits in the upstream connection, not in memory. Nothing waits while the broker is
        unreachable, nor past ``ingest_wait_max`` for one that takes nothing: the outbox then
        keeps what comes, up to its capacity.
        """
        if not self._draining or self._stalled or len(self._events) < self.ingest_limit:
            return
        self.ingest_waits += 1
        self._room.clear()
        try:
            # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives
            # as the event is set, and a link cancelled at shutdown then waited forever
            async with asyncio.timeout(self.ingest_wait_max):
                await self._room.wait()
        except TimeoutError:
            self._stalled = True
            log.warning(
                "the MQTT broker is %d events behind and has not taken %d of them in %.1f s: "
                "links no longer wait for it, the outbox keeps what comes (up to %d events)",
                len(self._events),
                len(self._events) - self.ingest_limit // 2,
                self.ingest_wait_max,
                self.capacity,
            )

    def draining(self, connected: bool) -> None:
        """The publisher's word: the broker connection is up (it drains) or lost."""
        self._draining = connected
        self._stalled = False
        if not connected:
            self._room.set()

    def above(self, fraction: float) -> bool:
        """True when the event queue is fuller than ``fraction`` of its count or byte bound."""
        return (
            len(self._events) >= self.capacity * fraction
            or self._bytes >= self.max_bytes * fraction
        )

    # publisher side

    async def get(self) -> Message:
        """The next message to publish; waits (woken alone) while there is none."""
        while True:
            msg = self._next()
            if msg is not None:
                return msg
            worker = asyncio.get_running_loop().create_future()
            self._workers.append(worker)
            try:
                await worker
            except asyncio.CancelledError:
                if worker.done() and not worker.cancelled():
                    self._wake()  # pass the wake-up on: this worker will not take the message
                elif worker in self._workers:
                    self._workers.remove(worker)
                raise

    def done(self, msg: Message) -> None:
        """The broker acknowledged ``msg``."""
        self.published += 1
        if msg.notice:
            pass
        elif msg.retain:
            self.retained.sent(msg.topic, msg.payload)
        else:
            if msg.key is not None and self._waiting_keys.get(msg.key) == msg.seq:
                del self._waiting_keys[msg.key]
                self.seen.commit(msg.key)
            self._forget(msg.seq)
            if self.on_delivered is not None:
                self.on_delivered(msg)
        self._release()

    def retry(self, msg: Message) -> None:
        """``msg`` was not acknowledged (connection lost): send it again, in order."""
        if msg.retain or msg.notice:  # a notice goes again with its topic's clear
            self.retained.unsent(msg.topic)
        else:
            self._retried.append(msg)
            self._bytes += len(msg.payload)
        self._release()
        self._wake()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or in flight; False on timeout."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see room
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    @property
    def pending_events(self) -> int:
        """Events waiting (not yet handed to the broker)."""
        return len(self._events) + len(self._retried)

    @property
    def pending_state(self) -> int:
        """Retained topics waiting to be (re)sent."""
        return self.retained.pending

    @property
    def inflight(self) -> int:
        """Publishes handed to the broker and not yet acknowledged."""
        return self._inflight

    @property
    def pending_bytes(self) -> int:
        """Payload bytes of the waiting events."""
        return self._bytes

    # journal side

    def take_unsaved(self) -> tuple[list[EventRow], list[int]]:
        """Events to write and sequence numbers to delete since the last call."""
        rows = [(m.seq, m.key, m.topic, m.payload, m.qos) for m in self._unsaved.values()]
        gone, self._gone = self._gone, []
        self._unsaved.clear()
        return rows, gone

    def has_unsaved_events(self) -> bool:
        """True when events wait to be written, or written ones to be deleted."""
        return bool(self._unsaved or self._gone)

    def take_sync_waiters(self) -> list[asyncio.Future[None]]:
        """Who waits for the write that is about to start."""
        waiters, self._sync_waiters = self._sync_waiters, []
        self.flush_wanted.clear()
        return waiters

    # internals

    def _next(self) -> Message | None:
        self._merge_retried()
        retained = self.retained
        if self._then is not None:
            msg, self._then = self._then, None
        elif retained.has_dirty() and (self._state_first or self._state_turn or not self._events):
            self._state_turn = False
            topic, payload, notice = retained.take()
            msg = Message(topic, payload, 1, retain=True)
            if notice and not payload:  # a JSON-only subscriber learns of the removal first
                msg, self._then = Message(topic, notice, 1, retain=False, notice=True), msg
        elif self._events:
            self._state_first = False
            self._state_turn = True
            msg = self._events.popleft()
            self._bytes -= len(msg.payload)
            if len(self._events) <= self.ingest_limit // 2 and not self._room.is_set():
                self._room.set()
                self._stalled = False
        else:
            self._state_first = False
            if self._inflight == 0:
                self._idle.set()  # woken for nothing (a reconnect with no state to send)
            return None
        self._inflight += 1
        self._idle.clear()
        if self._workers and (self._events or retained.has_dirty() or self._then):
            self._wake()  # more to send: one more worker, not all of them
        return msg

    def _append(self, msg: Message) -> None:
        self._events.append(msg)
        self._bytes += len(msg.payload)
        if msg.key is not None:
            self._waiting_keys[msg.key] = msg.seq

    def _merge_retried(self) -> None:
        if self._retried:
            self._retried.sort(key=lambda m: m.seq)
            self._events.extendleft(reversed(self._retried))
            self._retried = []

    def _drop_oldest(self) -> None:
        msg = self._events.popleft()
        self._bytes -= len(msg.payload)
        if msg.key is not None and self._waiting_keys.get(msg.key) == msg.seq:
            del self._waiting_keys[msg.key]  # forgotten: a replay is delivered
        self._forget(msg.seq)
        self._count_drop()

    def _forget(self, seq: int) -> None:
        if self._unsaved.pop(seq, None) is None and self.persistent:
            self._gone.append(seq)

    def _wake(self) -> None:
        self._idle.clear()
        workers = self._workers
        while workers:
            worker = workers.popleft()
            if not worker.done():
                worker.set_result(None)
                return

    def _release(self) -> None:
        self._inflight -= 1
        if (
            self._inflight == 0
            and self._then is None
            and not self.retained.has_dirty()
            and not self.pending_events
        ):
            self._idle.set()

    def _count_drop(self) -> None:
        self.dropped += 1
        self._dropped_since_log += 1
        now = time.monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= DROP_LOG_INTERVAL:
            log.error(
                "outbox full (%d events, %d bytes at most): dropped %d oldest event(s), "
                "%d in total; their ids are forgotten, so an upstream replay delivers them",
                self.capacity,
                self.max_bytes,
                self._dropped_since_log,
                self.dropped,
            )
            self._dropped_since_log = 0
            self._last_drop_log = now
