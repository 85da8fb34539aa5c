"""Cheaper socket reads for aiomqtt's paho client: one ``recv`` per readable socket, not per byte.

paho reads every packet with at least three ``recv`` calls (the command byte, each byte of the
remaining length, the body) and one more that finds the socket empty: four system calls for each
4-byte PUBACK, the packet the bridge receives most. Here paho's socket is wrapped, as soon as it
is opened, in a buffer that takes whatever the kernel holds in one ``recv`` and serves paho's small
reads from memory.

``pending()`` tells what the buffer still holds: aiomqtt's read callback already calls
``loop_read`` again while a socket reports pending bytes (it does so for TLS sockets), so nothing
buffered waits for the socket to become readable again.

Acknowledgements come back without waiting for TCP's timers. A broker that answers several
publishes read at once writes one PUBACK each, and Nagle's algorithm on its side (mosquitto's
default) holds all but the first until the bridge's TCP acknowledges it, which Linux delays up
to 40 ms when the bridge has nothing to send: every turn that sent three or more publishes
waited 40 ms for their PUBACKs. So each ``recv`` that got data re-arms ``TCP_QUICKACK`` (Linux;
it does not stay set), and the socket sends without Nagle's delay (``TCP_NODELAY``: the bridge
batches its own writes).
"""

from __future__ import annotations

import socket
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

CHUNK = 65_536
QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def _set(sock: Any, option: int | None) -> bool:
    """Turn a TCP option on; False where there is no such option (not Linux, not TCP)."""
    if option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)
    except (OSError, AttributeError):
        return False
    return True


class BufferedSocket:
    """A socket (plain or TLS) whose ``recv`` is served from a buffer; the rest is the socket's."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0
        self._quickack = _set(sock, socket.TCP_NODELAY) and _set(sock, QUICKACK)

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; raises what the socket raises when it has nothing (EAGAIN)."""
        if self._pos >= len(self._buffer):
            data: bytes = self._sock.recv(max(size, CHUNK))
            if self._quickack and data:
                self._sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            if len(data) <= size:
                return data  # also b"": the connection closed
            self._buffer, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._buffer))
        return self._buffer[start : self._pos]

    def take_pubacks(self) -> list[int]:
        """The message ids of the whole MQTT 3.1.1 PUBACKs at the head of the buffer, taken out
        of it (a broker answers a batch of publishes with a run of them)."""
        buffer, pos = self._buffer, self._pos
        end = len(buffer) - 3
        start = pos
        while pos < end and buffer[pos] == 0x40 and buffer[pos + 1] == 0x02:
            pos += 4
        self._pos = pos
        return [(buffer[i + 2] << 8) | buffer[i + 3] for i in range(start, pos, 4)]

    def pending(self) -> int:
        """Bytes readable without the kernel: what is buffered, and what TLS has decrypted."""
        buffered = len(self._buffer) - self._pos
        inner = getattr(self._sock, "pending", None)
        return buffered + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedReads:
    """Wraps one client's paho socket in a ``BufferedSocket`` whenever paho opens it."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client

    def install(self) -> None:
        """Take over paho's socket-open callback (before connecting), keeping aiomqtt's."""
        paho = self.client._client
        aiomqtt_on_open = paho.on_socket_open

        def on_open(client: mqtt.Client, userdata: Any, sock: Any) -> None:
            # paho calls this right after it stored the socket, before it reads from it
            client._sock = BufferedSocket(sock)
            if aiomqtt_on_open is not None:
                aiomqtt_on_open(client, userdata, sock)

        paho.on_socket_open = on_open
