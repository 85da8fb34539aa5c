"""The delivery contract against a real broker: order, fairness, the will, the stop budget.

The outbox and the publisher run in this process (the boundary under test); the broker and the
subscribers are real. Events are counted by id at the subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from bridge.config.settings import MqttSettings
from bridge.mqtt.publisher import Publisher
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Outbox
from bridge.testing.broker import Broker
from bridge.testing.proxy import TcpProxy
from bridge.testing.recorder import MqttRecorder, retained

BASE = "dlv"


def publisher(host: str, port: int, outbox: Outbox, **mqtt: object) -> Publisher:
    settings = MqttSettings.model_validate(
        {
            "host": host,
            "port": port,
            "base_topic": BASE,
            "reconnect_min": 0.02,
            "reconnect_max": 0.1,
            "keepalive": 5,
            **mqtt,
        }
    )
    return Publisher(
        settings, TopicMap(BASE), outbox, info=lambda: b"{}", on_message=lambda t, p: None,
        subscriptions=(),
    )  # fmt: skip


def event(n: int) -> bytes:
    return json.dumps({"schema": 1, "id": f"e-{n}"}).encode()


def ids(rec: MqttRecorder, topic: str) -> list[str]:
    return [m.json()["id"] for m in rec.on(topic)]


async def test_events_keep_their_order_across_a_forced_reconnect(broker: Broker):
    outbox = Outbox(10_000)
    topic = f"{BASE}/acc/transaction"
    async with (
        MqttRecorder(broker.host, broker.port, (topic,)) as rec,
        TcpProxy(broker.host, broker.port) as proxy,
        asyncio.TaskGroup() as tg,
    ):
        pub = publisher(proxy.host, proxy.port, outbox)
        task = tg.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        for n in range(100):
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
        await asyncio.sleep(0)  # some are in flight now
        proxy.drop_all()  # the connection dies under them
        for n in range(100, 200):
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
        await rec.wait_for(lambda ms: len({m.json()["id"] for m in ms}) >= 200, timeout=10)
        pub.stop(flush_timeout=1)
        await task
    got = ids(rec, topic)
    first_seen = list(dict.fromkeys(got))
    assert first_seen == [f"e-{n}" for n in range(200)]  # none missing, in order
    assert pub.connects >= 2
    assert outbox.pending_events == 0


async def test_events_flow_while_a_thousand_state_topics_keep_changing(broker: Broker):
    outbox = Outbox(100)
    topic = f"{BASE}/acc/trade"
    async with (
        MqttRecorder(broker.host, broker.port, (topic,)) as rec,
        asyncio.TaskGroup() as tg,
    ):
        pub = publisher(broker.host, broker.port, outbox)
        task = tg.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        for n in range(300):
            for market in range(1000):  # every price changes every round
                outbox.set_state(f"{BASE}/market/m{market}/price", b'{"p":"%d"}' % n)
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
            await asyncio.sleep(0.002)
        await rec.wait_for(lambda ms: len(ms) >= 300, timeout=20, what="300 events")
        pub.stop(flush_timeout=1)
        await task
    assert ids(rec, topic) == [f"e-{n}" for n in range(300)]
    assert outbox.dropped == 0


async def test_a_cancelled_publisher_leaves_the_will_not_online(broker: Broker):
    # what happens when any sibling task of the daemon fails: the TaskGroup cancels the publisher
    outbox = Outbox(100)
    pub = publisher(broker.host, broker.port, outbox)
    task = asyncio.create_task(pub.run())
    await asyncio.wait_for(pub.connected.wait(), 5)
    assert (await retained(broker.host, broker.port, f"{BASE}/bridge/state"))[
        f"{BASE}/bridge/state"
    ].json() == {"schema": 1, "state": "online"}
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await _wait_retained_state(broker, {"schema": 1, "state": "offline"})


async def test_offline_not_acknowledged_in_time_still_ends_offline(broker: Broker):
    # a broker that stops answering during the stop: the flush and `offline` time out, the
    # session is aborted (no DISCONNECT), so the broker publishes the will
    outbox = Outbox(100)
    async with TcpProxy(broker.host, broker.port) as proxy:
        pub = publisher(proxy.host, proxy.port, outbox)
        task = asyncio.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        proxy.stall()
        outbox.put_event(f"{BASE}/acc/transaction", event(1), 1, key="e-1")
        pub.stop(flush_timeout=0.2)
        await asyncio.wait_for(task, 5)
        await _wait_retained_state(broker, {"schema": 1, "state": "offline"})
    assert outbox.pending_events + outbox.inflight == 1  # kept, not lost


async def test_a_clean_stop_publishes_offline_and_disconnects(broker: Broker):
    outbox = Outbox(100)
    topic = f"{BASE}/acc/transaction"
    async with MqttRecorder(broker.host, broker.port, (topic,)) as rec:
        pub = publisher(broker.host, broker.port, outbox)
        task = asyncio.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        for n in range(50):
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
        pub.stop(flush_timeout=2)
        await asyncio.wait_for(task, 5)
        await rec.wait_for(lambda ms: len(ms) >= 50)
    await _wait_retained_state(broker, {"schema": 1, "state": "offline"})
    assert [f"e-{n}" for n in range(50)] == ids(rec, topic)
    assert all(f"{BASE}\x1fe-{n}" not in outbox.seen for n in range(1))  # keys are not topics
    assert all(f"e-{n}" in outbox.seen for n in range(50))  # committed on PUBACK


async def _wait_retained_state(broker: Broker, expected: dict[str, str]) -> None:
    topic = f"{BASE}/bridge/state"
    for _ in range(50):
        found = await retained(broker.host, broker.port, topic, quiet=0.1)
        if topic in found and found[topic].json() == expected:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{topic} never became {expected}: {found.get(topic)}")


async def test_ingestion_waits_for_a_connected_broker_that_falls_behind_not_for_a_lost_one(
    broker: Broker,
):
    """``Outbox.room`` (what links await before handing on frames): past ``ingest_limit``
    waiting events a connected broker that does not keep up makes ingestion wait, until half
    are sent; a broker not connected never does (the outbox keeps what comes, up to capacity)."""
    outbox = Outbox(10_000, ingest_limit=10)
    topic = f"{BASE}/acc/trade"
    n = 0

    def put(count: int) -> None:
        nonlocal n
        for _ in range(count):
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
            n += 1

    for _ in range(30):  # no broker yet: taken without waiting
        await asyncio.wait_for(outbox.room(), 1)
        put(1)
    async with (
        MqttRecorder(broker.host, broker.port, (topic,)) as rec,
        TcpProxy(broker.host, broker.port) as proxy,
        asyncio.TaskGroup() as tg,
    ):
        pub = publisher(proxy.host, proxy.port, outbox, max_inflight=1)
        task = tg.create_task(pub.run())
        await rec.wait_for(lambda ms: len(ms) >= 30, timeout=10, what="the first 30")
        proxy.stall()  # connected, but the broker's acknowledgements stop coming
        put(15)
        waiting = asyncio.ensure_future(outbox.room())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # over the limit and the broker behind: ingestion waits
        assert outbox.ingest_waits == 1
        proxy.resume()
        await asyncio.wait_for(waiting, 5)  # it caught up with half of them
        assert outbox.pending_events <= 5
        proxy.stall()
        put(15)
        waiting = asyncio.ensure_future(outbox.room())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        proxy.drop_all()  # the broker is lost (and stays unreachable while stalled)
        await asyncio.wait_for(waiting, 5)
        assert not pub.connected.is_set()
        for _ in range(40):
            await asyncio.wait_for(outbox.room(), 1)  # no waiting while it is unreachable
            put(1)
        proxy.resume()
        await rec.wait_for(lambda ms: len({m.json()["id"] for m in ms}) >= n, timeout=20)
        pub.stop(flush_timeout=1)
        await task
    assert n == 100
    assert list(dict.fromkeys(ids(rec, topic))) == [f"e-{i}" for i in range(n)]
    assert outbox.dropped == 0


async def test_ingestion_waits_a_bounded_time_for_a_broker_that_takes_nothing(
    broker: Broker, caplog
):
    """A connected broker that stops taking events makes links wait ``ingest_wait_max`` at
    most (longer, and upstreams close connections whose pongs sit unread): then it is said,
    the outbox keeps what comes, and nobody waits until the broker catches up."""
    outbox = Outbox(10_000, ingest_limit=10, ingest_wait_max=0.3)
    topic = f"{BASE}/acc/trade"
    async with (
        MqttRecorder(broker.host, broker.port, (topic,)) as rec,
        TcpProxy(broker.host, broker.port) as proxy,
        asyncio.TaskGroup() as tg,
    ):
        pub = publisher(proxy.host, proxy.port, outbox, max_inflight=1, keepalive=30)
        task = tg.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        proxy.stall()
        for n in range(20):
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
        began = asyncio.get_running_loop().time()
        await asyncio.wait_for(outbox.room(), 2)
        assert 0.25 < asyncio.get_running_loop().time() - began < 1.5
        assert (
            "the MQTT broker is 19 events behind and has not taken 14 of them in 0.3 s"
            in caplog.text
        )
        for n in range(20, 500):  # still connected and silent: nobody waits now
            await asyncio.wait_for(outbox.room(), 0.1)
            outbox.put_event(topic, event(n), 1, key=f"e-{n}")
        assert outbox.ingest_waits == 1
        proxy.resume()
        await rec.wait_for(lambda ms: len({m.json()["id"] for m in ms}) >= 500, timeout=20)
        pub.stop(flush_timeout=1)
        await task
    assert list(dict.fromkeys(ids(rec, topic))) == [f"e-{n}" for n in range(500)]


async def test_a_batch_of_publishes_is_acknowledged_without_waiting_for_tcp_timers(broker: Broker):
    """Five events sent in one turn: the broker answers with five PUBACKs, all but the first
    held by its Nagle's algorithm until the bridge's TCP acknowledges, which Linux delays up to
    40 ms when the bridge has nothing to send. The bridge acknowledges at once (TCP_QUICKACK):
    every round is acknowledged in a few ms, not 40 (the median of 20 rounds is compared with
    half that)."""
    outbox = Outbox(1000)
    topic = f"{BASE}/acc/trade"
    async with asyncio.TaskGroup() as tg:
        pub = publisher(broker.host, broker.port, outbox)
        task = tg.create_task(pub.run())
        await asyncio.wait_for(pub.connected.wait(), 5)
        assert await outbox.wait_idle(5)
        rounds = []
        loop = asyncio.get_running_loop()
        for r in range(20):
            began = loop.time()
            for n in range(5):
                outbox.put_event(topic, event(r * 5 + n), 1, key=f"e-{r}-{n}")
            assert await outbox.wait_idle(5)
            rounds.append(loop.time() - began)
            await asyncio.sleep(0.01)
        pub.stop(flush_timeout=1)
        await task
    assert sorted(rounds)[10] < 0.02, [f"{t * 1000:.1f} ms" for t in rounds]


async def test_a_cancellation_swallowed_by_an_aiomqtt_call_still_ends_the_publisher(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
):
    """On Python 3.11 ``asyncio.wait_for``, which aiomqtt waits with, loses a cancellation that
    arrives as the awaited reply comes in. A daemon whose start failed (a webhook port in use)
    cancels its publisher; if a subscribe swallowed that, the publisher published on and the
    daemon hung instead of exiting. The publisher ends all the same."""
    in_subscribe = asyncio.Event()

    async def subscribe_losing_a_cancellation(self: object, *args: object, **kw: object) -> None:
        in_subscribe.set()
        with contextlib.suppress(asyncio.CancelledError):  # what wait_for does in that race
            await asyncio.sleep(0.5)

    monkeypatch.setattr("aiomqtt.Client.subscribe", subscribe_losing_a_cancellation)
    outbox = Outbox(100)
    pub = Publisher(
        MqttSettings(host=broker.host, port=broker.port, base_topic=BASE, reconnect_min=0.02),
        TopicMap(BASE), outbox, info=lambda: b"{}", on_message=lambda t, p: None,
        subscriptions=(f"{BASE}/bridge/request/#",),
    )  # fmt: skip
    task = asyncio.create_task(pub.run())
    await asyncio.wait_for(in_subscribe.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not pub.connected.is_set()
