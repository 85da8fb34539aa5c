"""MQTT 3.1.1 PUBACKs handled without paho's per-packet objects.

paho 2.2 decodes every PUBACK into a fresh ``ReasonCode`` and ``Properties`` (MQTT 5 notions,
always "Success" and empty under 3.1.1) inside an exception-converting wrapper: about a twelfth
of the daemon's CPU per event at 1,000 events/s, for a packet whose whole content is a 2-byte
packet id. Here a 3.1.1 client's PUBACK handler reads the id itself and settles the message
through paho's own ``_do_on_publish`` (its callbacks, its in-flight count, its queued messages),
handing over one shared "Success" code and empty properties; the PUBACK of a message paho never
saw (queued by ``FastPublish``) goes to ``on_ack``. Anything else (MQTT 5, PUBCOMP, a malformed
packet) goes to paho's handler.

paho also reads each packet on its own: a command byte, the length bytes and the body, each a
call through its error handling (~11 % of the CPU at QoS 1 saturation). While no packet is half
read, the PUBACKs whole at the head of the read buffer (``BufferedSocket.take_pubacks``) are
settled in one go, the rest left to paho; the keepalive's "last bytes received" is set as paho
sets it.

This uses paho internals (``_handle_pubackcomp``, ``_in_packet``, ``_out_messages``,
``_do_on_publish``), pinned with paho in ``uv.lock``; ``install`` leaves the client alone when
any of them is missing, and ``tests/test_pubacks.py`` checks them against the installed paho.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bridge.mqtt.socket_reads import BufferedSocket

INTERNALS = ("_handle_pubackcomp", "_in_packet", "_out_messages", "_out_message_mutex",
             "_do_on_publish", "_protocol", "_logger", "_easy_log", "_packet_read",
             "_msgtime_mutex", "_last_bytes_received")  # fmt: skip
"""What the fast path uses of paho's client."""

SUCCESS = ReasonCode(PacketTypes.PUBACK)
"""The one reason code of every MQTT 3.1.1 acknowledgement, shared (callbacks only read it)."""
NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
"""The properties of every MQTT 3.1.1 acknowledgement: none."""


class FastPubacks:
    """Takes over one client's PUBACK handling under MQTT 3.1.1."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.handled = 0
        """PUBACKs settled by the fast path."""
        self.batched = 0
        """Of those, PUBACKs taken straight from the read buffer (``take_pubacks``)."""
        self.installed = False
        self.on_ack: Callable[[int], object] | None = None
        """Hears the PUBACK of a message id paho has no message for (``FastPublish``'s)."""

    def install(self) -> bool:
        """Replace paho's handler on this client (before connecting); False when left alone."""
        paho = self.client._client
        if not all(hasattr(paho, name) for name in INTERNALS) or paho._protocol == mqtt.MQTTv5:
            return False
        original = paho._handle_pubackcomp
        original_read = paho._packet_read
        logger = paho._logger
        debug = logger is not None and logger.isEnabledFor(logging.DEBUG)

        def settle(mid: int) -> Any:
            if debug:
                paho._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", mid)
            self.handled += 1
            with paho._out_message_mutex:
                if mid in paho._out_messages:
                    return paho._do_on_publish(mid, SUCCESS, NO_PROPERTIES)
            if self.on_ack is not None:  # queued by FastPublish: paho does not know it
                self.on_ack(mid)
            return mqtt.MQTT_ERR_SUCCESS

        def handle(cmd: Literal["PUBACK", "PUBCOMP"]) -> Any:
            packet = paho._in_packet["packet"]
            if cmd != "PUBACK" or len(packet) != 2:
                return original(cmd)
            return settle((packet[0] << 8) | packet[1])

        def packet_read() -> Any:
            sock = paho._sock
            if paho._in_packet["command"] == 0 and isinstance(sock, BufferedSocket):
                mids = sock.take_pubacks()  # no packet half read: the buffer's head is whole
                if mids:
                    self.batched += len(mids)
                    for mid in mids:
                        settle(mid)
                    with paho._msgtime_mutex:
                        paho._last_bytes_received = mqtt.time_func()
                    return mqtt.MQTT_ERR_SUCCESS
            return original_read()

        paho._handle_pubackcomp = handle  # type: ignore[method-assign]
        paho._packet_read = packet_read  # type: ignore[method-assign]
        self.installed = True
        return True
