"""The broker connection: will, birth, re-publish of state, pipelined publishing, reconnects.

This is the only module that imports aiomqtt. One ``aiomqtt.Client`` is made per connection, so
nothing paho queued on a dead connection is sent twice behind the outbox's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt

from bridge.config.settings import MqttSettings
from bridge.links.backoff import Backoff
from bridge.mqtt.fast_publish import FastPublish
from bridge.mqtt.pubacks import FastPubacks
from bridge.mqtt.socket_reads import BufferedReads
from bridge.mqtt.socket_writes import BatchedWrites
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.outbox import Message, Outbox

log = logging.getLogger(__name__)

ONLINE = b'{"schema":1,"state":"online"}'
OFFLINE = b'{"schema":1,"state":"offline"}'
OFFLINE_TIMEOUT = 1.0
"""How long the acknowledgement of ``offline`` may take on a clean stop (reserved in the budget)."""
HEALTHY_SESSION = 10.0
"""A connection that lasted this long resets the reconnect backoff."""


class _Stopped(Exception):
    """Raised inside a session to end it after the shutdown flush."""


class Publisher:
    """Keeps the broker connection and drains the outbox with a window of publishes in flight."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: TopicMap,
        outbox: Outbox,
        info: Callable[[], bytes],
        on_message: Callable[[str, bytes], None],
        subscriptions: tuple[str, ...],
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_connection`` hears when the broker connection is up (True) and lost (False)."""
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self._info = info
        self._on_message = on_message
        self._subscriptions = subscriptions
        self._on_connection = on_connection
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None
        self._stopping = asyncio.Event()
        self._flush_timeout = 0.0
        self._last_attempt = time.monotonic()
        self._running = False
        self._cancel_requests = 0
        """The running task's cancel requests that were not cancellations of the publisher."""

    def healthy(self) -> bool:
        """True while the publisher is connected or still actively trying to reconnect."""
        if not self._running:
            return False
        if self.connected.is_set():
            return True
        return time.monotonic() - self._last_attempt < self.settings.reconnect_max + 30

    async def run(self) -> None:
        """Connect, publish, reconnect forever; returns after ``stop``."""
        self._running = True
        self._cancel_requests = _cancel_requests()
        backoff = Backoff(self.settings.reconnect_min, self.settings.reconnect_max)
        try:
            while not self._stopping.is_set():
                self._last_attempt = started = time.monotonic()
                try:
                    await self._session()
                except aiomqtt.MqttError as exc:
                    self._lost(str(exc))
                self._raise_swallowed_cancellation()
                if self._stopping.is_set():
                    break
                if time.monotonic() - started >= HEALTHY_SESSION:
                    backoff.reset()
                delay = backoff.next()
                log.debug("reconnecting to the broker in %.2f s", delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):  # not wait_for: see Outbox.room
                        await self._stopping.wait()
        finally:
            self._running = False

    def stop(self, flush_timeout: float) -> None:
        """Ask ``run`` to flush the outbox (for at most ``flush_timeout``), go offline, and end."""
        self._flush_timeout = flush_timeout
        self._stopping.set()

    def _client(self) -> tuple[aiomqtt.Client, FastPublish | None]:
        """A client for one connection, and its fast publish path where it can be used."""
        s = self.settings
        tls = None
        if s.tls.enabled:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(s.tls.ca_file) if s.tls.ca_file else None,
                certfile=str(s.tls.cert_file) if s.tls.cert_file else None,
                keyfile=str(s.tls.key_file) if s.tls.key_file else None,
            )
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=s.client_id,
            will=aiomqtt.Will(self.topics.bridge_state, OFFLINE, qos=1, retain=True),
            keepalive=s.keepalive,
            # unlimited in paho: the send loop keeps the window (``max_inflight``) itself, and
            # with a limit paho scans every message in flight on every PUBACK for queued ones
            max_inflight_messages=0,
            tls_params=tls,
            tls_insecure=s.tls.insecure if s.tls.enabled else None,
            logger=logging.getLogger("fin2mqtt.mqtt"),
        )
        # aiomqtt warns on every publish past this many pending calls, which halves throughput.
        client.pending_calls_threshold = s.max_inflight + 16
        writes = BatchedWrites(client, asyncio.get_running_loop())
        writes.install()
        BufferedReads(client).install()
        acks = FastPubacks(client)
        acks.install()
        fast = FastPublish(client, writes, acks)
        return client, fast if fast.install() else None

    async def _session(self) -> None:
        client, fast = self._client()
        async with client:
            clean = False
            try:
                clean = await self._connected_session(client, fast)
            finally:
                self.outbox.draining(False)
                if self.connected.is_set():
                    self.connected.clear()
                    if self._on_connection is not None:
                        self._on_connection(False)
                if not clean:
                    _abort(client)  # no DISCONNECT: the broker publishes the will

    async def _connected_session(self, client: aiomqtt.Client, fast: FastPublish | None) -> bool:
        """Publish until the connection fails or a stop; True once ``offline`` was acknowledged."""
        self.connects += 1
        if self.last_error is not None or self.connects == 1:
            log.info("connected to MQTT broker %s:%d", self.settings.host, self.settings.port)
        self.last_error = None
        await client.publish(self.topics.bridge_state, ONLINE, qos=1, retain=True)
        await client.publish(self.topics.bridge_info, self._info(), qos=1, retain=True)
        for topic in self._subscriptions:
            await client.subscribe(topic, qos=1)
        self._raise_swallowed_cancellation()  # before a session only a stop or an error ends
        self.outbox.republish_state()
        self.outbox.draining(True)
        self.connected.set()
        if self._on_connection is not None:
            self._on_connection(True)
        stopped = False
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._send_loop(client, fast), name="mqtt-send")
                tg.create_task(self._receive_loop(client), name="mqtt-receive")
                tg.create_task(self._stop_when_asked(client), name="mqtt-stop")
        except* _Stopped:
            stopped = True
        except* aiomqtt.MqttError as group:
            raise group.exceptions[0] from None
        finally:
            # Python 3.11's TaskGroup leaves its parent marked as cancelling when a task ends
            # it with an error after its body: not a cancellation of ours
            self._cancel_requests = _cancel_requests()
        return stopped

    def _raise_swallowed_cancellation(self) -> None:
        """End a publisher that was cancelled while an aiomqtt call swallowed the cancellation.

        On Python 3.11, ``asyncio.wait_for`` (which aiomqtt's connect, publish, subscribe and
        disconnect wait with) loses a cancellation that arrives just as what it waits for
        completes; the task's count of cancel requests still went up. Unchecked, a publisher
        cancelled that way (the daemon's task group failing at start, e.g. a webhook port in use)
        went on publishing, nothing would ever stop it, and the daemon waited for it forever
        instead of exiting with its error.
        """
        if _cancel_requests() > self._cancel_requests:
            raise asyncio.CancelledError

    async def _send_loop(self, client: aiomqtt.Client, fast: FastPublish | None) -> None:
        """One writer with a window of ``max_inflight`` publishes awaiting their PUBACK.

        Messages go to paho's queue directly (``FastPublish``, else paho's ``publish``) and are
        settled from its ``on_publish`` callback (a QoS 0 packet written, a PUBACK paho knows)
        or ``FastPubacks.on_ack``: no task, future or event per message (aiomqtt's ``publish``
        makes all three, and with one worker per window slot every new message woke a worker).
        A dead connection is noticed by the receive loop, which ends the session; every
        unacknowledged message then goes back to the outbox, where it keeps its place.
        """
        outbox = self.outbox
        paho = client._client
        window = self.settings.max_inflight
        inflight: dict[int, Message] = {}
        room = asyncio.Event()
        aiomqtt_on_publish = paho.on_publish

        def settle(mid: int) -> bool:
            msg = inflight.pop(mid, None)
            if msg is None:
                return False
            outbox.done(msg)
            room.set()
            return True

        def on_publish(c: mqtt.Client, userdata: Any, mid: int, *rest: Any) -> None:
            # else one of aiomqtt's own publishes (online, info, offline)
            if not settle(mid) and aiomqtt_on_publish is not None:
                aiomqtt_on_publish(c, userdata, mid, *rest)

        paho.on_publish = on_publish
        if fast is not None:
            fast.acks.on_ack = settle
        try:
            while True:
                while len(inflight) >= window:
                    room.clear()
                    await room.wait()
                msg = await outbox.get()
                try:
                    mid = self._publish(paho, fast, msg)
                except ValueError as exc:  # a topic or payload no broker would take
                    log.error("cannot publish on %r: %s; dropped", msg.topic, exc)
                    outbox.done(msg)
                    continue
                if mid is not None:
                    inflight[mid] = msg
        finally:
            paho.on_publish = aiomqtt_on_publish
            if fast is not None:
                fast.acks.on_ack = None
            for msg in inflight.values():
                outbox.retry(msg)

    def _publish(self, paho: mqtt.Client, fast: FastPublish | None, msg: Message) -> int | None:
        """Queue ``msg``; its message id while it awaits being settled, None once it was."""
        if fast is not None:
            mid = fast.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            if mid is None:
                self.outbox.retry(msg)
                raise aiomqtt.MqttCodeError(mqtt.MQTT_ERR_NO_CONN, "could not publish")
            return mid
        info = paho.publish(msg.topic, msg.payload, msg.qos, msg.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.outbox.retry(msg)
            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
        if info.is_published():  # QoS 0, already written
            self.outbox.done(msg)
            return None
        return info.mid

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload or "").encode()
            try:
                self._on_message(str(message.topic), data)
            except Exception:
                log.exception("handling a message on %s failed", message.topic)

    async def _stop_when_asked(self, client: aiomqtt.Client) -> None:
        await self._stopping.wait()
        if not await self.outbox.wait_idle(self._flush_timeout):
            log.warning(
                "stopping with %d event(s) and %d state topic(s) not delivered",
                self.outbox.pending_events + self.outbox.inflight,
                self.outbox.pending_state,
            )
        # Not acknowledged in time: MqttError, the session is aborted and the will says it.
        await client.publish(
            self.topics.bridge_state, OFFLINE, qos=1, retain=True, timeout=OFFLINE_TIMEOUT
        )
        raise _Stopped

    def _lost(self, error: str) -> None:
        self.connected.clear()
        if self.last_error is None:
            log.warning(
                "MQTT broker %s:%d unreachable: %s (retrying, events are kept in the outbox)",
                self.settings.host,
                self.settings.port,
                error,
            )
        self.last_error = error


def _cancel_requests() -> int:
    """Cancel requests made of the current task so far."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _abort(client: aiomqtt.Client) -> None:
    """Drop the connection without DISCONNECT, so the broker publishes the will.

    Leaving ``async with aiomqtt.Client`` (cancellation included) sends a clean DISCONNECT,
    which makes the broker discard the will: a bridge that died would stay ``online``.
    """
    paho = client._client
    with contextlib.suppress(Exception):
        # closes the socket (no DISCONNECT packet) after telling aiomqtt it is gone
        paho._sock_close()
    disconnected = client._disconnected
    if not disconnected.done():
        disconnected.set_result(None)  # so __aexit__ does not try a clean DISCONNECT
