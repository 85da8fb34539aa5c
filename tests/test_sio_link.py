"""The Socket.IO link against a real python-socketio server in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import socketio

from bridge.api import (
    AnyEvent,
    Connection,
    NotificationEvent,
    Provider,
    ProviderContext,
    ProviderSettings,
)
from bridge.context import InstanceContext
from bridge.links.reconnect import RetryPolicy
from bridge.links.socketio import SocketIOEndpoint, SocketIOLink, SocketIOOptions
from bridge.testing.simulator import SocketIOSimulator
from tests.test_ws_link import RecordingHub, until

FAST = RetryPolicy(backoff_min=0.01, backoff_max=0.05, auth_retry=0.3)


class ChannelSettings(ProviderSettings):
    token: str = "good"
    channels: tuple[str, ...] = ("user:orders", "market:prices")


class ChannelProvider(Provider[ChannelSettings]):
    settings_model = ChannelSettings

    def create_link(self, ctx: ProviderContext) -> SocketIOLink:
        raise NotImplementedError

    def parse(self, frame: Any, received_at: datetime) -> Sequence[AnyEvent]:
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

        self.sio.on("connect", connect, namespace="/ws")
        self.sio.on("disconnect", disconnect, namespace="/ws")
        self.sio.on("subscribe", subscribe, namespace="/ws")


def make_link(sim: ChannelSimulator, token: list[str]):
    provider = ChannelProvider("vz", ChannelSettings())
    hub = RecordingHub()
    ctx = InstanceContext(provider, hub)

    async def endpoint() -> SocketIOEndpoint:
        return SocketIOEndpoint(sim.url, namespace="/ws", auth={"token": token[0]})

    return SocketIOLink(ctx, provider, endpoint, options=SocketIOOptions(retry=FAST)), hub


async def test_subscribes_receives_and_resubscribes_after_a_server_disconnect():
    async with ChannelSimulator() as sim:
        link, hub = make_link(sim, ["good"])
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(link.run())
            await sim.wait_until(lambda: len(sim.subscribes) == 2)
            await sim.sio.emit("data", {"channel": "user:orders", "n": 1}, namespace="/ws")
            await until(lambda: any(getattr(e, "category", None) == "data" for e in hub.events))
            categories = [e.category for e in hub.events if isinstance(e, NotificationEvent)]
            assert categories == ["subscribed", "subscribed", "data"]

            await sim.disconnect_all()  # python-socketio would not come back by itself
            await sim.wait_until(lambda: len(sim.subscribes) == 4 and sim.connects == 2)
            assert sim.subscribes == ["user:orders", "market:prices"] * 2
            assert ("disconnected", "disconnected by the server") in hub.links()
            await until(lambda: hub.links()[-1] == ("connected", None))
            await link.close()
            await asyncio.wait_for(task, 2)


async def test_refused_namespace_is_auth_failed_then_recovers():
    async with ChannelSimulator() as sim:
        token = ["bad"]
        link, hub = make_link(sim, token)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(link.run())
            await until(
                lambda: ("auth_failed", "namespace /ws refused: Unauthorized") in hub.links()
            )
            token[0] = "good"  # the secret is read again for the next attempt
            await until(lambda: hub.links()[-1] == ("connected", None))
            assert sim.connects == 1
            await link.close()
            await asyncio.wait_for(task, 2)
