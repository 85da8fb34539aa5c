"""Publisher throughput at QoS 1 into mosquitto, against a plain aiomqtt loop, interleaved."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.stats import summary
from bridge.config.settings import MqttSettings
from bridge.mqtt.publisher import Publisher
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.journal import Journal
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.persister import Persister
from bridge.testing.broker import Broker

PAYLOAD = (
    b'{"schema":1,"provider":"bench","account":"a","id":"tx-000000","kind":"transaction",'
    b'"type":"deposit","asset":"USD","amount":"123.450000","direction":"in","details":{}}'
)


async def plain_awaiting(broker: Broker, n: int) -> float:
    """The naive loop: one ``await client.publish`` after the other."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        start = time.perf_counter()
        for i in range(n):
            await client.publish(f"plain/{i % 10}", PAYLOAD, qos=1)
        return n / (time.perf_counter() - start)


async def plain_window(broker: Broker, n: int, window: int = 50) -> float:
    """The "ideal" loop: ``window`` publishes in flight, no outbox, no bookkeeping."""
    async with aiomqtt.Client(broker.host, broker.port, max_inflight_messages=window) as client:
        client.pending_calls_threshold = window + 16
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                await client.publish(f"plain/{i % 10}", PAYLOAD, qos=1)

        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(window):
                tg.create_task(worker())
        return n / (time.perf_counter() - start)


async def publisher(broker: Broker, n: int, state_dir: Path | None = None) -> float:
    """fin2mqtt's outbox + publisher: events queued, drained until every one is acknowledged.

    With ``state_dir`` the outbox is durable (journal + persister, as in the daemon): the burst
    is written to disk while it drains, the worst case for the journal.
    """
    settings = MqttSettings(host=broker.host, port=broker.port, base_topic="bench")
    outbox = Outbox(capacity=n + 10)
    topics = TopicMap("bench")
    pub = Publisher(settings, topics, outbox, lambda: b"{}", lambda _t, _p: None, ())
    journal = None
    if state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
        journal = Journal(state_dir, 100_000)
        journal.open()
        outbox.persistent = outbox.seen.persistent = True
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(pub.run())
        writer = tg.create_task(Persister(journal, outbox).run()) if journal else None
        await pub.connected.wait()
        start = time.perf_counter()
        for i in range(n):
            outbox.put_event(f"bench/events/{i % 10}", PAYLOAD, 1, key=f"tx-{i}")
        await outbox.wait_idle(600)
        rate = n / (time.perf_counter() - start)
        pub.stop(1)
        await task
        if writer is not None:
            writer.cancel()
    if journal is not None:
        journal.close()
    return rate


async def run(workdir: Path, n: int, rounds: int) -> dict[str, Any]:
    """Interleave the three loops over ``rounds`` rounds; returns rates and ratios."""
    from bridge.testing.broker import make_broker

    broker = make_broker(workdir / "broker")
    broker.start()
    rates: dict[str, list[float]] = {
        "awaiting": [], "window50": [], "publisher": [], "durable": []
    }  # fmt: skip
    try:
        for _ in range(rounds):
            rates["awaiting"].append(await plain_awaiting(broker, n))
            rates["publisher"].append(await publisher(broker, n))
            rates["window50"].append(await plain_window(broker, n))
            rates["durable"].append(await publisher(broker, n, workdir / "state"))
    finally:
        broker.stop()
    ratio_durable = [d / p for d, p in zip(rates["durable"], rates["publisher"], strict=True)]
    ratio_awaiting = [p / a for p, a in zip(rates["publisher"], rates["awaiting"], strict=True)]
    ratio_window = [p / w for p, w in zip(rates["publisher"], rates["window50"], strict=True)]
    print(f"QoS 1 publish, {n:,} messages x {rounds} rounds, {broker.name} (msg/s)")
    print(f"  plain aiomqtt, each publish awaited : {summary(rates['awaiting'])}")
    print(f"  plain aiomqtt, 50 in flight         : {summary(rates['window50'])}")
    print(f"  fin2mqtt outbox + publisher         : {summary(rates['publisher'])}")
    print(f"  ratio vs awaited loop               : {summary(ratio_awaiting, '{:.2f}')}")
    print(f"  ratio vs 50-in-flight loop          : {summary(ratio_window, '{:.2f}')}")
    print(f"  durable outbox (burst written)      : {summary(rates['durable'])}")
    print(f"  durable vs memory only              : {summary(ratio_durable, '{:.2f}')}")
    return {
        "durable_vs_memory": statistics.median(ratio_durable),
        "publisher_rates": rates,
        "publisher_vs_awaiting": statistics.median(ratio_awaiting),
        "publisher_vs_window50": statistics.median(ratio_window),
    }
