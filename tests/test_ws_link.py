"""The WebSocket link against a real in-process server, with millisecond backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from bridge.api import (
    AnyEvent,
    AuthFailure,
    Connection,
    DoNotReconnect,
    LinkStateEvent,
    ParseContext,
    Provider,
    ProviderContext,
    ProviderSettings,
    RawEvent,
    TransactionEvent,
)
from bridge.links.link_state import LinkStatus
from bridge.links.reconnect import RetryPolicy
from bridge.links.websocket import Endpoint, WebSocketLink, WebSocketOptions
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.context import InstanceContext
from bridge.pipeline.hub import Hub
from bridge.pipeline.outbox import Outbox
from bridge.plugin.connections import ConnectionSpec
from bridge.runtime.supervisor import ConnectionContext
from bridge.testing.simulator import WebSocketSimulator

FAST = RetryPolicy(
    backoff_min=0.01,
    backoff_max=0.08,
    healthy_after=0.5,
    auth_retry=0.25,
    config_retry=1.0,
    hold_off=0.6,
)


class EchoSettings(ProviderSettings):
    token: str = "good"


class EchoProvider(Provider[EchoSettings]):
    """Authenticates with a request, pings on an interval, turns ``event`` frames into events."""

    settings_model = EchoSettings
    close_codes: ClassVar[dict[int, type[Exception]]] = {4003: DoNotReconnect, 4002: AuthFailure}
    parse_delay = 0.0

    def __init__(self, name: str, settings: EchoSettings) -> None:
        super().__init__(name, settings)
        self.stopped: list[int] = []

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        raise NotImplementedError  # the tests build links themselves

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        received_at = ctx.received_at
        if self.parse_delay:
            time.sleep(self.parse_delay)  # a slow consumer, to build a backlog
        if isinstance(frame, dict) and frame.get("type") == "event":
            return [
                TransactionEvent(
                    provider=self.name,
                    id=str(frame["n"]),
                    received_at=received_at,
                    type="deposit",
                    details={"gen": frame.get("gen", 0)},
                )
            ]
        return [
            RawEvent(
                provider=self.name,
                id=str(frame),
                received_at=received_at,
                name="other",
                data=str(frame),
            )
        ]

    async def on_connect(self, conn: Connection) -> None:
        reply = await conn.request({"type": "auth", "token": self.settings.token}, timeout=1)
        if not reply["ok"]:
            raise AuthFailure(reply["error"])

    async def keepalive(self, conn: Connection) -> None:
        await conn.request({"type": "ping"}, timeout=0.2)

    async def on_stop(self, conn: Connection) -> None:
        await conn.send({"type": "bye"})
        self.stopped.append(1)


class EchoSimulator(WebSocketSimulator):
    """Answers auth and ping requests by id; can ignore pings and answer out of order."""

    def __init__(self) -> None:
        super().__init__()
        self.ignore_pings = False
        self.pings = 0
        self.attempt_times: list[float] = []
        self.on_auth: list[Any] = []

    def check_request(self, request):
        self.attempt_times.append(time.monotonic())

    async def session(self, ws) -> None:
        while True:
            message = await self.recv_json(ws)
            if message["type"] == "auth":
                ok = message["token"] == "good"
                await self.send_json(
                    ws, {"id": message["id"], "ok": ok, "error": None if ok else "bad token"}
                )
                if ok:
                    for extra in self.on_auth:
                        await self.send_json(ws, extra)
            elif message["type"] == "ping":
                self.pings += 1
                if not self.ignore_pings:
                    await self.send_json(ws, {"id": message["id"], "type": "pong"})


class RecordingHub(Hub):
    """The real hub, also remembering what it was given (what the link produced)."""

    def __init__(self) -> None:
        super().__init__(TopicMap("t"), Outbox(100_000), None, 1)
        self.events: list[AnyEvent] = []

    def submit(self, events) -> None:
        events = list(events)
        self.events.extend(events)
        super().submit(events)

    def links(self) -> list[tuple[str, str | None]]:
        return [(e.state, e.error) for e in self.events if isinstance(e, LinkStateEvent)]

    def ids(self) -> list[str]:
        return [e.id for e in self.events if isinstance(e, TransactionEvent)]


def link_context(provider, hub, account: str | None = None) -> ConnectionContext:
    """What the core gives one connection's link, without the rest of the daemon."""
    ctx = InstanceContext(provider, hub)

    def publish(state, error):
        ctx.set_link_state(state, error=error, account=account)

    return ConnectionContext(ctx, account, LinkStatus(publish, ctx.logger))


def make_link(sim: EchoSimulator, provider: EchoProvider | None = None, **kw):
    provider = provider or EchoProvider("echo", EchoSettings())
    hub = RecordingHub()
    ctx = link_context(provider, hub)
    calls: list[float] = []

    async def endpoint() -> Endpoint:
        calls.append(time.monotonic())
        return Endpoint(sim.url, {"Authorization": f"key-{len(calls)}"})

    options = WebSocketOptions(ping_interval=None, **kw)
    return WebSocketLink(ctx, provider, endpoint, options=options, retry=FAST), hub, calls


async def until(predicate, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
async def sim():
    async with EchoSimulator() as s:
        yield s


async def run_link(link):
    group = asyncio.TaskGroup()
    await group.__aenter__()
    task = group.create_task(link.run())
    return group, task


async def stop_link(group, task, link):
    await link.close()
    await asyncio.wait_for(task, 2)
    await group.__aexit__(None, None, None)


async def test_connects_authenticates_and_delivers(sim):
    sim.on_auth = [{"type": "event", "n": 1}, {"type": "event", "n": 2}]
    link, hub, _ = make_link(sim)
    group, task = await run_link(link)
    # the frames that follow the auth reply may be parsed before on_connect resumes to report
    # ``connected``: wait for both
    await until(lambda: hub.ids() == ["1", "2"] and len(hub.links()) >= 2)
    assert hub.links() == [("connecting", None), ("connected", None)]
    assert sim.received[0] == {"type": "auth", "token": "good", "id": 1}
    await stop_link(group, task, link)
    assert link.provider.stopped == [1]
    assert sim.received[-1] == {"type": "bye"}
    assert task.result() is None  # run() returns after a clean close


async def test_reconnects_after_drop_with_fresh_headers(sim):
    link, hub, calls = make_link(sim)
    group, task = await run_link(link)
    await until(lambda: ("connected", None) in hub.links())
    sim.drop_all()
    await until(lambda: sim.connects == 2 and hub.links()[-1] == ("connected", None))
    assert (
        "disconnected",
        "closed by server: 1006 connection lost without a close frame",
    ) in hub.links()
    assert len(calls) == 2  # the endpoint (and its token) is computed again for each attempt
    await stop_link(group, task, link)


async def test_accept_then_close_backs_off_and_the_backoff_is_capped(sim):
    sim.close_on_accept = (1011, "server error")
    link, hub, _ = make_link(sim)
    group, task = await run_link(link)
    await asyncio.sleep(0.8)
    await stop_link(group, task, link)
    gaps = [b - a for a, b in zip(sim.attempt_times, sim.attempt_times[1:], strict=False)]
    assert 6 <= len(sim.attempt_times) <= 16  # no reconnect storm
    assert gaps[0] < gaps[3]  # it grows …
    # … up to the cap: all but one gap (a loaded machine delayed one attempt by 0.11 s; an
    # uncapped backoff has at least two gaps past this bound within 0.8 s)
    assert sorted(gaps)[-2] < FAST.backoff_max * 1.15 + 0.05, gaps
    assert ("disconnected", "closed by server: 1011 server error") in hub.links()


async def test_refused_handshake_is_auth_failed_and_retried_slowly(sim):
    sim.reject_status = 401
    link, hub, calls = make_link(sim)
    group, task = await run_link(link)
    await asyncio.sleep(0.6)
    assert hub.links()[-1][0] in ("auth_failed", "connecting")
    assert ("auth_failed", "handshake refused: HTTP 401") in hub.links()
    assert 2 <= sim.attempts <= 3  # every auth_retry (0.25 s), not every backoff step
    sim.reject_status = None
    await until(lambda: hub.links()[-1] == ("connected", None))
    assert len(calls) == sim.attempts  # credentials re-read before every attempt
    await stop_link(group, task, link)


async def test_rejected_token_then_fixed(sim):
    provider = EchoProvider("echo", EchoSettings(token="bad"))
    link, hub, _ = make_link(sim, provider)
    group, task = await run_link(link)
    await until(lambda: ("auth_failed", "bad token") in hub.links())
    provider.settings = EchoSettings(token="good")
    await until(lambda: hub.links()[-1] == ("connected", None))
    await stop_link(group, task, link)


async def test_do_not_reconnect_holds_off(sim):
    link, hub, _ = make_link(sim)
    group, task = await run_link(link)
    await until(lambda: ("connected", None) in hub.links())
    await sim.close_all(4003, "duplicate session")
    await until(lambda: hub.links()[-1][0] == "disconnected")
    assert hub.links()[-1] == ("disconnected", "closed by server: 4003 duplicate session")
    await asyncio.sleep(0.4)
    assert sim.connects == 1  # held off, no reconnect loop
    await until(lambda: sim.connects == 2, timeout=2)  # after hold_off (0.6 s)
    await stop_link(group, task, link)


async def test_keepalive_is_sent_on_time(sim):
    provider = EchoProvider("echo", EchoSettings())
    provider.keepalive_interval = 0.05  # type: ignore[misc]
    link, hub, _ = make_link(sim, provider)
    group, task = await run_link(link)
    await until(lambda: ("connected", None) in hub.links())
    start = sim.pings
    await asyncio.sleep(0.5)
    assert 7 <= sim.pings - start <= 11
    assert sim.connects == 1
    await stop_link(group, task, link)


async def test_missed_keepalive_reply_renews_the_connection(sim):
    provider = EchoProvider("echo", EchoSettings())
    provider.keepalive_interval = 0.05  # type: ignore[misc]
    sim.ignore_pings = True
    link, hub, _ = make_link(sim, provider)
    group, task = await run_link(link)
    await until(lambda: sim.connects >= 2)
    errors = [e for s, e in hub.links() if s == "disconnected"]
    assert errors[0].startswith("no reply to ping ")
    assert errors[0].endswith(" within 0.2 s")
    await stop_link(group, task, link)


async def test_a_backlog_longer_than_the_keepalive_timeout_is_not_a_dead_connection(sim):
    """A burst fills the link's queue, so the receive loop waits for room and the keepalive's
    reply sits unread behind the burst. That is a slow consumer, not a dead upstream: no
    reconnect (which would lose what the upstream sent and never replays), nothing lost."""
    provider = EchoProvider("echo", EchoSettings())
    provider.keepalive_interval = 0.05  # type: ignore[misc]
    provider.parse_delay = 0.001  # 1,000 frames: ~1 s of work, five times the 0.2 s timeout
    sim.on_auth = [{"type": "event", "n": n} for n in range(1000)]
    link, hub, _ = make_link(sim, provider, queue_size=10)
    group, task = await run_link(link)
    await until(lambda: len(hub.ids()) >= 1000, timeout=15)
    await asyncio.sleep(0.3)  # keepalives go on once the backlog is gone
    assert hub.ids() == [str(n) for n in range(1000)]
    assert sim.connects == 1, hub.links()
    assert [s for s, _ in hub.links()] == ["connecting", "connected"]
    await stop_link(group, task, link)


async def test_a_burst_faster_than_the_broker_waits_in_the_connection_and_loses_nothing(sim):
    """While the broker is connected but behind (``Outbox.room``), the link stops handing on
    frames: the burst waits unread in the upstream connection, not in memory, the keepalive
    does not call that a dead connection, and once the broker catches up every frame comes,
    in order, on the same connection."""
    provider = EchoProvider("echo", EchoSettings())
    provider.keepalive_interval = 0.05  # type: ignore[misc]
    sim.on_auth = [{"type": "event", "n": n} for n in range(3000)]
    link, hub, _ = make_link(sim, provider, queue_size=10)
    outbox = hub.outbox
    outbox.ingest_limit = 100
    outbox.draining(True)  # a broker connection that takes nothing for now
    group, task = await run_link(link)
    await until(lambda: len(hub.ids()) >= 100)
    await asyncio.sleep(0.5)  # ten keepalive timeouts
    held = len(hub.ids())
    assert held == 100  # the limit, exactly: room is asked before every frame
    assert outbox.pending_events == held

    async def broker() -> None:
        while True:
            outbox.done(await outbox.get())

    drain = asyncio.ensure_future(broker())
    await until(lambda: len(hub.ids()) >= 3000, timeout=15)
    drain.cancel()
    assert hub.ids() == [str(n) for n in range(3000)]
    assert outbox.ingest_waits >= 1
    assert sim.connects == 1, hub.links()
    assert [s for s, _ in hub.links()] == ["connecting", "connected"]
    await stop_link(group, task, link)


async def test_replies_are_matched_by_id_even_out_of_order(sim):
    class OutOfOrder(EchoSimulator):
        async def session(self, ws) -> None:
            first = await self.recv_json(ws)
            await self.send_json(ws, {"id": first["id"], "ok": True, "error": None})
            a = await self.recv_json(ws)
            b = await self.recv_json(ws)
            await self.send_json(ws, {"id": b["id"], "echo": b["q"]})
            await self.send_json(ws, {"id": a["id"], "echo": a["q"]})
            await ws.wait_closed()

    async with OutOfOrder() as server:
        link, hub, _ = make_link(server)
        group, task = await run_link(link)
        await until(lambda: link._conn is not None and link._conn.ready)
        conn = link._conn
        ra, rb = await asyncio.gather(
            conn.request({"type": "q", "q": "A"}), conn.request({"type": "q", "q": "B"})
        )
        assert (ra["echo"], rb["echo"]) == ("A", "B")
        assert not [e for e in hub.events if isinstance(e, RawEvent)]  # replies are not frames
        await stop_link(group, task, link)


async def test_frames_of_an_old_connection_are_never_processed_after_a_new_one(sim):
    provider = EchoProvider("echo", EchoSettings())
    provider.parse_delay = 0.002
    sim.on_auth = [{"type": "event", "n": n, "gen": 1} for n in range(100)]
    link, hub, _ = make_link(sim, provider)
    group, task = await run_link(link)
    await until(lambda: len(sim.received) >= 1 and sim.connects == 1)
    await asyncio.sleep(0.05)  # a backlog builds up in the link's queue
    sim.on_auth = [{"type": "event", "n": 1000 + n, "gen": 2} for n in range(10)]
    sim.drop_all()
    await until(lambda: len(hub.ids()) >= 110)
    gens = [e.details["gen"] for e in hub.events if isinstance(e, TransactionEvent)]
    assert gens == [1] * 100 + [2] * 10  # nothing lost, and nothing old after the new connection
    await stop_link(group, task, link)


async def test_close_while_connecting_does_not_leave_a_connection_behind(sim):
    gate = asyncio.Event()
    link, hub, _ = make_link(sim)
    original = link.endpoint

    async def slow_endpoint():
        await gate.wait()
        return await original()

    link.endpoint = slow_endpoint
    group, task = await run_link(link)
    await until(lambda: hub.links() == [("connecting", None)])
    closing = asyncio.ensure_future(link.close())
    gate.set()
    await closing
    await asyncio.wait_for(task, 2)
    await group.__aexit__(None, None, None)
    await asyncio.sleep(0.05)
    assert not sim.connections  # the connection opened after close() was closed at once
    assert ("connected", None) not in hub.links()


class HelloProvider(EchoProvider):
    """Authenticates with a message whose answer carries no id (as IBEX FI does)."""

    async def on_connect(self, conn: Connection) -> None:
        await conn.send({"type": "hello"})
        await conn.expect(lambda f: f.get("type") == "welcome", timeout=0.3, what="welcome")


class HelloSimulator(EchoSimulator):
    def __init__(self) -> None:
        super().__init__()
        self.welcome = True

    async def session(self, ws) -> None:
        await self.recv_json(ws)
        await self.send_json(ws, {"type": "event", "n": 0})  # not what the hook waits for
        if self.welcome:
            await self.send_json(ws, {"type": "welcome"})
        await ws.wait_closed()


async def test_expect_waits_for_a_frame_without_id_and_the_frame_is_still_delivered():
    async with HelloSimulator() as sim:
        link, hub, _ = make_link(sim, HelloProvider("echo", EchoSettings()))
        group, task = await run_link(link)
        await until(lambda: ("connected", None) in hub.links())
        await until(lambda: [e.name for e in hub.events if isinstance(e, RawEvent)] == ["other"])
        assert hub.ids() == ["0"]
        await stop_link(group, task, link)


async def test_expect_without_the_frame_fails_the_connection_and_says_what_was_missing():
    async with HelloSimulator() as sim:
        sim.welcome = False
        link, hub, _ = make_link(sim, HelloProvider("echo", EchoSettings()))
        group, task = await run_link(link)
        await until(lambda: sim.connects >= 2)
        assert ("disconnected", "no welcome within 0.3 s") in hub.links()
        assert ("connected", None) not in hub.links()
        await stop_link(group, task, link)


async def test_a_hang_up_in_the_handshake_is_transport_trouble_and_retried(sim):
    sim.hang_up = True
    link, hub, _ = make_link(sim)
    group, task = await run_link(link)
    await until(lambda: sim.attempts >= 3)
    assert not task.done()  # not a bug: the link keeps retrying
    state, error = hub.links()[-1] if hub.links()[-1][0] != "connecting" else hub.links()[-2]
    assert state == "disconnected"
    assert error.startswith("handshake failed: InvalidMessage: ")
    sim.hang_up = False
    await until(lambda: hub.links()[-1] == ("connected", None))
    await stop_link(group, task, link)


async def test_a_hook_sending_on_a_closed_socket_is_transport_trouble(sim):
    class SendsAfterClose(EchoProvider):
        async def on_connect(self, conn: Connection) -> None:
            await super().on_connect(conn)
            if len(sim.received) < 3:
                await sim.close_all(1001, "going away")
                await asyncio.sleep(0.05)
                await conn.send({"type": "late"})

    link, hub, _ = make_link(sim, SendsAfterClose("echo", EchoSettings()))
    group, task = await run_link(link)
    await until(lambda: sim.connects >= 2 and hub.links()[-1] == ("connected", None))
    assert ("disconnected", "closed by server: 1001 going away") in hub.links()
    await stop_link(group, task, link)
