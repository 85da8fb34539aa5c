"""An MQTT subscriber that records what a user of the bridge would see (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt


@dataclass(frozen=True, slots=True)
class Received:
    """One message as a subscriber received it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


def _received(message: aiomqtt.Message) -> Received:
    payload = message.payload
    data = payload if isinstance(payload, bytes) else str(payload or "").encode()
    return Received(str(message.topic), data, int(message.qos), bool(message.retain))


class MqttRecorder:
    """Subscribes (QoS 1) and records every message; reconnects if the broker restarts.

    With ``client_id`` and ``clean_session=False`` the broker queues QoS 1 messages for it
    while it is away (a persistent session). ``username``/``password`` and ``ca_file`` (TLS,
    trusting that CA) reach a broker that requires them.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: tuple[str, ...] = ("#",),
        *,
        client_id: str | None = None,
        clean_session: bool = True,
        on_message: Callable[[Received], None] | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.on_message = on_message
        self.username = username
        self.password = password
        self.ca_file = ca_file
        self.host = host
        self.port = port
        self.topics = topics
        self.client_id = client_id
        self.clean_session = clean_session
        self.messages: list[Received] = []
        self.connects = 0
        self._changed = asyncio.Event()
        self._connected = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._task = self._group.create_task(self._run(), name="mqtt-recorder")
        await asyncio.wait_for(self._connected.wait(), 10)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        assert self._group is not None
        self._task.cancel()
        await self._group.__aexit__(None, None, None)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    clean_session=self.clean_session if self.client_id else None,
                    username=self.username,
                    password=self.password,
                    tls_params=_tls(self.ca_file),
                ) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connects += 1
                    self._connected.set()
                    async for message in client.messages:
                        received = _received(message)
                        self.messages.append(received)
                        self._changed.set()
                        if self.on_message is not None:
                            self.on_message(received)
            except aiomqtt.MqttError:
                self._connected.clear()
                await asyncio.sleep(0.02)

    async def wait_connected(self, timeout: float = 10) -> None:
        """Wait until subscribed (again)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    def on(self, topic: str) -> list[Received]:
        """Messages received on exactly ``topic``."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10, what: str = ""
    ) -> None:
        """Wait until ``predicate(messages)`` holds; AssertionError with context on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = sorted({m.topic for m in self.messages})
                raise AssertionError(f"timed out waiting for {what or predicate}; topics: {seen}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_topic(self, topic: str, count: int = 1, timeout: float = 10) -> list[Received]:
        """Wait for ``count`` messages on ``topic`` and return them all."""
        await self.wait_for(lambda ms: sum(m.topic == topic for m in ms) >= count, timeout, topic)
        return self.on(topic)


def _tls(ca_file: Path | None) -> aiomqtt.TLSParameters | None:
    return aiomqtt.TLSParameters(ca_certs=str(ca_file)) if ca_file is not None else None


async def retained(
    host: str,
    port: int,
    topic_filter: str = "#",
    quiet: float = 0.3,
    timeout: float = 10,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
) -> dict[str, Received]:
    """What a new subscriber gets as retained state right now: topic → message."""
    found: dict[str, Received] = {}
    async with aiomqtt.Client(
        host, port, username=username, password=password, tls_params=_tls(ca_file)
    ) as client:
        await client.subscribe(topic_filter, qos=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(anext(aiter(client.messages)), quiet)
            except TimeoutError:
                break
            # amqtt also sends retained messages that do not match the filter
            if message.retain and message.topic.matches(topic_filter):
                found[str(message.topic)] = _received(message)
    return found
