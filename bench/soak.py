"""Soak: the real daemon for minutes under ~200 events/s with a fault every few minutes.

    uv run python -m bench.soak --minutes 30            # the full run (not in CI)
    uv run python -m bench.soak --minutes 3 --fault-every 40

Two providers feed it: the scripted test provider (ids ``tx-<n>``) and the Hibachi simulator
(trades with order ids known in advance), half the rate each. Faults, in turn: the upstream's TCP
connections dropped, the broker restarted (its persistence keeps the subscriber's session), the
broker slowed to 20 kB/s for 5 s. Every 5 s: the daemon's RSS and open file descriptors, and the
round trip of a ``bridge/request/stats`` (an upper bound of the daemon's event-loop lag: it also
crosses the broker twice). At the end: events lost and repeated, counted by id at a subscriber
with a persistent session. Results go to ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiomqtt
from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator
from websockets.exceptions import ConnectionClosed

from bridge.testing.broker import Broker, make_broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.proxy import TcpProxy
from bridge.testing.recorder import MqttRecorder, Received

RESULTS = Path(__file__).with_name("results")
ORDER_BASE = 800_000_000_000_000_000


def _config(state: Path, proxy: TcpProxy, sim: HibachiSimulator, ticks: int, rate: float) -> str:
    return f"""
state_dir = "{state}"
log_level = "info"
[mqtt]
host = "127.0.0.1"
port = {proxy.port}
reconnect_min = 0.05
reconnect_max = 0.5
[supervisor]
restart_min = 0.05
restart_max = 0.5
[[providers]]
type = "testprov"
name = "ticker"
interval = {1 / rate}
ticks = {ticks}
[[providers]]
type = "hibachi"
name = "hib"
api_key = "{API_KEY}"
base_url = "{sim.base_url}"
accounts = [{{id = 128, alias = "main"}}]
ping_interval = 1.0
request_timeout = 1.0
retry_min = 0.05
retry_max = 0.3
"""


def _trade(n: int) -> dict[str, Any]:
    return {
        "event": "trade_update",
        "account": "128",
        "data": {
            "orderId": ORDER_BASE + n,
            "price": "2345.000000",
            "quantity": "0.000421590",
            "side": "BID",
            "symbol": "ETH/USDT-P",
            "timestamp": 1728526563,
        },
    }


async def _push(sim: HibachiSimulator, frame: dict[str, Any]) -> bool:
    """Send to the live streams; a send that fails or a closing connection does not count."""
    sent = False
    for stream in list(sim.streams):
        if stream.key is None or stream.expired or stream.ws.transport.is_closing():
            continue
        try:
            await stream.ws.send(json.dumps(frame))
        except ConnectionClosed:
            continue
        sent = True
    return sent


async def _drive_trades(sim: HibachiSimulator, n: int, rate: float) -> None:
    began = time.monotonic()
    for i in range(n):
        while not await _push(sim, _trade(i)):  # noqa: ASYNC110 - polls the simulator
            await asyncio.sleep(0.01)  # no live stream: the upstream waits for one
        delay = began + (i + 1) / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


def _proc_sample(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def _stats_round_trip(broker: Broker) -> float:
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("fin2mqtt/bridge/response/stats", qos=1)
        began = time.monotonic()
        await client.publish("fin2mqtt/bridge/request/stats", b'{"transaction":"soak"}', qos=1)
        async with asyncio.timeout(10):
            async for _message in client.messages:
                return time.monotonic() - began
    raise AssertionError("no answer")


async def _faults(
    broker: Broker, proxy: TcpProxy, sim: HibachiSimulator, every: float, log: list[str]
) -> None:
    kinds = ["upstream drop", "broker restart", "slow broker"]
    n = 0
    restart: asyncio.Future[None] | None = None
    try:
        while True:
            await asyncio.sleep(every)
            kind = kinds[n % len(kinds)]
            n += 1
            log.append(f"{time.strftime('%H:%M:%S')} {kind}")
            print(f"  fault: {kind}", flush=True)
            if kind == "upstream drop":
                for ws in list(sim.connections):
                    ws.transport.close()
            elif kind == "broker restart":
                # shielded: a cancel mid-restart must not leave a half-started broker behind
                restart = asyncio.ensure_future(asyncio.to_thread(_restart, broker))
                await asyncio.shield(restart)
            else:
                proxy.delay, proxy.rate = 0.05, 20_000
                await asyncio.sleep(5.0)
                proxy.delay, proxy.rate = 0.0, None
    finally:  # the run ended during a fault: end it
        proxy.delay, proxy.rate = 0.0, None
        if restart is not None and not restart.done():
            await restart
        if not broker.running:
            broker.start()


def _restart(broker: Broker) -> None:
    broker.stop()
    time.sleep(1.0)
    broker.start()


def _event_id(m: Received) -> str | None:
    leaf = m.topic.rsplit("/", 1)[-1]
    if leaf == "transaction":
        return str(m.json()["id"])
    if leaf == "trade":
        return f"order-{m.json()['order_id']}"
    return None


async def soak(
    minutes: float, rate: float, fault_every: float, workdir: Path, sample_every: float = 5.0
) -> dict[str, Any]:
    """Run the soak; returns the figures."""
    seconds = minutes * 60
    half = rate / 2
    ticks = int(half * seconds)
    broker = make_broker(workdir / "broker", persistence=True)
    broker.start()
    samples: list[dict[str, float]] = []
    round_trips: list[float] = []
    fault_log: list[str] = []
    ids: Counter[str] = Counter()

    def count(m: Received) -> None:
        if (event_id := _event_id(m)) is not None:
            ids[event_id] += 1

    try:
        async with (
            HibachiSimulator(expiry=60) as sim,
            TcpProxy(broker.host, broker.port) as proxy,
            MqttRecorder(
                broker.host, broker.port, ("fin2mqtt/+/+/transaction", "fin2mqtt/+/+/trade"),
                client_id="soak-counter", clean_session=False, on_message=count,
            ) as rec,
        ):  # fmt: skip
            rec.messages = _Discard()  # counted in on_message; do not keep millions of messages
            config = _config(workdir / "state", proxy, sim, ticks, half)
            async with DaemonProcess(config, workdir / "daemon") as daemon:
                await daemon.wait_ready(30)
                await sim.wait_until(lambda: bool(sim.streams and sim.streams[0].key), 30)
                began = time.monotonic()
                async with asyncio.TaskGroup() as tg:
                    driver = tg.create_task(_drive_trades(sim, ticks, half))
                    faults = tg.create_task(_faults(broker, proxy, sim, fault_every, fault_log))
                    while time.monotonic() - began < seconds:
                        await asyncio.sleep(sample_every)
                        rss, fds = _proc_sample(daemon.pid)
                        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                            round_trips.append(await _stats_round_trip(broker))
                        samples.append(
                            {"t": round(time.monotonic() - began), "rss_mb": rss, "fds": fds}
                        )
                        print(
                            f"  t={samples[-1]['t']:5d}s rss={rss:6.1f} MB fds={fds:3d} "
                            f"events={sum(ids.values())}",
                            flush=True,
                        )
                    faults.cancel()
                    await driver
                expected = {f"tx-{n}" for n in range(ticks)} | {
                    f"order-{ORDER_BASE + n}" for n in range(ticks)
                }
                deadline = time.monotonic() + 60
                while not expected <= set(ids) and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)
                code, _ = await daemon.terminate(30)
    finally:
        broker.stop()
    lost = len(expected - set(ids))
    repeated = sum(n - 1 for n in ids.values() if n > 1)
    p99 = (
        statistics.quantiles(round_trips, n=100, method="inclusive")[98]
        if len(round_trips) >= 2
        else float("nan")
    )
    return {
        "minutes": minutes,
        "rate": rate,
        "events": len(expected),
        "lost": lost,
        "repeated_same_id": repeated,
        "faults": fault_log,
        "rss_mb_start": samples[0]["rss_mb"] if samples else None,
        "rss_mb_end": samples[-1]["rss_mb"] if samples else None,
        "fds_start": samples[0]["fds"] if samples else None,
        "fds_end": samples[-1]["fds"] if samples else None,
        "stats_round_trip_p99_ms": round(p99 * 1000, 1),
        "stats_round_trip_max_ms": round(max(round_trips, default=0) * 1000, 1),
        "exit_code": code,
        "samples": samples,
    }


class _Discard(list[Received]):
    """A message list that keeps nothing."""

    def append(self, item: Received) -> None:
        pass


def main() -> None:
    """``python -m bench.soak``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=200, help="events/s, all providers")
    parser.add_argument("--fault-every", type=float, default=180, help="seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="f2m-soak-") as tmp:
        result = asyncio.run(soak(args.minutes, args.rate, args.fault_every, Path(tmp)))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
