"""Cheaper socket writes for aiomqtt's paho client: what one turn of the loop queued, sent at once.

aiomqtt lets paho ask for "tell me when the socket is writable" on every packet, and answers each
time through ``call_soon_threadsafe`` (a write to the loop's self-pipe) plus ``add_writer`` and
``remove_writer`` (two ``epoll_ctl``); paho also writes a byte to a socket pair that only its own
threaded loop reads. Per published event that is five system calls besides the ``send`` itself.

Here a packet queued on the loop's thread schedules one write at the end of the current turn
(``call_soon``): everything queued in that turn goes out together, and the writability watch is
set only when the socket is full. Calls from another thread (paho's connect runs in an executor)
keep the thread-safe path.

"Together" means one ``send``: paho's ``_packet_write`` sends its queued packets one system call
each and, for every QoS 0 publish written, builds a fresh MQTT 5 ``ReasonCode`` and
``Properties`` for its callback (a sixth of the daemon's CPU at QoS 0 saturation, both counted).
``coalesced_write`` does what it does for a queue of whole packets in one ``send``, sharing one
"Success" code; a DISCONNECT in the queue, a callback API other than paho's version 2, or paho
internals gone (``WRITE_INTERNALS``) leave paho's own.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bridge.mqtt.pubacks import NO_PROPERTIES, SUCCESS

WRITE_INTERNALS = ("_packet_write", "_out_packet", "_sock_send", "_callback_mutex",
                   "_in_callback_mutex", "_callback_api_version", "_userdata", "_easy_log",
                   "suppress_exceptions")  # fmt: skip
"""What ``coalesced_write`` uses of paho's client."""
_TYPE = 0xF0


class BatchedWrites:
    """Replaces aiomqtt's write-readiness callbacks on one client's paho instance."""

    def __init__(self, client: aiomqtt.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self._thread = threading.get_ident()
        self._scheduled = False
        self._watching: int | None = None

    def install(self) -> None:
        """Take over from aiomqtt (before connecting)."""
        paho = self.client._client
        paho.on_socket_register_write = self._register
        paho.on_socket_unregister_write = self._unregister
        if (
            all(hasattr(paho, name) for name in WRITE_INTERNALS)
            and paho._callback_api_version == CallbackAPIVersion.VERSION2
        ):
            original = paho._packet_write
            paho._packet_write = lambda: coalesced_write(paho, original)  # type: ignore[method-assign]

    def _register(self, paho: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._schedule)
        else:
            self.queued()

    def queued(self) -> None:
        """A packet was queued on the loop's thread (by paho, or by ``FastPublish``)."""
        if self._watching is None:  # else the socket is full: its writability calls _write
            self._schedule()

    def _unregister(self, _paho: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._unwatch)
        else:
            self._unwatch()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._write)

    def _write(self) -> None:
        self._scheduled = False
        paho = self.client._client
        sockpair = paho._sockpairW
        if sockpair is not None:
            paho._sockpairW = None
            sockpair.close()
        try:
            paho.loop_write()
        except Exception as exc:  # noqa: BLE001 - a broken connection, as aiomqtt treats it
            self._fail(exc)
            return
        sock = paho.socket()
        if paho.want_write() and sock is not None:
            self._watch(sock.fileno())  # the socket is full: continue when it drains

    def _watch(self, fd: int) -> None:
        if self._watching != fd:
            self._unwatch()
            self.loop.add_writer(fd, self._write)
            self._watching = fd

    def _unwatch(self) -> None:
        if self._watching is not None:
            self.loop.remove_writer(self._watching)
            self._watching = None

    def _fail(self, exc: Exception) -> None:
        self._unwatch()
        disconnected = self.client._disconnected
        if not disconnected.done():
            disconnected.set_exception(exc)


def coalesced_write(paho: mqtt.Client, original: Any) -> MQTTErrorCode:
    """paho's ``_packet_write`` with every queued packet in one ``send``."""
    out = paho._out_packet
    if len(out) < 2 or any(p["command"] & _TYPE == mqtt.DISCONNECT for p in out):
        return original()  # type: ignore[no-any-return]
    packets = list(out)
    out.clear()
    data = b"".join([p["packet"][p["pos"] :] if p["pos"] else p["packet"] for p in packets])
    try:
        sent = paho._sock_send(data)
    except (AttributeError, ValueError):
        out.extendleft(reversed(packets))
        return mqtt.MQTT_ERR_SUCCESS
    except BlockingIOError:
        out.extendleft(reversed(packets))
        return mqtt.MQTT_ERR_AGAIN
    except OSError as err:
        out.extendleft(reversed(packets))
        paho._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
        return mqtt.MQTT_ERR_CONN_LOST
    for i, packet in enumerate(packets):
        if sent < packet["to_process"]:  # the socket is full: the rest waits
            packet["to_process"] -= sent
            packet["pos"] += sent
            out.extendleft(reversed(packets[i:]))
            break
        sent -= packet["to_process"]
        packet["pos"] += packet["to_process"]
        packet["to_process"] = 0
        if packet["command"] & _TYPE == mqtt.PUBLISH and packet["qos"] == 0:
            _published(paho, packet)
    return mqtt.MQTT_ERR_SUCCESS


def _published(paho: mqtt.Client, packet: Any) -> None:
    """What paho does for a QoS 0 publish written out: its callback, its info settled."""
    with paho._callback_mutex:
        on_publish: Any = paho.on_publish
    if on_publish:
        with paho._in_callback_mutex:
            try:
                on_publish(paho, paho._userdata, packet["mid"], SUCCESS, NO_PROPERTIES)
            except Exception as err:
                paho._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_publish: %s", err)
                if not paho.suppress_exceptions:
                    raise
    packet["info"]._set_as_published()
