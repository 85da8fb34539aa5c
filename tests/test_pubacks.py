"""The MQTT 3.1.1 PUBACK fast path against a real broker: paho's bookkeeping stays whole."""

from __future__ import annotations

import asyncio

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.mqtt.pubacks import FastPubacks
from bridge.testing.broker import Broker
from bridge.testing.recorder import MqttRecorder


async def test_pubacks_settle_awaited_publishes_and_release_paho_queue(broker: Broker):
    """50 QoS 1 publishes through a window of 5: each ``publish`` returns on its PUBACK (the
    callbacks ran), paho sends what it queued past the window (its in-flight count went down),
    and nothing stays in paho's table of unacknowledged messages."""
    async with MqttRecorder(broker.host, broker.port, ("fast/#",)) as rec:
        client = aiomqtt.Client(broker.host, broker.port, max_inflight_messages=5)
        fast = FastPubacks(client)
        assert fast.install()
        async with client:
            await asyncio.wait_for(
                asyncio.gather(*(client.publish(f"fast/{n}", b"%d" % n, qos=1) for n in range(50))),
                10,
            )
            paho = client._client
            assert fast.handled == 50
            assert paho._out_messages == {}
            assert paho._inflight_messages == 0
        await rec.wait_for(lambda ms: len(ms) >= 50, timeout=5, what="50 messages")
    assert sorted(int(m.payload) for m in rec.messages) == list(range(50))


async def test_mqtt5_clients_keep_paho_handler(broker: Broker):
    """MQTT 5 PUBACKs carry a reason code and properties: paho decodes them as before."""
    client = aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5)
    fast = FastPubacks(client)
    assert not fast.install()
    assert "_handle_pubackcomp" not in vars(client._client)
    if broker.name == "amqtt":
        return  # amqtt speaks MQTT 3.1.1 only
    async with client:
        await asyncio.wait_for(client.publish("fast/v5", b"x", qos=1), 5)
    assert fast.handled == 0


async def test_the_paho_internals_the_fast_path_uses_are_there():
    """A paho upgrade that renames them leaves the client alone (``install`` is False); this
    says so in CI instead of silently losing the fast path."""
    client = aiomqtt.Client("127.0.0.1", 1)
    assert FastPubacks(client).install()
    assert mqtt.Client._handle_pubackcomp is not vars(client._client)["_handle_pubackcomp"]
