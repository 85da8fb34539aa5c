"""Cheaper socket reads for aiomqtt's paho client: one ``recv`` per readable socket, not per byte.

paho reads every packet with at least three ``recv`` calls (the command byte, each byte of the
remaining length, the body) and one more that finds the socket empty: four system calls for each
4-byte PUBACK, the packet the bridge receives most. Here paho's socket is wrapped, as soon as it
is opened, in a buffer that takes whatever the kernel holds in one ``recv`` and serves paho's small
reads from memory.

``pending()`` tells what the buffer still holds: aiomqtt's read callback already calls
``loop_read`` again while a socket reports pending bytes (it does so for TLS sockets), so nothing
buffered waits for the socket to become readable again.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

CHUNK = 65_536


class BufferedSocket:
    """A socket (plain or TLS) whose ``recv`` is served from a buffer; the rest is the socket's."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; raises what the socket raises when it has nothing (EAGAIN)."""
        if self._pos >= len(self._buffer):
            data: bytes = self._sock.recv(max(size, CHUNK))
            if len(data) <= size:
                return data  # also b"": the connection closed
            self._buffer, self._pos = data, 0
        start = self._pos
        self._pos = min(start + size, len(self._buffer))
        return self._buffer[start : self._pos]

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
