"""MQTT 3.1.1 PUBLISH packets queued for paho without paho's per-message objects.

paho's ``publish`` makes an ``MQTTMessageInfo`` per message (with a ``threading.Condition`` of
its own), for QoS 1 an ``MQTTMessage`` kept in its table of unacknowledged messages, formats a
debug log call and builds the packet a field at a time: ~5 µs per event, about a twentieth of
the daemon's CPU per event at saturation. The publisher keeps its own window of messages in
flight and settles them itself, so here the packet is built in one go and queued where paho
queues its own (``_out_packet``, written by ``BatchedWrites``), with a message id from paho's
counter (no clash with aiomqtt's own publishes, which still go through paho). A QoS 0 packet
is settled when written, through paho's ``on_publish`` like paho's own; a QoS 1 packet's PUBACK
reaches ``FastPubacks.on_ack`` (paho's table does not know it).

This uses paho internals (``FAST_INTERNALS``), pinned with paho in ``uv.lock``; ``install``
is False (the publisher then calls paho's ``publish``) when any is missing, without
``FastPubacks``, under MQTT 5, or while paho's logger is at DEBUG (paho's path logs every
packet).
"""

from __future__ import annotations

import logging

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.mqtt.pubacks import FastPubacks
from bridge.mqtt.socket_writes import BatchedWrites

FAST_INTERNALS = ("_out_packet", "_mid_generate", "_sock", "_protocol", "_logger",
                  "_raise_for_invalid_topic")  # fmt: skip
"""What ``FastPublish`` uses of paho's client."""

MAX_PAYLOAD = 268_435_455
"""The largest payload an MQTT packet's remaining length can carry (less its headers)."""


class _Untracked(mqtt.MQTTMessageInfo):
    """The info of every fast packet: nobody waits on it, so being written changes nothing."""

    def _set_as_published(self) -> None:
        pass


UNTRACKED = _Untracked(0)


def publish_packet(topic: bytes, payload: bytes, qos: int, retain: bool, mid: int) -> bytearray:
    """An MQTT 3.1.1 PUBLISH packet (never a duplicate: a retry is a new message)."""
    remaining = 2 + len(topic) + len(payload) + (2 if qos else 0)
    head = bytearray((mqtt.PUBLISH | (qos << 1) | retain,))
    while remaining > 0x7F:
        head.append((remaining & 0x7F) | 0x80)
        remaining >>= 7
    head.append(remaining)
    head += len(topic).to_bytes(2, "big")
    head += topic
    if qos:
        head += mid.to_bytes(2, "big")
    head += payload
    return head


class FastPublish:
    """Queues PUBLISH packets on one client's paho instance."""

    def __init__(self, client: aiomqtt.Client, writes: BatchedWrites, acks: FastPubacks) -> None:
        self.client = client
        self.writes = writes
        self.acks = acks
        """Where a fast packet's PUBACK arrives (``on_ack``)."""
        self.published = 0
        """Packets queued by the fast path."""

    def install(self) -> bool:
        """True when the fast path can be used on this client (checked before connecting)."""
        paho = self.client._client
        if not self.acks.installed or not all(hasattr(paho, name) for name in FAST_INTERNALS):
            return False
        logger = paho._logger
        debug = logger is not None and logger.isEnabledFor(logging.DEBUG)
        return paho._protocol != mqtt.MQTTv5 and not debug

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """Queue one PUBLISH and return its message id; None when not connected.

        ValueError, as paho's ``publish``, for a topic or payload no broker would take.
        """
        paho = self.client._client
        encoded = topic.encode()
        if not encoded:
            raise ValueError("Invalid topic.")  # paho's words, as for the rest
        paho._raise_for_invalid_topic(encoded)  # no wildcard, at most 65,535 bytes
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("Payload too large.")
        if paho._sock is None:
            return None
        mid = paho._mid_generate()
        packet = publish_packet(encoded, payload, qos, retain, mid)
        paho._out_packet.append(
            {
                "command": mqtt.PUBLISH,
                "mid": mid,
                "qos": qos,
                "pos": 0,
                "to_process": len(packet),
                "packet": packet,
                "info": UNTRACKED,
            }
        )
        self.published += 1
        self.writes.queued()
        return mid
