"""Faults: broker restarts, crashing providers, restarts of the daemon itself."""

from __future__ import annotations

import asyncio
import time

import pytest
from fin2mqtt_hibachi.simulator import HibachiSimulator

from bench.e2e import ACCOUNT
from bench.e2e import daemon_config as hibachi_config
from bridge.testing.broker import make_broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained


def _ids(recorder: MqttRecorder, topic: str) -> list[str]:
    return [m.json()["id"] for m in recorder.on(topic)]


async def test_retained_state_is_back_after_broker_restart(broker, daemon_config, tmp_path):
    providers = """
[[providers]]
type = "testprov"
name = "alpha"
ticks = 2
positions = {"BTC/USDT-P" = "0.5"}
"""
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        async with MqttRecorder(broker.host, broker.port) as rec:
            await rec.wait_for(
                lambda ms: any(
                    m.topic.endswith("balance/usd") and m.json()["total"] == "102.50" for m in ms
                )
            )
        before = await retained(broker.host, broker.port)
        broker.restart()  # no persistence: the broker forgets every retained message
        async with MqttRecorder(broker.host, broker.port) as rec:
            await rec.wait_topic("fin2mqtt/alpha/acc-1/position/btc-usdt-p", timeout=5)
        after = await retained(broker.host, broker.port)
        assert set(before) <= set(after)  # bridge/stats may appear in between
        for topic, message in before.items():
            if not topic.startswith("fin2mqtt/bridge/"):
                assert after[topic].payload == message.payload, topic
        assert after["fin2mqtt/bridge/state"].json() == {"schema": 1, "state": "online"}
        await daemon.terminate()


async def test_queued_events_arrive_exactly_once_after_broker_restart(daemon_config, tmp_path):
    broker = make_broker(tmp_path / "pbroker", persistence=True)
    if not broker.supports_persistence:
        pytest.skip("needs a broker that keeps sessions across restarts (mosquitto)")
    broker.start()
    try:
        providers = """
[[providers]]
type = "testprov"
name = "alpha"
interval = 0.02
ticks = 150
"""
        config = daemon_config(providers).replace(
            f"port = {_port(daemon_config)}", f"port = {broker.port}"
        )
        topic = "fin2mqtt/alpha/acc-1/transaction"
        async with (
            MqttRecorder(
                broker.host, broker.port, (topic,), client_id="rec", clean_session=False
            ) as rec,
            DaemonProcess(config, tmp_path / "d") as daemon,
        ):
            await daemon.wait_ready()
            await rec.wait_for(lambda ms: len(ms) >= 20, what="20 events")
            broker.stop()
            await asyncio.sleep(1.0)  # ~50 events are emitted while the broker is down
            broker.start()
            await rec.wait_for(lambda ms: len(ms) >= 150, timeout=20, what="all 150 events")
            await asyncio.sleep(0.3)
            ids = _ids(rec, topic)
            # none missing; MQTT QoS 1 is at least once: an event whose PUBACK was lost when
            # the broker went down (in flight at that moment) is sent again, same id
            assert sorted(set(ids), key=lambda i: int(i[3:])) == [f"tx-{n}" for n in range(150)]
            twice = sorted({i for i in ids if ids.count(i) > 1})
            assert len(ids) - 150 == len(twice) <= 2, twice
            assert rec.connects >= 2
            await daemon.terminate()
    finally:
        broker.stop()


def _port(build) -> int:
    line = next(l for l in build().splitlines() if l.startswith("port = "))
    return int(line.split("=")[1])


async def test_crashing_provider_restarts_and_others_keep_publishing(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    providers = """
[[providers]]
type = "testprov"
name = "crashy"
interval = 0.02
crash_after = 5
crashes = 2
replay = 3
ticks = 30

[[providers]]
type = "testprov"
name = "steady"
interval = 0.02
ticks = 40
"""
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: (
                len(_ids(recorder, "fin2mqtt/crashy/acc-1/transaction")) >= 30
                and len(_ids(recorder, "fin2mqtt/steady/acc-1/transaction")) >= 40
            ),
            timeout=15,
            what="all events of both providers",
        )
        await asyncio.sleep(0.2)
        crashy = _ids(recorder, "fin2mqtt/crashy/acc-1/transaction")
        # each restart replays 3 ticks; the hub drops them: every id exactly once, in order
        assert crashy == [f"tx-{n}" for n in range(30)]
        assert _ids(recorder, "fin2mqtt/steady/acc-1/transaction") == [f"tx-{n}" for n in range(40)]

        links = [m.json() for m in recorder.on("fin2mqtt/crashy/link")]
        states = [(l["state"], l["error"]) for l in links]
        # the link topic keeps the latest state: a restart 50 ms later may replace a crash's
        # "disconnected" before it is sent; the log has both (below)
        crashes = {
            ("disconnected", "RuntimeError: simulated crash 1 at tick 5"),
            ("disconnected", "RuntimeError: simulated crash 2 at tick 7"),
        }
        assert {s for s in states if s[0] == "disconnected"} <= crashes
        assert states[-1] == ("connected", None)
        assert all(m.retain is False for m in recorder.on("fin2mqtt/crashy/link"))
        steady_links = [m.json()["state"] for m in recorder.on("fin2mqtt/steady/link")]
        # state published before the broker connection is coalesced: only the latest counts
        assert steady_links[-1] == "connected"
        assert "disconnected" not in steady_links
        assert "simulated crash 1 at tick 5; restarting in" in daemon.log()
        assert "simulated crash 2 at tick 7; restarting in" in daemon.log()
        # a plugin bug shows its traceback once per kind and place: both crashes are the same
        # bug (RuntimeError raised on the same line), only their messages differ
        assert daemon.log().count("ERROR   fin2mqtt.supervisor.crashy: provider crashed") == 1
        assert 'raise RuntimeError(f"simulated crash {p.crashed} at tick {seq}")' in daemon.log()
        code, _ = await daemon.terminate()
        assert code == 0


async def test_duplicates_are_remembered_across_daemon_restarts(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    providers = """
[[providers]]
type = "testprov"
name = "alpha"
interval = 0.02
ticks = {ticks}
"""
    topic = "fin2mqtt/alpha/acc-1/transaction"
    async with DaemonProcess(daemon_config(providers.format(ticks=5)), tmp_path / "d1") as first:
        await first.wait_ready()
        await recorder.wait_topic(topic, 5)
        await first.terminate()
    # a new process replays tx-0..tx-4 from its upstream: all are known, none is published
    async with DaemonProcess(daemon_config(providers.format(ticks=7)), tmp_path / "d2") as second:
        await second.wait_ready()
        await recorder.wait_topic(topic, 7)
        await asyncio.sleep(0.3)
        await second.terminate()
    assert _ids(recorder, topic) == [f"tx-{n}" for n in range(7)]


async def test_unparsable_frame_is_published_raw_and_the_link_goes_on(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    providers = """
[[providers]]
type = "testprov"
name = "alpha"
interval = 0.02
ticks = 4
garbage_at = 1
"""
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        raw = (await recorder.wait_topic("fin2mqtt/alpha/raw"))[0]
        body = raw.json()
        assert body["kind"] == "raw"
        assert body["name"] == "unparsed"
        assert body["data"] == "\x00not json{"
        assert body["error"].startswith("JSONDecodeError: ")
        assert raw.qos == 1 and raw.retain is False
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction", 3)
        assert _ids(recorder, "fin2mqtt/alpha/acc-1/transaction") == ["tx-0", "tx-2", "tx-3"]
        await daemon.terminate()
    assert daemon.log().count("publishing it raw") == 1  # logged once per kind of failure


@pytest.mark.parametrize("qos", [0, 1])
async def test_sigterm_during_a_flood_exits_within_the_stop_budget(broker, tmp_path, qos):
    """An upstream floods far faster than the broker takes it (the daemon's links pause for
    room, megabytes wait unread in the connection), then SIGTERM: exit 0 within the 4 s stop
    budget. It used to hang: on Python 3.11 ``asyncio.wait_for`` can swallow a cancellation
    that arrives as its event is set, so a link cancelled while waiting for room went on
    waiting for frames. And the upstream's close frame, behind the unread backlog, held the
    stop for websockets' 10 s close timeout."""
    async with HibachiSimulator(expiry=60) as sim:
        config = hibachi_config(tmp_path, broker, sim, qos)
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            flood = asyncio.create_task(sim.blast(ACCOUNT, 100_000, None, 0))
            await asyncio.sleep(3)
            flood.cancel()
            began = time.monotonic()
            await daemon.terminate(8)
            took = time.monotonic() - began
    assert daemon.returncode == 0
    assert took < 6, f"{took:.1f} s"
