"""The fault matrix's tools: a subscriber with a persistent session that counts by id, the
checks every case makes (nothing lost, nothing twice, no crash, truthful topics), and the table of
recovery times printed at the end of the run (and written to ``$FIN2MQTT_FAULT_TABLE``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from bridge.testing.broker import Broker, make_broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, Received

BASE = "fin2mqtt"
EVENT_KINDS = ("transaction", "trade", "order", "notification")


@dataclass
class Row:
    case: str
    fault: str
    events: int
    lost: int
    duplicated: int
    recovery_s: float
    measured: str


ROWS: list[Row] = []


class Subscriber(MqttRecorder):
    """A persistent-session subscriber to ``<base>/#`` that notes when each message arrived."""

    def __init__(self, broker: Broker, client_id: str = "fault-counter", **auth: object) -> None:
        self.arrived: list[float] = []
        super().__init__(
            broker.host,
            broker.port,
            (f"{BASE}/#",),
            client_id=client_id,
            clean_session=False,
            on_message=lambda _m: self.arrived.append(time.monotonic()),
            **auth,  # type: ignore[arg-type]
        )

    def events(self, topic_suffix: str | None = None) -> list[Received]:
        """Event messages (not retained state), optionally only on topics ending so."""
        return [
            m
            for m in self.messages
            if m.topic.rsplit("/", 1)[-1] in EVENT_KINDS
            and (topic_suffix is None or m.topic.endswith(topic_suffix))
        ]

    def ids(self, topic_suffix: str | None = None) -> list[str]:
        """Event ids in the order they arrived (a duplicate appears twice)."""
        return [m.json()["id"] for m in self.events(topic_suffix)]

    def first_arrival(self, predicate: Callable[[Received], bool], after: float = 0.0) -> float:
        """When the first message matching ``predicate`` arrived after ``after`` (monotonic)."""
        for message, at in zip(self.messages, self.arrived, strict=False):
            if at >= after and predicate(message):
                return at
        raise AssertionError("no such message")

    def last_arrival(self, ids: Iterable[str]) -> float:
        """When the last of ``ids`` arrived (its first copy)."""
        wanted = set(ids)
        seen: dict[str, float] = {}
        for message, at in zip(self.messages, self.arrived, strict=False):
            if message.topic.rsplit("/", 1)[-1] in EVENT_KINDS:
                seen.setdefault(message.json()["id"], at)
        missing = wanted - set(seen)
        assert not missing, f"never arrived: {sorted(missing)[:5]}…"
        return max(seen[i] for i in wanted)

    def links(self, topic: str) -> list[tuple[str, str | None]]:
        """``(state, error)`` of every message on a link topic."""
        return [(m.json()["state"], m.json()["error"]) for m in self.on(topic) if m.payload]

    async def wait_ids(
        self, expected: Iterable[str], timeout: float = 20, suffix: str = ""
    ) -> None:
        """Until every expected id arrived."""
        wanted = set(expected)
        await self.wait_for(
            lambda _ms: wanted <= set(self.ids(suffix or None)),
            timeout,
            f"{len(wanted)} ids",
        )

    async def wait_link(self, topic: str, state: str, timeout: float = 10) -> float:
        """Until the last message on ``topic`` says ``state``; returns when it arrived."""
        await self.wait_for(
            lambda _ms: self.links(topic)[-1:] and self.links(topic)[-1][0] == state,
            timeout,
            f"{topic} {state}",
        )
        return [at for m, at in zip(self.messages, self.arrived, strict=False) if m.topic == topic][
            -1
        ]

    async def wait_down_up(self, topic: str, since: int, timeout: float = 10) -> float:
        """Until the link topic, after its first ``since`` messages, left ``connected`` and came
        back; returns when it came back."""

        def back() -> bool:
            states = [s for s, _e in self.links(topic)[since:]]
            return any(s != "connected" for s in states) and states[-1] == "connected"

        await self.wait_for(lambda _ms: back(), timeout, f"{topic} down then up")
        return [at for m, at in zip(self.messages, self.arrived, strict=False) if m.topic == topic][
            -1
        ]


def tally(
    received: list[str], expected: Iterable[str], may_repeat: Iterable[str] = ()
) -> tuple[int, int]:
    """Asserts every expected id arrived and nothing else did, each once — except the ids in
    ``may_repeat`` (in flight when the broker connection broke), which may arrive twice.
    Returns (lost, duplicated)."""
    expected = list(expected)
    counts = Counter(received)
    lost = [i for i in expected if counts[i] == 0]
    stray = sorted(set(counts) - set(expected))
    allowed = set(may_repeat)
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not lost, f"{len(lost)} lost: {lost[:10]}"
    assert not stray, f"unexpected ids: {stray[:10]}"
    bad = {i: n for i, n in twice.items() if i not in allowed or n > 2}
    assert not bad, f"duplicated by id: {dict(list(bad.items())[:10])}"
    return len(lost), sum(n - 1 for n in twice.values())


MAX_INFLIGHT = 64
"""The publisher's window (``mqtt.max_inflight``'s default): what can be in flight at a break."""


def repeated(ids: list[str]) -> set[str]:
    """Ids that arrived more than once."""
    return {i for i, n in Counter(ids).items() if n > 1}


def in_flight_at_break(before: list[str], order: list[str], window: int = MAX_INFLIGHT) -> set[str]:
    """What may have been in flight when the connection broke, for events sent in ``order``:
    up to ``window`` ids on either side of the last one that arrived before the break (an id
    in flight may have reached the subscriber already, or be held by the broker for it)."""
    last = max((order.index(i) for i in set(before)), default=-1)
    return set(order[max(0, last - window + 1) : last + window + 1])


def after_break(before: list[str], order: list[str], window: int = MAX_INFLIGHT) -> set[str]:
    """Ids that may come twice after a broker restart, for events sent in ``order``: from
    ``window`` before the last one the subscriber got before the break, on. The subscriber
    lags the bridge under load (the broker queues for it what it has already acknowledged to
    the bridge), so the bridge's window may lie past that id by the lag; the caller bounds how
    many repeat (``window`` of the bridge's, and what the broker had in flight to the
    subscriber)."""
    last = max((order.index(i) for i in set(before)), default=-1)
    return set(order[max(0, last - window + 1) :])


def no_crash(daemon: DaemonProcess) -> None:
    """The process lives and never logged a traceback or a provider crash."""
    log = daemon.log()
    assert daemon.running, f"daemon exited: {log[-3000:]}"
    assert "Traceback" not in log, log[-5000:]
    assert "provider crashed" not in log, log[-5000:]


async def stop_cleanly(daemon: DaemonProcess) -> None:
    """SIGTERM: exit code 0, no traceback."""
    no_crash(daemon)
    code, _ = await daemon.terminate()
    assert code == 0, daemon.log()[-3000:]
    assert "Traceback" not in daemon.log()


def record(
    case: str,
    fault: str,
    events: int,
    lost: int,
    duplicated: int,
    recovery_s: float,
    measured: str,
) -> None:
    """One row of the table of faults."""
    ROWS.append(Row(case, fault, events, lost, duplicated, round(recovery_s, 3), measured))


async def request_stats(broker: Broker, timeout: float = 5, **auth: object) -> dict[str, object]:
    """Ask the bridge for its stats over MQTT, as a user would."""
    async with aiomqtt.Client(broker.host, broker.port, **auth) as client:  # type: ignore[arg-type]
        await client.subscribe(f"{BASE}/bridge/response/stats", qos=1)
        await client.publish(f"{BASE}/bridge/request/stats", b'{"transaction":"t"}', qos=1)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                answer = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if answer.get("transaction") == "t":
                    data: dict[str, object] = answer["data"]
                    return data
    raise AssertionError("no answer")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The kit's broker, with persistence where it has it: the subscriber's session (and what
    is queued for it) survives a broker restart."""
    b = make_broker(tmp_path / "broker", persistence=True)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def subscriber(broker: Broker) -> AsyncIterator[Subscriber]:
    async with Subscriber(broker) as sub:
        yield sub


def table() -> str:
    lines = [
        "| case | fault | events | lost | duplicated | recovery (s) | measured from → to |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ROWS:
        lines.append(
            f"| {r.case} | {r.fault} | {r.events} | {r.lost} | {r.duplicated} | "
            f"{r.recovery_s:.3f} | {r.measured} |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    terminalreporter.write_sep("=", "fault matrix: recovery times")
    terminalreporter.write_line(table())
    if target := os.environ.get("FIN2MQTT_FAULT_TABLE"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(table() + "\n")
        terminalreporter.write_line(f"written to {target}")
