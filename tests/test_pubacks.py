"""The MQTT 3.1.1 PUBACK fast path against a real broker: paho's bookkeeping stays whole."""

from __future__ import annotations

import asyncio
import socket

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.mqtt.pubacks import FastPubacks
from bridge.mqtt.socket_reads import BufferedSocket
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


async def test_a_run_of_pubacks_in_the_read_buffer_is_settled_at_once():
    """Below the broker: a paho client on a socket pair, a run of ten PUBACKs (the first for a
    publish paho made, nine for messages it never saw) and a PINGRESP in one segment. paho's
    message is settled by paho's bookkeeping, the nine reach ``on_ack`` in order, all but the
    first (read by paho's way, which fills the buffer) straight from the buffer, and the
    PINGRESP is still paho's to read."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    client = aiomqtt.Client("127.0.0.1", 1)
    paho = client._client
    fast = FastPubacks(client)
    assert fast.install()
    paho._sock = BufferedSocket(ours)
    paho.on_socket_register_write = lambda *a: None
    published: list[int] = []
    paho.on_publish = lambda _c, _u, mid, *_rest: published.append(mid)
    acked: list[int] = []
    fast.on_ack = acked.append
    try:
        info = paho.publish("t/paho", b"x", qos=1)
        assert info.mid == 1 and 1 in paho._out_messages
        paho._last_bytes_received = 0.0
        peer.sendall(b"".join(bytes([0x40, 0x02, 0, mid]) for mid in range(1, 11)) + b"\xd0\x00")
        while paho.loop_read() == mqtt.MQTT_ERR_SUCCESS and paho._sock.pending():
            pass
        assert published == [1] and paho._out_messages == {}
        assert acked == list(range(2, 11))
        assert (fast.handled, fast.batched) == (10, 9)
        assert paho._sock.pending() == 0  # the PINGRESP was read too
        assert paho._last_bytes_received > 0
    finally:
        paho._sock = None
        ours.close()
        peer.close()
