"""WebSocket link → parse → hub → outbox, against a bare websockets receive loop, interleaved."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from bench.stats import summary
from bridge.api import (
    AnyEvent,
    ConnectionSpec,
    Endpoint,
    ParseContext,
    Provider,
    ProviderContext,
    ProviderSettings,
    TransactionEvent,
    WebSocketOptions,
    WebSocketSpec,
)
from bridge.config.settings import SupervisorSettings
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.context import InstanceContext
from bridge.pipeline.hub import Hub
from bridge.pipeline.outbox import Outbox
from bridge.runtime.faults import SeenFaults
from bridge.runtime.supervisor import ConnectionRunner
from bridge.testing.simulator import WebSocketSimulator


class Firehose(WebSocketSimulator):
    """Sends ``n`` transaction frames as fast as it can to each client."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    async def session(self, ws: ServerConnection) -> None:
        for i in range(self.n):
            await ws.send(
                json.dumps(
                    {
                        "type": "tx",
                        "seq": i,
                        "amount": "123.450000",
                        "asset": "USD",
                        "ts": 1700000000,
                    }
                )
            )
        await ws.wait_closed()


class BenchProvider(Provider[ProviderSettings]):
    """Turns each frame into one TransactionEvent."""

    settings_model = ProviderSettings

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        raise NotImplementedError

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent]:
        return [
            TransactionEvent(
                provider=self.name,
                account="a",
                id=f"tx-{frame['seq']}",
                received_at=ctx.received_at,
                type="deposit",
                asset=frame["asset"],
                amount=frame["amount"],
            )
        ]


async def plain(url: str, n: int) -> float:
    """websockets recv + json.loads + a small reshape."""
    start = time.perf_counter()
    async with connect(url, compression=None) as ws:
        for _ in range(n):
            frame = json.loads(await ws.recv())
            _ = {"id": f"tx-{frame['seq']}", "amount": frame["amount"]}
    return n / (time.perf_counter() - start)


async def through_link(url: str, n: int) -> float:
    """The WebSocket link delivering into the real hub and outbox."""
    outbox = Outbox(n + 10)
    hub = Hub(TopicMap("b"), outbox, None, 1)
    provider = BenchProvider("b", ProviderSettings())
    ctx = InstanceContext(provider, hub)

    async def endpoint() -> Endpoint:
        return Endpoint(url)

    spec = WebSocketSpec(endpoint=endpoint, options=WebSocketOptions(ping_interval=None))
    link = ConnectionRunner(provider, ctx, spec, SupervisorSettings(), SeenFaults())
    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(link.run())
        while outbox.pending_events < n:  # noqa: ASYNC110 - polling keeps the hot path untouched
            await asyncio.sleep(0.001)
        rate = n / (time.perf_counter() - start)
        await link.close()
        await task
    return rate


async def run(n: int, rounds: int) -> dict[str, Any]:
    """Interleave both receivers over ``rounds`` rounds."""
    rates: dict[str, list[float]] = {"plain": [], "link": []}
    async with Firehose(n) as sim:
        for _ in range(rounds):
            rates["plain"].append(await plain(sim.url, n))
            rates["link"].append(await through_link(sim.url, n))
    ratio = [a / b for a, b in zip(rates["link"], rates["plain"], strict=True)]
    print(f"WebSocket receive, {n:,} frames x {rounds} rounds (frames/s)")
    print(f"  websockets recv + json.loads          : {summary(rates['plain'])}")
    print(f"  link -> parse -> hub -> outbox        : {summary(rates['link'])}")
    print(f"  ratio                                 : {summary(ratio, '{:.2f}')}")
    return {"link_rates": rates, "link_vs_plain": sorted(ratio)[len(ratio) // 2]}
