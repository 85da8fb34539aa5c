"""End to end against the ideal bridge: same simulator frames, same broker, same counter process.

The ideal bridge is a websockets client → ``json.loads`` → a small reshape → aiomqtt publish with
50 publishes in flight: a loop that does nothing but forward.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import aiomqtt
from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator
from websockets.asyncio.client import connect

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess

ACCOUNT = 128


class Counter:
    """``bench.counter`` in its own process."""

    def __init__(self, broker: Broker, topic: str, expected: int, idle: float = 5.0) -> None:
        self.args = [broker.host, str(broker.port), topic, str(expected), str(idle)]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Counter:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.counter",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            limit=2**26,  # the verdict is one JSON line with every latency
        )
        assert self.proc.stdout is not None
        await self.proc.stdout.readline()  # "subscribed"
        return self

    async def result(self) -> dict[str, Any]:
        """Wait for the counter's verdict."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        await self.proc.wait()
        return json.loads(line)  # type: ignore[no-any-return]

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def ideal_bridge(
    base_url: str, host: str, port: int, qos: int, stop: asyncio.Event, started: bool = False
) -> None:
    """Forward trade frames from the simulator to ``ideal/<n>`` with 50 publishes in flight."""
    url = f"{base_url}/ws/account?accountId={ACCOUNT}"
    async with (
        connect(url, additional_headers={"Authorization": API_KEY}, compression=None) as ws,
        aiomqtt.Client(host, port, max_inflight_messages=50) as mqtt,
    ):
        mqtt.pending_calls_threshold = 100
        await ws.send(
            json.dumps({"id": 1, "method": "stream.start", "params": {"accountId": ACCOUNT}})
        )
        if started:
            print("started", flush=True)
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(1000)

        async def receive() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                data = frame.get("data")
                if frame.get("event") != "trade_update" or not isinstance(data, dict):
                    continue
                out = {"id": str(data["orderId"]), "price": data["price"], "qty": data["quantity"],
                       "sentAt": data["sentAt"]}  # fmt: skip
                await queue.put((f"ideal/{ACCOUNT}/trade", json.dumps(out).encode()))

        async def publish() -> None:
            while True:
                topic, payload = await queue.get()
                await mqtt.publish(topic, payload, qos=qos)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(receive())]
            tasks += [tg.create_task(publish()) for _ in range(50)]
            await stop.wait()
            for task in tasks:
                task.cancel()


def _rate(result: dict[str, Any], began: float) -> float:
    return float(result["distinct"]) / max(float(result["last"]) - began, 1e-9)


async def round_ideal(
    sim: HibachiSimulator, broker: Broker, n: int, qos: int, start: int, rate: float | None = None
) -> dict[str, Any]:
    """One round of the baseline."""
    stop = asyncio.Event()
    async with Counter(broker, "ideal/#", n) as counter, asyncio.TaskGroup() as tg:
        starts = sim.starts
        tg.create_task(ideal_bridge(sim.base_url, broker.host, broker.port, qos, stop))
        await sim.wait_until(lambda: sim.starts > starts and any(s.key for s in sim.streams))
        began = await sim.blast(ACCOUNT, n, rate, start)
        result = await counter.result()
        stop.set()
    result["rate"] = _rate(result, began)
    return result


async def round_fin2mqtt(
    sim: HibachiSimulator, broker: Broker, n: int, start: int, rate: float | None = None
) -> dict[str, Any]:
    """One round through the daemon (already running, its stream started)."""
    async with Counter(broker, "fin2mqtt/hib/+/trade", n) as counter:
        began = await sim.blast(ACCOUNT, n, rate, start)
        result = await counter.result()
    result["rate"] = _rate(result, began)
    return result


def daemon_config(workdir: Path, broker: Broker, sim: HibachiSimulator, qos: int) -> str:
    """One Hibachi account, discovery off (the baseline publishes no discovery either)."""
    return (
        f'state_dir = "{workdir / "state"}"\nlog_level = "warning"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nevent_qos = {qos}\n'
        "[homeassistant]\ndiscovery = false\n"
        f'[[providers]]\ntype = "hibachi"\nname = "hib"\napi_key = "{API_KEY}"\n'
        f'base_url = "{sim.base_url}"\naccounts = [{{id = {ACCOUNT}}}]\n'
    )


async def throughput(
    workdir: Path, broker: Broker, n: int, rounds: int, qos: int
) -> dict[str, Any]:
    """Interleaved rounds: ideal bridge, then fin2mqtt, ``rounds`` times."""
    ideal: list[float] = []
    ours: list[float] = []
    lost = 0
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(workdir / f"qos{qos}", broker, sim, qos)
        async with DaemonProcess(config, workdir / f"daemon-qos{qos}") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            for r in range(rounds):
                base = r * 2 * n
                ideal.append((await round_ideal(sim, broker, n, qos, base))["rate"])
                result = await round_fin2mqtt(sim, broker, n, base + n)
                ours.append(result["rate"])
                lost += n - int(result["distinct"])
            await daemon.terminate(30)
    ratios = [o / i for o, i in zip(ours, ideal, strict=True)]
    return {"ideal": ideal, "fin2mqtt": ours, "ratio": statistics.median(ratios),
            "ratios": ratios, "lost": lost}  # fmt: skip


async def latency(workdir: Path, broker: Broker, rate: float, seconds: float) -> dict[str, float]:
    """fin2mqtt paced at ``rate`` events/s for ``seconds``: p50/p99/max send → receipt (ms)."""
    n = int(rate * seconds)
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(workdir / "latency", broker, sim, 1)
        async with DaemonProcess(config, workdir / "daemon-latency") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            result = await round_fin2mqtt(sim, broker, n, 0, rate)
            await daemon.terminate(30)
    lat = sorted(x * 1000 for x in result["latencies"])
    return {
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[int(len(lat) * 0.99) - 1],
        "max_ms": lat[-1],
        "lost": float(n - int(result["distinct"])),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def cpu_per_event(
    workdir: Path, broker: Broker, rate: float, seconds: float, qos: int
) -> dict[str, float]:
    """CPU per event at a steady ``rate``: fin2mqtt and the ideal bridge (its own process)
    forward the same frames at the same time into the same broker; µs of CPU per event each."""
    n = int(rate * seconds)
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(workdir / f"cpu{qos}", broker, sim, qos)
        async with DaemonProcess(config, workdir / f"daemon-cpu{qos}") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            starts = sim.starts
            ideal = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.ideal", sim.base_url, broker.host,
                str(broker.port), str(qos), stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert ideal.stdout is not None
                await ideal.stdout.readline()  # "started"
                await sim.wait_until(lambda: sim.starts > starts, timeout=30)
                await asyncio.sleep(0.5)
                async with (
                    Counter(broker, "ideal/#", n) as theirs,
                    Counter(broker, "fin2mqtt/hib/+/trade", n) as ours,
                ):
                    before = cpu_seconds(daemon.pid), cpu_seconds(ideal.pid)
                    await sim.blast(ACCOUNT, n, rate, 0)
                    got_ours, got_theirs = await ours.result(), await theirs.result()
                    after = cpu_seconds(daemon.pid), cpu_seconds(ideal.pid)
            finally:
                ideal.kill()
                await ideal.wait()
            await daemon.terminate(30)
    ours_us = (after[0] - before[0]) / n * 1e6
    theirs_us = (after[1] - before[1]) / n * 1e6
    return {
        "fin2mqtt_us": ours_us,
        "ideal_us": theirs_us,
        "ratio": ours_us / theirs_us,
        "lost": float(2 * n - int(got_ours["distinct"]) - int(got_theirs["distinct"])),
    }


__all__ = ["cpu_per_event", "latency", "throughput"]
