"""``<base>/bridge/health``: is the daemon working, and if not, what is wrong.

``Health.payload()`` is the one source of the answer: the retained health topic (every
``[health] interval`` and within ``DEBOUNCE`` of a change of any link state), the ``health``
request, ``/metrics`` and ``fin2mqtt status`` all read it. Its JSON Schema is
``HealthPayload.model_json_schema(by_alias=True)``; ``schema`` is the payload's version.

``problems()`` decides what counts as unhealthy, for ``fin2mqtt status`` (and anyone reading the
topic): the bridge offline, no health report for three intervals, a link refused its
credentials, a link not connected (or on its HTTP fallback) for longer than a grace period,
events dropped from the outbox recently, the state file not writable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from bridge import __version__
from bridge.model.events import LinkStateName

if TYPE_CHECKING:
    from bridge.pipeline.outbox import Message
    from bridge.runtime.daemon import Daemon

log = logging.getLogger("fin2mqtt.health")

SCHEMA: Literal[1] = 1
"""Version of the health payload; raised when a field changes meaning or goes away."""
TICK = 0.25
"""Seconds between event-loop lag samples (and checks for link changes)."""
DEBOUNCE = 1.0
"""A burst of link changes publishes one health report, at most this late."""
DROPPING_WINDOW = 60.0
"""The outbox counts as dropping for this long after its last drop (or one interval if longer)."""
DEFAULT_GRACE = 60.0
"""Seconds a link may be down (reconnecting, on its fallback) before it counts as unhealthy."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ConnectionHealth(_Model):
    """One connection (an account's, or the instance's own when ``account`` is null)."""

    account: str | None
    state: LinkStateName | None = Field(description="null before the link reported anything")
    error: str | None = None
    since: datetime | None = Field(default=None, description="when the link entered its state")
    last_event: datetime | None = None
    events_in: int = Field(description="events the connection delivered in this run")
    reconnects: int = Field(description="times the link came back after having been up")
    restarts: int = Field(description="restarts after the link ended or crashed")
    auth_failures: int = Field(description="times the upstream refused the credentials")


class InstanceHealth(_Model):
    """One provider instance and the connections this daemon runs for it."""

    type: str
    events_in: int
    events_out: int = Field(
        description="its events (not retained state) the broker acknowledged in this run"
    )
    parse_errors: int
    connections: list[ConnectionHealth]


class BrokerHealth(_Model):
    """The MQTT broker connection."""

    connected: bool
    connects: int


class OutboxHealth(_Model):
    """What waits for the broker."""

    events: int
    bytes: int
    inflight: int
    state_topics: int
    published: int
    dropped: int
    dropping: bool = Field(description="events were dropped (outbox full) in the last minute")


class StateFileHealth(_Model):
    """The state file (outbox, delivered ids, retained topics on disk)."""

    persistent: bool = Field(description="false: the state directory is unusable, memory only")
    failing: str | None = Field(description="why the last write failed; null while writes work")


class DedupHealth(_Model):
    """Event ids remembered to drop duplicates."""

    size: int
    duplicates: int


class HealthPayload(_Model):
    """The body of ``<base>/bridge/health`` (and of the ``health`` request's answer)."""

    schema_version: Literal[1] = Field(default=SCHEMA, alias="schema")
    node_id: str | None
    shard: str | None
    version: str
    time: datetime
    interval_s: float
    uptime_s: float
    broker: BrokerHealth
    outbox: OutboxHealth
    dedup: DedupHealth
    state_file: StateFileHealth
    loop_lag_s: float = Field(description="largest event-loop delay since the last report")
    memory_rss_bytes: int
    providers: dict[str, InstanceHealth]


def health_schema() -> dict[str, Any]:
    """The published JSON Schema of the health payload."""
    return HealthPayload.model_json_schema(by_alias=True)


def rss_bytes() -> int:
    """Resident memory of this process (peak RSS where ``/proc`` is missing)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Health:
    """Collects the daemon's health and publishes it, retained, on ``bridge/health``."""

    def __init__(self, daemon: Daemon, interval: float) -> None:
        self.daemon = daemon
        self.interval = interval
        self.events_out: dict[str, int] = {}
        self.loop_lag = 0.0
        self.publishes = 0
        self._lag_window = 0.0
        self._last_dropped = 0
        self._last_drop_at: float | None = None
        self._observers: list[Callable[[str, Message], None]] = []
        self._started = time.monotonic()

    # --- what the daemon hands around ---------------------------------------------------------

    def delivered(self, msg: Message) -> None:
        """An event was acknowledged by the broker (``Outbox.on_delivered``)."""
        if msg.key is None:
            return
        instance = msg.key.split("\x1f", 1)[0]
        self.events_out[instance] = self.events_out.get(instance, 0) + 1
        for observe in self._observers:
            observe(instance, msg)

    def observe_deliveries(self, observer: Callable[[str, Message], None]) -> None:
        """Also tell ``observer(instance, message)`` of every acknowledged event (metrics)."""
        self._observers.append(observer)

    def request(self, _request: JsonValue) -> JsonValue:
        """The answer of a ``bridge/request/health`` request: the current payload."""
        return self.payload_json()

    # --- the payload --------------------------------------------------------------------------

    def payload(self) -> HealthPayload:
        """The daemon's health right now."""
        d = self.daemon
        outbox, now = d.outbox, time.monotonic()
        types = {i.name: i.provider_type for i in d.config.instances}
        providers: dict[str, InstanceHealth] = {}
        for runner in d.runners:
            ctx, name = runner.ctx, runner.provider.name
            connections = []
            for conn in runner.connections:
                account = conn.spec.account
                link = ctx.link_state(account)
                traffic = ctx.traffic.get(account)
                connections.append(
                    ConnectionHealth(
                        account=account,
                        state=link.state if link else None,
                        error=link.error if link else None,
                        since=link.since if link else None,
                        last_event=traffic.last if traffic else None,
                        events_in=traffic.events if traffic else 0,
                        reconnects=conn.status.reconnects,
                        restarts=conn.restarts,
                        auth_failures=conn.status.auth_failures,
                    )
                )
            providers[name] = InstanceHealth(
                type=types.get(name, ""),
                events_in=sum(t.events for t in ctx.traffic.values()),
                events_out=self.events_out.get(name, 0),
                parse_errors=ctx.parse_errors,
                connections=connections,
            )
        self._note_drops(now)
        dropping_for = max(DROPPING_WINDOW, self.interval)
        settings = d.config.settings
        return HealthPayload(
            node_id=settings.node_id,
            shard=settings.shard,
            version=__version__,
            time=datetime.now(UTC),
            interval_s=self.interval,
            uptime_s=round(now - self._started, 1),
            broker=BrokerHealth(
                connected=d.publisher.connected.is_set(), connects=d.publisher.connects
            ),
            outbox=OutboxHealth(
                events=outbox.pending_events,
                bytes=outbox.pending_bytes,
                inflight=outbox.inflight,
                state_topics=outbox.pending_state,
                published=outbox.published,
                dropped=outbox.dropped,
                dropping=self._last_drop_at is not None and now - self._last_drop_at < dropping_for,
            ),
            dedup=DedupHealth(size=len(d.seen), duplicates=d.hub.duplicates),
            state_file=StateFileHealth(persistent=outbox.persistent, failing=d.persister.failing),
            loop_lag_s=round(max(self.loop_lag, self._lag_window), 4),
            memory_rss_bytes=rss_bytes(),
            providers=providers,
        )

    def payload_json(self) -> dict[str, Any]:
        """The payload as JSON-ready data (``schema`` by its published name)."""
        data: dict[str, Any] = self.payload().model_dump(mode="json", by_alias=True)
        return data

    def _note_drops(self, now: float) -> None:
        dropped = self.daemon.outbox.dropped
        if dropped != self._last_dropped:
            self._last_dropped, self._last_drop_at = dropped, now
        elif self._last_drop_at is not None and now - self._last_drop_at >= DROPPING_WINDOW:
            self._last_drop_at = None
            log.info(
                "outbox no longer dropping events (none for %g s; %d dropped in this run)",
                DROPPING_WINDOW,
                dropped,
            )

    # --- publishing ---------------------------------------------------------------------------

    def _links(self) -> tuple[tuple[str, str | None, str | None], ...]:
        links = []
        for runner in self.daemon.runners:
            for conn in runner.connections:
                state = runner.ctx.link_state(conn.spec.account)
                links.append(
                    (runner.provider.name, conn.spec.account, state.state if state else None)
                )
        return tuple(links)

    def publish(self) -> None:
        """Put the current payload on the retained health topic."""
        body = json.dumps(self.payload_json(), separators=(",", ":")).encode()
        self.daemon.outbox.set_state(self.daemon.topics.bridge_health, body)
        self.publishes += 1
        self._lag_window = 0.0

    async def run(self) -> None:
        """Sample the loop lag; publish on the interval and soon after a link change."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        self.publish()
        published_links = self._links()
        due: float | None = None
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            now = loop.time()
            self.loop_lag = max(0.0, now - before - TICK)
            self._lag_window = max(self._lag_window, self.loop_lag)
            self._note_drops(time.monotonic())
            links = self._links()
            if links != published_links and due is None:
                due = max(now, last + DEBOUNCE)
            if now - last >= self.interval or (due is not None and now >= due):
                self.publish()
                last, due, published_links = now, None, links


# --- judging a payload (fin2mqtt status) -----------------------------------------------------


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def problems(
    payload: HealthPayload, *, online: bool | None, now: datetime, grace: float = DEFAULT_GRACE
) -> list[str]:
    """What is wrong with one daemon, one line each (empty: healthy).

    ``online`` is its ``bridge/state`` (None: unknown).
    """
    found: list[str] = []
    if online is False:
        found.append("bridge offline")
        return found
    age = (now - payload.time).total_seconds()
    if age > 3 * payload.interval_s + 5:
        found.append(f"no health report for {_ago(age)} (expected every {payload.interval_s:g} s)")
    if not payload.broker.connected:
        found.append("not connected to the MQTT broker")
    if payload.outbox.dropping:
        found.append(f"outbox full: events dropped ({payload.outbox.dropped} in this run)")
    if payload.state_file.failing is not None:
        found.append(f"state file not writable: {payload.state_file.failing}")
    for name, instance in payload.providers.items():
        for conn in instance.connections:
            where = f"{name}/{conn.account}" if conn.account else name
            why = f": {conn.error}" if conn.error else ""
            if conn.state == "auth_failed":
                found.append(f"{where}: credentials refused (auth_failed){why}")
            elif conn.state != "connected":
                since = conn.since or (payload.time - timedelta(seconds=payload.uptime_s))
                down = (now - since).total_seconds()
                if down > grace:
                    state = conn.state or "not started"
                    found.append(f"{where}: {state} for {_ago(down)}{why}")
    return found
