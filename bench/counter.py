"""A subscriber in its own process: counts distinct event ids, measures latency from ``sentAt``.

``python -m bench.counter HOST PORT FILTER EXPECTED IDLE`` prints one JSON line when EXPECTED
distinct ids arrived or nothing came for IDLE seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiomqtt


def sent_at(payload: dict[str, object]) -> float | None:
    """The simulator's send time carried in the event (fin2mqtt: ``details``; baseline: top)."""
    details = payload.get("details")
    value = details.get("sentAt") if isinstance(details, dict) else payload.get("sentAt")
    return float(str(value)) if value is not None else None


async def count(host: str, port: int, topic: str, expected: int, idle: float) -> dict[str, object]:
    """Subscribe (QoS 1) and count."""
    ids: set[str] = set()
    received = 0
    latencies: list[float] = []
    first = last = 0.0
    async with aiomqtt.Client(host, port, max_queued_incoming_messages=0) as client:
        await client.subscribe(topic, qos=1)
        print("subscribed", flush=True)
        messages = aiter(client.messages)
        while len(ids) < expected:
            try:
                message = await asyncio.wait_for(anext(messages), idle)
            except TimeoutError:
                break
            now = time.time()
            first = first or now
            last = now
            received += 1
            data = json.loads(message.payload)
            ids.add(str(data.get("id")))
            if (sent := sent_at(data)) is not None:
                latencies.append(now - sent)
    return {
        "distinct": len(ids),
        "received": received,
        "first": first,
        "last": last,
        "latencies": latencies,
    }


if __name__ == "__main__":
    host, port, topic, expected, idle = sys.argv[1:6]
    result = asyncio.run(count(host, int(port), topic, int(expected), float(idle)))
    print(json.dumps(result), flush=True)
