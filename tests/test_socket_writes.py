"""paho's queued packets in one ``send``: every byte once, in order, partial writes resumed.

Below the publisher (``tests/test_delivery.py`` runs it against real brokers): a real paho
client whose socket is one end of a real socket pair, its packets queued by paho's own
``_packet_queue``, and ``coalesced_write`` in place of paho's ``_packet_write``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.mqtt.pubacks import SUCCESS
from bridge.mqtt.socket_writes import WRITE_INTERNALS, coalesced_write


class CountingSocket:
    """A socket that counts its ``send`` calls."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def client() -> Iterator[tuple[mqtt.Client, CountingSocket, socket.socket, list[int]]]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)
    paho = mqtt.Client(CallbackAPIVersion.VERSION2)
    counting = CountingSocket(ours)
    paho._sock = counting
    paho.on_socket_register_write = lambda *a: None  # queue only; the test writes
    published: list[int] = []

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _props: Any) -> None:
        assert rc is SUCCESS
        published.append(mid)

    paho.on_publish = on_publish
    yield paho, counting, peer, published
    ours.close()
    peer.close()


def queue(paho: mqtt.Client, n: int, size: int, qos: int = 0) -> tuple[bytes, list[Any]]:
    """``n`` PUBLISH-like packets of ``size`` bytes queued the way paho queues them."""
    wire, infos = b"", []
    for mid in range(1, n + 1):
        body = bytes([0x30 | (qos << 1)]) + bytes([mid % 256]) * (size - 1)
        info = mqtt.MQTTMessageInfo(mid)
        paho._packet_queue(mqtt.PUBLISH, bytearray(body), mid, qos, info)
        wire += body
        infos.append(info)
    return wire, infos


def read_all(peer: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += peer.recv(size - len(got))
    return got


def test_queued_packets_leave_in_one_send_and_qos0_ones_are_settled(client):
    paho, sock, peer, published = client
    wire, infos = queue(paho, 50, 40)
    assert coalesced_write(paho, paho._packet_write) == mqtt.MQTT_ERR_SUCCESS
    assert sock.sends == 1
    assert read_all(peer, len(wire)) == wire
    assert published == list(range(1, 51))
    assert all(info.is_published() for info in infos)
    assert not paho._out_packet


def test_a_full_socket_keeps_the_rest_queued_from_the_exact_byte(client):
    paho, _sock, peer, published = client
    wire, infos = queue(paho, 100, 10_000)  # 1 MB: more than the socket takes at once
    coalesced_write(paho, paho._packet_write)
    first = len(published)
    assert 0 < first < 100
    assert published == list(range(1, first + 1))  # only packets fully written are settled
    assert len(paho._out_packet) == 100 - first
    got = b""
    while paho._out_packet:
        got += peer.recv(1_000_000)
        coalesced_write(paho, paho._packet_write)
    got += read_all(peer, len(wire) - len(got))
    assert got == wire  # every byte once, in order
    assert published == list(range(1, 101))
    assert all(info.is_published() for info in infos)


def test_qos1_packets_wait_for_their_puback(client):
    paho, _sock, peer, published = client
    wire, infos = queue(paho, 5, 30, qos=1)
    coalesced_write(paho, paho._packet_write)
    assert read_all(peer, len(wire)) == wire
    assert published == []  # settled by the PUBACK, not by the write
    assert not any(info.is_published() for info in infos)


def test_a_queue_with_a_disconnect_is_paho_own(client):
    paho, sock, _peer, _published = client
    calls: list[int] = []
    queue(paho, 3, 20)
    paho._packet_queue(mqtt.DISCONNECT, bytearray(b"\xe0\x00"), 0, 0)

    def original() -> int:
        calls.append(len(paho._out_packet))
        return mqtt.MQTT_ERR_SUCCESS

    coalesced_write(paho, original)
    assert calls == [4]
    assert sock.sends == 0


def test_the_paho_internals_coalesced_write_uses_are_there():
    paho = mqtt.Client(CallbackAPIVersion.VERSION2)
    assert [name for name in WRITE_INTERNALS if not hasattr(paho, name)] == []
