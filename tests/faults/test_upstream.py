"""Faults between the bridge and its upstreams, with the Hibachi simulator and the real plugin.

The simulator sends ``trade_update`` frames with order ids known in advance (~200/s) to the live
streams of an account; an upstream does not hold events for a client that is gone, so the driver
sends each one once a stream is live again (the simulator's ``push`` reports whether one was).
Everything it sent must reach the subscriber exactly once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator, trade_update
from websockets.exceptions import ConnectionClosed

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.proxy import TcpProxy

from .conftest import Subscriber, no_crash, record, stop_cleanly, tally

ORDER_BASE = 700_000_000_000_000_000
N = 300


def hibachi(name: str, url: str, account: int, alias: str, ping: float = 0.1) -> str:
    return f"""
[[providers]]
type = "hibachi"
name = "{name}"
api_key = "{API_KEY}"
base_url = "{url}"
accounts = [{{id = {account}, alias = "{alias}"}}]
ping_interval = {ping}
request_timeout = 0.3
retry_min = 0.05
retry_max = 0.2
auth_retry = 0.3
"""


def trade(account: int, n: int) -> dict[str, object]:
    return trade_update(account, ORDER_BASE + n)


def orders(n: int) -> list[str]:
    return [str(ORDER_BASE + i) for i in range(n)]


async def push(sim: HibachiSimulator, account: int, frame: dict[str, object]) -> bool:
    """Send ``frame`` to the account's live streams; True if one took it. Unlike the
    simulator's ``push``, a send that fails, or a connection already being closed, is not
    counted: an upstream does not deliver to a client that is gone."""
    sent = False
    for stream in list(sim.streams):
        ws = stream.ws
        if stream.account != account or stream.key is None or stream.expired:
            continue
        if ws.transport.is_closing():
            continue
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            continue
        sent = True
    return sent


class Driver:
    """Sends ``n`` trades to an account's live streams at ``rate``/s; pausable."""

    def __init__(self, sim: HibachiSimulator, account: int, n: int = N, rate: float = 200) -> None:
        self.sim, self.account, self.n, self.rate = sim, account, n, rate
        self.sent = 0
        self.running = asyncio.Event()
        self.running.set()

    async def run(self) -> None:
        for i in range(self.n):
            while True:
                await self.running.wait()
                if await push(self.sim, self.account, trade(self.account, i)):
                    break
                await asyncio.sleep(0.005)  # no live stream: the upstream waits for one
            self.sent = i + 1
            await asyncio.sleep(1 / self.rate)


def order_ids(sub: Subscriber, topic: str) -> list[str]:
    """Order ids of the trades on ``topic``; each must have come with one event id."""
    trades = [m.json() for m in sub.on(topic)]
    by_order: dict[str, set[str]] = {}
    for t in trades:
        by_order.setdefault(t["order_id"], set()).add(t["id"])
    assert all(len(ids) == 1 for ids in by_order.values())
    return [t["order_id"] for t in trades]


def close_all_tcp(sim: HibachiSimulator) -> None:
    """End every connection's TCP stream without a close frame (a NAT or proxy dropping it);
    unlike an abort, bytes already sent are delivered first, as on a real FIN."""
    for ws in list(sim.connections):
        ws.transport.close()


@dataclass
class Fault:
    name: str
    description: str
    error: Callable[[str], bool]
    """Recognizes the link topic's error during the fault."""
    inject: Callable[[HibachiSimulator, TcpProxy], Awaitable[None]]
    heal: Callable[[HibachiSimulator, TcpProxy], Awaitable[None]]
    hold: float = 0.5


async def _drop(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    close_all_tcp(sim)


async def _refuse(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    sim.close_on_accept = (1013, "try again later")
    close_all_tcp(sim)


async def _accept(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    sim.close_on_accept = None


async def _expire(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    # what the server does when a key was not pinged in time (the pings here are faster than
    # the key's life, so the simulator's own clock would never get there)
    for stream in list(sim.streams):
        stream.expired = True
        sim.expirations += 1
        await stream.ws.send(
            json.dumps(
                {
                    "event": "stream_expired",
                    "account": str(stream.account),
                    "params": {"listenKey": stream.key, "timestampMs": int(time.time() * 1000)},
                }
            )
        )


async def _stall(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    proxy.stall()


async def _resume(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    proxy.resume()


async def _nothing(sim: HibachiSimulator, proxy: TcpProxy) -> None:
    pass


FAULTS = [
    Fault(
        "upstream_drop",
        "upstream TCP closed mid-stream (no close frame)",
        lambda e: "1006" in e or "no close frame" in e or "closed" in e,
        _drop,
        _nothing,
        hold=0.0,
    ),
    Fault(
        "accept_then_close",
        "upstream accepts then closes (1013), for 1 s",
        lambda e: "1013" in e or "try again later" in e,
        _refuse,
        _accept,
        hold=1.0,
    ),
    Fault(
        "listen_key_expiry",
        "listen key expired mid-stream (stream_expired)",
        lambda e: "listen key expired (stream_expired)" in e,
        _expire,
        _nothing,
        hold=0.0,
    ),
    Fault(
        "upstream_stall",
        "upstream silent for 1.5 s: no frames, no pongs",
        lambda e: "stream.ping" in e or "timed out" in e or "keepalive" in e,
        _stall,
        _resume,
        hold=1.5,
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_upstream_fault(
    fault: Fault, broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    link, topic = "fin2mqtt/hib/main/link", "fin2mqtt/hib/main/trade"
    async with HibachiSimulator(expiry=60) as sim, TcpProxy("127.0.0.1", sim.port) as proxy:
        config = daemon_config(hibachi("hib", f"ws://127.0.0.1:{proxy.port}", 128, "main"))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await subscriber.wait_link(link, "connected")
            await sim.wait_until(lambda: sim.streams and sim.streams[0].key)
            driver = Driver(sim, 128)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(driver.run())
                await sim.wait_until(lambda: driver.sent >= 100)
                if fault.name == "upstream_stall":
                    driver.running.clear()  # a silent upstream sends nothing
                injected = time.monotonic()
                await fault.inject(sim, proxy)
                await subscriber.wait_for(
                    lambda _: any(s != "connected" for s, _e in subscriber.links(link)),
                    what="the link down",
                )
                await asyncio.sleep(fault.hold)
                healed = time.monotonic() if fault.hold else injected
                await fault.heal(sim, proxy)
                driver.running.set()
                up = await subscriber.wait_link(link, "connected")
            detected = (
                subscriber.first_arrival(
                    lambda m: (
                        m.topic == link and bool(m.payload) and m.json()["state"] != "connected"
                    ),
                    after=injected,
                )
                - injected
            )
            await subscriber.wait_for(lambda _: len(order_ids(subscriber, topic)) >= N, 15)
            await asyncio.sleep(0.3)
            # the broker connection never broke: no exception to "once"
            lost, dup = tally(order_ids(subscriber, topic), orders(N))
            # the link topic left "connected" (its states are coalesced: the latest counts), and
            # the log says why
            assert any(s != "connected" for s, _e in subscriber.links(link))
            reasons = [
                line for line in daemon.log().splitlines() if "link (main) disconnected" in line
            ]
            assert any(fault.error(r) for r in reasons), reasons
            assert API_KEY not in daemon.log()  # not even in a handshake logged at debug level
            assert subscriber.links(link)[-1] == ("connected", None)
            bridge = subscriber.on("fin2mqtt/bridge/state")
            assert [m.json()["state"] for m in bridge] == ["online"]  # never offline
            if fault.name == "accept_then_close":
                assert sim.attempts >= 3  # retried, with backoff
            no_crash(daemon)
            await stop_cleanly(daemon)
    record(
        fault.name, fault.description, N, lost, dup, max(0.0, up - healed),
        f"fault over → link topic connected (down on the topic {detected:.2f} s after the fault)",
    )  # fmt: skip


async def test_two_providers_fail_at_once(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    steady = '[[providers]]\ntype = "testprov"\nname = "steady"\ninterval = 0.01\nticks = 300\n'
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(
            hibachi("hib", sim.base_url, 128, "main")
            + hibachi("hob", sim.base_url, 129, "side")
            + steady
        )
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            for link in ("fin2mqtt/hib/main/link", "fin2mqtt/hob/side/link"):
                await subscriber.wait_link(link, "connected")
            await sim.wait_until(lambda: len([s for s in sim.streams if s.key]) == 2)
            a, b = Driver(sim, 128), Driver(sim, 129)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(a.run())
                tg.create_task(b.run())
                await sim.wait_until(lambda: a.sent >= 100 and b.sent >= 100)
                links = ("fin2mqtt/hib/main/link", "fin2mqtt/hob/side/link")
                seen = {link: len(subscriber.links(link)) for link in links}
                dropped = time.monotonic()
                close_all_tcp(sim)  # both upstream connections at the same moment
                ups = [await subscriber.wait_down_up(link, seen[link]) for link in links]
            await subscriber.wait_for(
                lambda _: (
                    len(order_ids(subscriber, "fin2mqtt/hib/main/trade")) >= N
                    and len(order_ids(subscriber, "fin2mqtt/hob/side/trade")) >= N
                ),
                15,
            )
            await subscriber.wait_ids(
                [f"tx-{n}" for n in range(300)], suffix="steady/acc-1/transaction"
            )
            await asyncio.sleep(0.3)
            lost = dup = 0
            for topic in ("fin2mqtt/hib/main/trade", "fin2mqtt/hob/side/trade"):
                n_lost, n_dup = tally(order_ids(subscriber, topic), orders(N))
                lost, dup = lost + n_lost, dup + n_dup
            tally(subscriber.ids("steady/acc-1/transaction"), [f"tx-{n}" for n in range(300)])
            for link in ("fin2mqtt/hib/main/link", "fin2mqtt/hob/side/link"):
                states = [s for s, _e in subscriber.links(link)]
                assert "disconnected" in states or "connecting" in states, states
                assert states[-1] == "connected"
            # the third provider never noticed
            assert [s for s, _e in subscriber.links("fin2mqtt/steady/link")] == ["connected"]
            no_crash(daemon)
            await stop_cleanly(daemon)
    record(
        "two_providers_at_once", "two upstreams dropped together, a third steady", 2 * N + 300,
        lost, dup, max(ups) - dropped, "drop → both link topics connected",
    )  # fmt: skip
