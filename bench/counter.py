"""A subscriber in its own process: counts distinct event ids, measures latency from ``sentAt``.

``python -m bench.counter HOST PORT FILTER EXPECTED IDLE`` prints ``subscribed`` once the
subscription is acknowledged, then one JSON line when EXPECTED distinct ids arrived or nothing
came for IDLE seconds.

It is paho's own blocking loop with a callback per message, not an asyncio client: the counter
must not be what limits a saturation round. An aiomqtt loop with a timeout per message took a
whole core at ~4,500 messages/s on the 2-core benchmark machine, as much as the bridge it
measured (the ideal bridge's rounds hit that ceiling too).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def sent_at(payload: dict[str, object]) -> float | None:
    """The simulator's send time carried in the event (fin2mqtt: ``details``; baseline: top)."""
    details = payload.get("details")
    value = details.get("sentAt") if isinstance(details, dict) else payload.get("sentAt")
    return float(str(value)) if value is not None else None


class Count:
    """What the subscriber saw."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ids: set[str] = set()
        self.received = 0
        self.latencies: list[float] = []
        self.first = self.last = 0.0
        self.subscribed = False

    def on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        self.first = self.first or now
        self.last = now
        self.received += 1
        data = json.loads(message.payload)
        self.ids.add(str(data.get("id")))
        if (sent := sent_at(data)) is not None:
            self.latencies.append(now - sent)

    def done(self) -> bool:
        return len(self.ids) >= self.expected

    def result(self) -> dict[str, object]:
        return {
            "distinct": len(self.ids),
            "received": self.received,
            "first": self.first,
            "last": self.last,
            "latencies": self.latencies,
        }


def count(host: str, port: int, topic: str, expected: int, idle: float) -> dict[str, object]:
    """Subscribe (QoS 1) and count until ``expected`` distinct ids or ``idle`` seconds of none."""
    seen = Count(expected)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_message = seen.on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)

    def on_subscribe(*_: Any) -> None:
        seen.subscribed = True
        print("subscribed", flush=True)

    client.on_subscribe = on_subscribe
    client.connect(host, port)
    quiet_since = time.monotonic()
    received = 0
    while not seen.done():
        client.loop(timeout=0.05)
        now = time.monotonic()
        if seen.received != received or not seen.subscribed:
            received, quiet_since = seen.received, now
        elif now - quiet_since > idle:
            break
    client.disconnect()
    return seen.result()


if __name__ == "__main__":
    host, port, topic, expected, idle = sys.argv[1:6]
    print(json.dumps(count(host, int(port), topic, int(expected), float(idle))), flush=True)
