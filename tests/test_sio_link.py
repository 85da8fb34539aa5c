"""The Socket.IO link against a real python-socketio server in-process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import socketio

from bridge.api import (
    AnyEvent,
    Connection,
    DoNotReconnect,
    NotificationEvent,
    ParseContext,
    Provider,
    ProviderContext,
    ProviderSettings,
)
from bridge.links.reconnect import RetryPolicy
from bridge.links.socketio import SocketIOEndpoint, SocketIOLink, SocketIOOptions
from bridge.plugin.connections import ConnectionSpec
from bridge.testing.simulator import SocketIOSimulator
from tests.test_ws_link import RecordingHub, link_context, until

FAST = RetryPolicy(backoff_min=0.01, backoff_max=0.05, auth_retry=0.3)


class ChannelSettings(ProviderSettings):
    token: str = "good"
    channels: tuple[str, ...] = ("user:orders", "market:prices")


class ChannelProvider(Provider[ChannelSettings]):
    settings_model = ChannelSettings
    parse_delay = 0.0

    def __init__(self, name: str, settings: ChannelSettings) -> None:
        super().__init__(name, settings)
        self.controlled: list[Any] = []
        self.parsed: list[Any] = []

    def control(self, frame: Any) -> None:
        self.controlled.append(frame)
        if frame["event"] == "kicked":
            raise DoNotReconnect(f"kicked: {frame['data']['why']}")

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        raise NotImplementedError

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        received_at = ctx.received_at
        if self.parse_delay:
            time.sleep(self.parse_delay)  # a slow consumer: python-socketio reads on regardless
        self.parsed.append(frame)
        data = frame["data"]
        return [
            NotificationEvent(
                provider=self.name,
                id=f"{frame['event']}-{data.get('n')}",
                received_at=received_at,
                category=frame["event"],
                message=str(data),
            )
        ]

    async def on_connect(self, conn: Connection) -> None:
        for channel in self.settings.channels:
            await conn.send({"event": "subscribe", "data": {"channel": channel}})


class ChannelSimulator(SocketIOSimulator):
    namespace = "/ws"

    def setup(self) -> None:
        self.subscribes: list[str] = []
        self.refuse = False

        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            if self.refuse or not auth or auth.get("token") != "good":
                raise socketio.exceptions.ConnectionRefusedError("Unauthorized")
            self.connects += 1
            self.sids.add(sid)
            self.changed()

        async def disconnect(sid: str, *_args: Any) -> None:
            self.sids.discard(sid)
            self.changed()

        async def subscribe(sid: str, data: dict[str, Any]) -> None:
            self.subscribes.append(data["channel"])
            await self.sio.emit("subscribed", {"channel": data["channel"]}, to=sid, namespace="/ws")
            self.changed()

        async def quote(sid: str, data: dict[str, Any]) -> Any:
            await asyncio.sleep(data["delay"])  # answered out of order
            return {"symbol": data["symbol"], "price": 0.1 + data["delay"]}

        async def burst(sid: str, data: dict[str, Any]) -> None:
            for n in range(data["count"]):
                await self.sio.emit("tick", {"n": n}, to=sid, namespace="/ws")

        self.sio.on("quote", quote, namespace="/ws")
        self.sio.on("burst", burst, namespace="/ws")
        self.sio.on("connect", connect, namespace="/ws")
        self.sio.on("disconnect", disconnect, namespace="/ws")
        self.sio.on("subscribe", subscribe, namespace="/ws")


def make_link(sim: ChannelSimulator, token: list[str], provider=None, **options):
    provider = provider or ChannelProvider("vz", ChannelSettings())
    hub = RecordingHub()
    ctx = link_context(provider, hub)

    async def endpoint() -> SocketIOEndpoint:
        return SocketIOEndpoint(sim.url, namespace="/ws", auth={"token": token[0]})

    link = SocketIOLink(ctx, provider, endpoint, options=SocketIOOptions(**options), retry=FAST)
    return link, hub


class Connected:
    """Runs a link until the block ends; ``conn`` is the open connection."""

    def __init__(self, link) -> None:
        self.link = link

    async def __aenter__(self):
        self.group = asyncio.TaskGroup()
        await self.group.__aenter__()
        self.task = self.group.create_task(self.link.run())
        await until(lambda: self.link._conn is not None and self.link._conn.ready)
        return self.link._conn

    async def __aexit__(self, *exc):
        await self.link.close()
        await asyncio.wait_for(self.task, 2)
        await self.group.__aexit__(None, None, None)


async def test_replies_are_matched_to_their_requests_and_delivered_when_asked():
    async with ChannelSimulator() as sim:
        link, _hub = make_link(sim, ["good"])
        async with Connected(link) as conn:
            slow, fast = await asyncio.gather(
                conn.request({"event": "quote", "data": {"symbol": "A", "delay": 0.2}}),
                conn.request(
                    {"event": "quote", "data": {"symbol": "B", "delay": 0.01}},
                    deliver_reply=True,
                ),
            )
            assert slow["symbol"] == "A"
            assert fast == {"symbol": "B", "price": Decimal("0.11")}
            await until(lambda: any(f.get("ack") for f in link.provider.parsed))
            replies = [f for f in link.provider.parsed if f.get("ack")]
            # only the reply asked for reaches parse, as the request's event with the reply
            assert replies == [{"event": "quote", "data": fast, "ack": True}]


async def test_floats_arrive_as_decimal():
    async with ChannelSimulator() as sim:
        link, _hub = make_link(sim, ["good"])
        async with Connected(link):
            await sim.sio.emit("price", {"n": 1, "price": 0.1, "qty": 3}, namespace="/ws")
            await until(lambda: any(f["event"] == "price" for f in link.provider.parsed))
            price = next(f for f in link.provider.parsed if f["event"] == "price")
            assert price["data"] == {"n": 1, "price": Decimal("0.1"), "qty": 3}
            assert type(price["data"]["price"]) is Decimal


async def test_control_sees_every_frame_and_can_end_the_connection():
    async with ChannelSimulator() as sim:
        link, hub = make_link(sim, ["good"])
        async with Connected(link):
            # the server answers our two subscribes in tasks of its own: a broadcast sent before
            # those answers may overtake them, so wait for them first
            await until(lambda: len(link.provider.controlled) >= 2)
            await sim.sio.emit("data", {"n": 1}, namespace="/ws")
            await until(lambda: len(link.provider.controlled) >= 3)
            assert [f["event"] for f in link.provider.controlled] == [
                "subscribed",
                "subscribed",
                "data",
            ]
            await sim.sio.emit("kicked", {"why": "duplicate session"}, namespace="/ws")
            await until(lambda: hub.links()[-1][0] == "disconnected")
            assert hub.links()[-1] == ("disconnected", "kicked: duplicate session")
            assert "kicked" not in [f["event"] for f in link.provider.parsed]


class ThreadedSimulator:
    """The simulator on an event loop of its own: it keeps sending while our loop is busy."""

    def __enter__(self) -> ChannelSimulator:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> ChannelSimulator:
            sim = ChannelSimulator()
            await sim.start()
            return sim

        self.sim = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        return self.sim

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            await self.sim.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


async def test_a_slow_parse_loses_nothing_and_piles_up_no_tasks():
    with ThreadedSimulator() as sim:  # keeps sending while our loop is busy parsing
        provider = ChannelProvider("vz", ChannelSettings())
        link, _hub = make_link(sim, ["good"], provider, queue_size=5)
        async with Connected(link) as conn:
            provider.parse_delay = 0.003
            before = len(asyncio.all_tasks())
            most = 0
            await conn.send({"event": "burst", "data": {"count": 200}})
            while not any(f["data"].get("n") == 199 for f in provider.parsed):
                most = max(most, len(asyncio.all_tasks()))
                await asyncio.sleep(0)
            assert most <= before + 4  # python-socketio's per-message tasks end at once
            ticks = [f["data"]["n"] for f in provider.parsed if f["event"] == "tick"]
            assert ticks == list(range(200))
            assert conn.frames.dropped == 0


async def flood(conn, provider, count: int) -> None:
    """``count`` messages arriving within one turn of the loop (faster than parse can run), once
    the server's answers to our two subscribes are parsed (arriving meanwhile, they would take
    room in the queue and change what overflows)."""
    await until(lambda: sum(f["event"] == "subscribed" for f in provider.parsed) >= 2)
    for n in range(count):
        conn.frames.put({"event": "tick", "data": {"n": n}})


async def test_overflow_reconnects_for_a_fresh_snapshot():
    async with ChannelSimulator() as sim:
        provider = ChannelProvider("vz", ChannelSettings())
        link, hub = make_link(sim, ["good"], provider, queue_size=5)
        async with Connected(link) as conn:
            await flood(conn, provider, 8)
            await until(lambda: hub.links()[-1][0] != "connected")
            assert hub.links()[-1] == (
                "disconnected",
                "more than 5 frames waiting for parse: reconnecting for a fresh snapshot",
            )
            assert conn.frames.dropped == 3
            # what was queued is still parsed, in order, before the next connection's frames
            await until(lambda: hub.links()[-1] == ("connected", None) and sim.connects == 2)
            ticks = [f["data"]["n"] for f in provider.parsed if f["event"] == "tick"]
            assert ticks == [0, 1, 2, 3, 4]
            # the subscribes are sent without an answer awaited: the server may handle them
            # after the link says connected
            await until(lambda: len(sim.subscribes) >= 4)
            assert sim.subscribes == ["user:orders", "market:prices"] * 2


async def test_overflow_can_drop_the_oldest_frames_and_count_them():
    async with ChannelSimulator() as sim:
        provider = ChannelProvider("vz", ChannelSettings())
        link, hub = make_link(sim, ["good"], provider, queue_size=5, overflow="drop_oldest")
        async with Connected(link) as conn:
            await flood(conn, provider, 8)
            await until(lambda: any(f["data"].get("n") == 7 for f in provider.parsed))
            ticks = [f["data"]["n"] for f in provider.parsed if f["event"] == "tick"]
            assert ticks == [3, 4, 5, 6, 7]
            assert conn.frames.dropped == 3
            assert hub.links()[-1] == ("connected", None)
            assert sim.connects == 1
