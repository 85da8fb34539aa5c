"""PUBLISH packets queued without paho's per-message objects: paho's bytes, a real broker's
acknowledgements, and paho's own path wherever the fast one cannot be used.

The publisher uses this path for every event (``tests/test_delivery.py`` and the daemon tests
count what it delivers by id); here it is checked below the publisher.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.fast_publish import FAST_INTERNALS, FastPublish, publish_packet
from bridge.mqtt.pubacks import FastPubacks
from bridge.mqtt.socket_writes import BatchedWrites
from bridge.testing.broker import Broker
from bridge.testing.recorder import MqttRecorder


@pytest.fixture
def paho_client() -> Iterator[mqtt.Client]:
    """A paho client on one end of a socket pair, queueing only (nothing writes)."""
    ours, peer = socket.socketpair()
    paho = mqtt.Client(CallbackAPIVersion.VERSION2)
    paho._sock = ours
    paho.on_socket_register_write = lambda *a: None
    yield paho
    ours.close()
    peer.close()


# remaining lengths around the 1-, 2- and 3-byte encodings (127/128, 16383/16384)
SIZES = [0, 1, 100, 125 - 13, 126 - 13, 127 - 13, 16_381 - 13, 16_382 - 13, 16_383 - 13, 70_000]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("qos", "retain"), [(0, False), (1, False), (1, True), (0, True)])
def test_packets_are_byte_for_byte_paho_own(paho_client: mqtt.Client, size, qos, retain):
    """The same topic, payload, QoS, retain flag and message id give paho's exact bytes."""
    topic = "fin2mqtt/hib/€/trade"  # 11 + 3 bytes, non-ASCII: UTF-8 length, not characters
    payload = bytes(i % 251 for i in range(size))
    info = paho_client.publish(topic, payload, qos, retain)
    assert info.rc == mqtt.MQTT_ERR_SUCCESS
    paho_packet = paho_client._out_packet[-1]["packet"]
    assert publish_packet(topic.encode(), payload, qos, retain, info.mid) == paho_packet


def fast_client(client: aiomqtt.Client) -> tuple[FastPublish, FastPubacks]:
    writes = BatchedWrites(client, asyncio.get_running_loop())
    writes.install()
    acks = FastPubacks(client)
    acks.install()
    return FastPublish(client, writes, acks), acks


async def test_a_broker_gets_every_packet_and_acknowledges_the_qos1_ones(broker: Broker):
    """60 events, QoS 0 and 1 interleaved, and a retained one, alongside aiomqtt's own QoS 1
    publishes through paho (their ids come from the same counter): each arrives once with its
    QoS and retain flag, QoS 0 ones are settled when written, QoS 1 ones by their PUBACK, and
    paho's table of unacknowledged messages holds nothing of ours."""
    async with MqttRecorder(broker.host, broker.port, ("fast/#",)) as rec:
        client = aiomqtt.Client(broker.host, broker.port)
        fast, acks = fast_client(client)
        assert fast.install()
        async with client:
            paho = client._client
            written: list[int] = []
            acked: list[int] = []
            aiomqtt_on_publish = paho.on_publish

            def on_publish(c: Any, userdata: Any, mid: int, *rest: Any) -> None:
                if mid in sent:
                    written.append(mid)
                elif aiomqtt_on_publish is not None:
                    aiomqtt_on_publish(c, userdata, mid, *rest)

            paho.on_publish = on_publish
            acks.on_ack = acked.append
            sent: dict[int, int] = {}
            own = []
            for n in range(60):
                qos = n % 2
                mid = fast.publish(f"fast/{n}", b"%d" % n, qos, False)
                assert mid is not None and mid not in sent
                sent[mid] = qos
                if n % 10 == 0:
                    own.append(asyncio.create_task(client.publish(f"fast/own/{n}", b"own", 1)))
            retained = fast.publish("fast/state", b"kept", 1, True)
            assert retained is not None
            sent[retained] = 1
            await asyncio.wait_for(asyncio.gather(*own), 5)

            async def settled() -> None:
                while len(written) + len(acked) < len(sent):
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(settled(), 5)
            assert sorted(written) == sorted(m for m, q in sent.items() if q == 0)
            assert sorted(acked) == sorted(m for m, q in sent.items() if q == 1)
            assert paho._out_messages == {}
            assert fast.published == 61
        await rec.wait_for(lambda ms: len(ms) >= 61 + 6, timeout=5, what="67 messages")
    got = {m.topic: m for m in rec.messages}
    assert len(rec.messages) == 67  # once each
    for n in range(60):
        message = got[f"fast/{n}"]
        # amqtt delivers at the subscription's QoS (1), not the lower of the two
        qos = 1 if broker.name == "amqtt" else n % 2
        assert (message.payload, message.qos, message.retain) == (b"%d" % n, qos, False)
    assert (got["fast/state"].payload, got["fast/state"].retain) == (b"kept", False)  # live
    assert {t for t in got if t.startswith("fast/own/")} == {
        f"fast/own/{n}" for n in range(0, 60, 10)
    }


async def test_topics_and_payloads_no_broker_takes_are_refused_before_queueing():
    client = aiomqtt.Client("127.0.0.1", 1)
    fast, _acks = fast_client(client)
    client._client._sock = object()  # "connected": nothing is written in this test
    try:
        for topic in ("", "a/+/b", "a/#", "x" * 65_536):
            with pytest.raises(ValueError, match="topic"):
                fast.publish(topic, b"x", 1, False)
    finally:
        client._client._sock = None
    assert not client._client._out_packet
    assert fast.published == 0


async def test_not_connected_queues_nothing():
    client = aiomqtt.Client("127.0.0.1", 1)
    fast, _acks = fast_client(client)
    assert fast.publish("a/b", b"x", 1, False) is None
    assert not client._client._out_packet


async def test_paho_own_path_under_mqtt5_without_fast_pubacks_or_at_debug():
    """MQTT 5 packets carry properties; without ``FastPubacks`` nobody would hear a fast
    packet's PUBACK; at DEBUG paho's path logs every packet."""
    v5 = aiomqtt.Client("127.0.0.1", 1, protocol=aiomqtt.ProtocolVersion.V5)
    assert not fast_client(v5)[0].install()
    plain = aiomqtt.Client("127.0.0.1", 1)
    writes = BatchedWrites(plain, asyncio.get_running_loop())
    assert not FastPublish(plain, writes, FastPubacks(plain)).install()  # not installed
    logger = logging.getLogger("test.fast_publish.debug")
    logger.setLevel(logging.DEBUG)
    debug = aiomqtt.Client("127.0.0.1", 1, logger=logger)
    assert not fast_client(debug)[0].install()
    logger.setLevel(logging.INFO)
    assert fast_client(debug)[0].install()


async def test_the_paho_internals_the_fast_path_uses_are_there():
    """A paho upgrade that renames them leaves the publisher on paho's ``publish`` (install is
    False); this says so in CI instead of silently losing the fast path."""
    client = aiomqtt.Client("127.0.0.1", 1)
    assert all(hasattr(client._client, name) for name in FAST_INTERNALS)
    assert fast_client(client)[0].install()
