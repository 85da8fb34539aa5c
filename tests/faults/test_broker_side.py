"""Faults between the bridge and the broker, and of the daemon process itself.

The scripted test provider ticks at 200 transactions/s (ids ``tx-<n>``, known in advance) and
replays every tick from the start when its process restarts, as an upstream snapshot would; the
subscriber has a persistent session, so it misses nothing while it is away.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.proxy import TcpProxy
from bridge.testing.recorder import retained

from .conftest import (
    MAX_INFLIGHT,
    Subscriber,
    after_break,
    in_flight_at_break,
    no_crash,
    record,
    stop_cleanly,
    tally,
)


def ticking(name: str = "alpha", ticks: int = 600, interval: float = 0.005) -> str:
    return (
        "[[providers]]\n"
        'type = "testprov"\n'
        f'name = "{name}"\n'
        f"interval = {interval}\n"
        f"ticks = {ticks}\n"
    )


def tx(n: int) -> list[str]:
    return [f"tx-{i}" for i in range(n)]


def needs_persistence(broker: Broker) -> None:
    if not broker.supports_persistence:
        pytest.skip("needs a broker that keeps sessions across restarts (mosquitto)")


async def bridge_state(broker: Broker) -> dict[str, str]:
    found = await retained(broker.host, broker.port, "fin2mqtt/bridge/state", quiet=0.1)
    state: dict[str, str] = found["fin2mqtt/bridge/state"].json()
    return state


async def test_broker_down_at_start(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    needs_persistence(broker)
    broker.stop()
    async with DaemonProcess(daemon_config(ticking()), tmp_path / "d") as daemon:
        await daemon.wait_ready(broker=False)  # READY without the broker
        assert any(n.startswith("STATUS=connecting to MQTT broker") for n in daemon.notifications)
        await asyncio.sleep(1.0)  # ~200 events accepted into the outbox meanwhile
        broker.start()
        back = time.monotonic()
        await subscriber.wait_ids(tx(600))
        recovered = subscriber.last_arrival(tx(200)) - back
        lost, dup = tally(subscriber.ids(), tx(600))  # never connected before: no exception
        assert subscriber.links("fin2mqtt/alpha/link")[-1] == ("connected", None)
        assert await bridge_state(broker) == {"schema": 1, "state": "online"}
        assert "MQTT broker 127.0.0.1" in daemon.log()
        assert "unreachable" in daemon.log()
        await stop_cleanly(daemon)
    record(
        "broker_down_at_start", "no broker for the first 1 s", 600, lost, dup, recovered,
        "broker started → the events of the outage delivered",
    )  # fmt: skip


async def test_broker_restart_while_events_flow(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    needs_persistence(broker)
    providers = ticking("alpha", 600) + ticking("beta", 600)
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await subscriber.wait_for(lambda _: len(subscriber.ids()) >= 200, what="200 events")
        broker.stop()
        before = {n: subscriber.ids(f"{n}/acc-1/transaction") for n in ("alpha", "beta")}
        await asyncio.sleep(0.5)
        broker.start()
        back = time.monotonic()
        await subscriber.wait_ids(tx(600), suffix="alpha/acc-1/transaction")
        await subscriber.wait_ids(tx(600), suffix="beta/acc-1/transaction")
        recovered = (
            subscriber.first_arrival(lambda m: m.topic.endswith("/transaction"), after=back) - back
        )
        await asyncio.sleep(0.3)
        lost = dup = 0
        for name in ("alpha", "beta"):
            ids = subscriber.ids(f"{name}/acc-1/transaction")
            # the documented exception: what was in flight when the connection broke (the
            # bridge's window to the broker, the broker's to the subscriber) may come twice
            n_lost, n_dup = tally(ids, tx(600), may_repeat=after_break(before[name], tx(600)))
            lost, dup = lost + n_lost, dup + n_dup
            assert subscriber.links(f"fin2mqtt/{name}/link")[-1] == ("connected", None)
        # as many as before this allowed by position: the bridge's window (one connection for
        # both providers) and up to as many the broker had sent the subscriber unacknowledged
        assert dup <= 2 * MAX_INFLIGHT, dup
        assert await bridge_state(broker) == {"schema": 1, "state": "online"}
        await stop_cleanly(daemon)
    record(
        "broker_restart", "broker stopped 0.5 s under 400 events/s", 1200, lost, dup, recovered,
        "broker started → first event at the subscriber",
    )  # fmt: skip


async def test_slow_broker(broker: Broker, subscriber: Subscriber, daemon_config, tmp_path):
    async with TcpProxy(broker.host, broker.port) as proxy:
        config = daemon_config(ticking(ticks=800)).replace(
            f"port = {broker.port}", f"port = {proxy.port}"
        )
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await subscriber.wait_for(lambda _: len(subscriber.ids()) >= 50, what="50 events")
            proxy.delay, proxy.rate = 0.05, 20_000  # 50 ms each way, 20 kB/s: < the event rate
            await asyncio.sleep(2.0)
            during = len(set(subscriber.ids()))
            assert during < 450, during  # it really was slower than the upstream
            proxy.delay, proxy.rate = 0.0, None
            fixed = time.monotonic()
            await subscriber.wait_ids(tx(800))
            recovered = subscriber.last_arrival(tx(450)) - fixed
            lost, dup = tally(subscriber.ids(), tx(800))  # slow is not broken: no repeats
            no_crash(daemon)
            assert proxy.connections == 1  # never reconnected
            assert "unreachable" not in daemon.log()
            assert await bridge_state(broker) == {"schema": 1, "state": "online"}
            await stop_cleanly(daemon)
    record(
        "slow_broker", "50 ms latency and 20 kB/s for 2 s", 800, lost, dup, recovered,
        "proxy back to full speed → backlog delivered",
    )  # fmt: skip


async def test_sigterm_under_load_then_restart(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    config = daemon_config(ticking(ticks=1000))
    async with DaemonProcess(config, tmp_path / "d1") as daemon:
        await daemon.wait_ready()
        await subscriber.wait_for(lambda _: len(subscriber.ids()) >= 200, what="200 events")
        code, took = await daemon.terminate()
        assert code == 0
        assert took < 4.0 + 1.0  # supervisor.stop_timeout, with a margin for process exit
        assert "Traceback" not in daemon.log()
    first_run = set(subscriber.ids())
    await subscriber.wait_for(
        lambda _: (
            subscriber.on("fin2mqtt/bridge/state")[-1:]
            and subscriber.on("fin2mqtt/bridge/state")[-1].json()
            == {"schema": 1, "state": "offline"}
        ),
        what="offline",
    )
    async with DaemonProcess(config, tmp_path / "d2") as daemon:
        began = time.monotonic()
        await daemon.wait_ready()
        await subscriber.wait_ids(tx(1000))
        recovered = (
            subscriber.first_arrival(
                lambda m: m.topic.endswith("/transaction") and m.json()["id"] not in first_run,
                after=began,
            )
            - began
        )
        await asyncio.sleep(0.3)
        # a clean stop flushes or keeps: the restarted upstream replays all 1,000, each once
        lost, dup = tally(subscriber.ids(), tx(1000))
        assert await bridge_state(broker) == {"schema": 1, "state": "online"}
        await stop_cleanly(daemon)
    record(
        "sigterm_under_load", "SIGTERM at 200 events/s, then restart", 1000, lost, dup,
        recovered, "restart → first event not delivered before the stop",
    )  # fmt: skip


async def test_sigkill_under_load_then_restart(
    broker: Broker, subscriber: Subscriber, daemon_config, tmp_path
):
    config = daemon_config(ticking(ticks=1000))
    async with DaemonProcess(config, tmp_path / "d1") as daemon:
        await daemon.wait_ready()
        await subscriber.wait_for(lambda _: len(subscriber.ids()) >= 200, what="200 events")
        daemon.kill()
        await daemon.wait_exit()
    before = subscriber.ids()
    first_run = set(before)
    # the will: the broker says offline for the dead bridge
    await subscriber.wait_for(
        lambda _: (
            subscriber.on("fin2mqtt/bridge/state")[-1].json() == {"schema": 1, "state": "offline"}
        ),
        what="the will",
    )
    async with DaemonProcess(config, tmp_path / "d2") as daemon:
        began = time.monotonic()
        await daemon.wait_ready()
        await subscriber.wait_ids(tx(1000))
        recovered = (
            subscriber.first_arrival(
                lambda m: m.topic.endswith("/transaction") and m.json()["id"] not in first_run,
                after=began,
            )
            - began
        )
        await asyncio.sleep(0.3)
        # only what was in flight when the connection died (SIGKILL breaks it) comes twice
        lost, dup = tally(
            subscriber.ids(), tx(1000), may_repeat=in_flight_at_break(before, tx(1000))
        )
        assert subscriber.on("fin2mqtt/bridge/state")[-1].json() == {"schema": 1, "state": "online"}
        await stop_cleanly(daemon)
    record(
        "sigkill_under_load", "SIGKILL at 200 events/s, then restart", 1000, lost, dup,
        recovered, "restart → first event not delivered before the kill",
    )  # fmt: skip
