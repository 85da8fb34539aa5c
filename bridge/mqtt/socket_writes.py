"""Cheaper socket writes for aiomqtt's paho client: what one turn of the loop queued, sent at once.

aiomqtt lets paho ask for "tell me when the socket is writable" on every packet, and answers each
time through ``call_soon_threadsafe`` (a write to the loop's self-pipe) plus ``add_writer`` and
``remove_writer`` (two ``epoll_ctl``); paho also writes a byte to a socket pair that only its own
threaded loop reads. Per published event that is five system calls besides the ``send`` itself.

Here a packet queued on the loop's thread schedules one write at the end of the current turn
(``call_soon``): everything queued in that turn goes out together, and the writability watch is
set only when the socket is full. Calls from another thread (paho's connect runs in an executor)
keep the thread-safe path.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt


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

    def _register(self, paho: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._schedule)
        else:
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
