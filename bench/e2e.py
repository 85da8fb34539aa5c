"""End to end against the ideal bridge: same simulator frames, same broker, same counter process.

The ideal bridge is a websockets client → ``json.loads`` → a small reshape → aiomqtt publish with
50 publishes in flight: a loop that does nothing but forward. It runs in a process of its own
(``bench.ideal``) on an account of its own, so each side's CPU time and memory are its own and a
round of one never feeds frames to the other.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator
from websockets.asyncio.client import connect

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess

ACCOUNT = 128
"""The daemon's account."""
IDEAL_ACCOUNT = 129
"""The ideal bridge's account (a stream of its own: the daemon does not see its rounds)."""


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
    base_url: str,
    host: str,
    port: int,
    qos: int,
    stop: asyncio.Event,
    started: bool = False,
    account: int = ACCOUNT,
) -> None:
    """Forward trade frames from the simulator to ``ideal/<n>`` with 50 publishes in flight."""
    url = f"{base_url}/ws/account?accountId={account}"
    async with (
        connect(url, additional_headers={"Authorization": API_KEY}, compression=None) as ws,
        aiomqtt.Client(host, port, max_inflight_messages=50) as mqtt,
    ):
        mqtt.pending_calls_threshold = 100
        await ws.send(
            json.dumps({"id": 1, "method": "stream.start", "params": {"accountId": account}})
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
                await queue.put((f"ideal/{account}/trade", json.dumps(out).encode()))

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


class IdealProcess:
    """``bench.ideal`` in a process of its own, its stream started on the simulator."""

    def __init__(
        self, sim: HibachiSimulator, broker: Broker, qos: int, account: int, wait: bool = True
    ) -> None:
        self.sim, self.broker, self.qos, self.account = sim, broker, qos, account
        self.wait = wait
        """Return only once the stream is started (else at once)."""
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> IdealProcess:
        starts = self.sim.starts
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.ideal", self.sim.base_url, self.broker.host,
            str(self.broker.port), str(self.qos), str(self.account),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        if not self.wait:
            return self
        await self.proc.stdout.readline()  # "started"
        await self.sim.wait_until(
            lambda: (
                self.sim.starts > starts
                and any(s.key for s in self.sim.streams if s.account == self.account)
            ),
            timeout=30,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def round_ideal(
    sim: HibachiSimulator, broker: Broker, n: int, qos: int, start: int, rate: float | None = None
) -> dict[str, Any]:
    """One round of the baseline: a fresh ideal bridge forwarding ``n`` frames of its own."""
    async with (
        IdealProcess(sim, broker, qos, IDEAL_ACCOUNT) as ideal,
        Counter(broker, "ideal/#", n) as counter,
    ):
        cpu = cpu_seconds(ideal.pid)
        began = await sim.blast(IDEAL_ACCOUNT, n, rate, start)
        result = await counter.result()
        result["cpu_us"] = (cpu_seconds(ideal.pid) - cpu) / n * 1e6
        result["rss_mb"] = peak_rss_mb(ideal.pid)
    result["rate"] = _rate(result, began)
    return result


async def round_fin2mqtt(
    sim: HibachiSimulator,
    broker: Broker,
    n: int,
    start: int,
    rate: float | None = None,
    pid: int | None = None,
) -> dict[str, Any]:
    """One round through the daemon (already running, its stream started); with ``pid``, the
    daemon's CPU per event and peak RSS too."""
    async with Counter(broker, "fin2mqtt/hib/+/trade", n) as counter:
        cpu = cpu_seconds(pid) if pid else 0.0
        began = await sim.blast(ACCOUNT, n, rate, start)
        result = await counter.result()
        if pid:
            result["cpu_us"] = (cpu_seconds(pid) - cpu) / n * 1e6
            result["rss_mb"] = peak_rss_mb(pid)
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
    """Interleaved rounds: ideal bridge, then fin2mqtt, ``rounds`` times; rates, CPU per event
    and peak RSS of each."""
    ideal: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    lost = 0
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(workdir / f"qos{qos}", broker, sim, qos)
        async with DaemonProcess(config, workdir / f"daemon-qos{qos}") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            for r in range(rounds):
                base = r * 2 * n
                theirs = await round_ideal(sim, broker, n, qos, base)
                result = await round_fin2mqtt(sim, broker, n, base + n, pid=daemon.pid)
                ideal.append(theirs)
                ours.append(result)
                lost += 2 * n - int(result["distinct"]) - int(theirs["distinct"])
            await daemon.terminate(30)
    ratios = [o["rate"] / i["rate"] for o, i in zip(ours, ideal, strict=True)]
    cpu_ratios = [o["cpu_us"] / i["cpu_us"] for o, i in zip(ours, ideal, strict=True)]
    return {
        "ideal": [i["rate"] for i in ideal],
        "fin2mqtt": [o["rate"] for o in ours],
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "cpu_us": statistics.median(o["cpu_us"] for o in ours),
        "cpu_us_ideal": statistics.median(i["cpu_us"] for i in ideal),
        "cpu_ratio": statistics.median(cpu_ratios),
        "cpu_ratios": cpu_ratios,
        "rss_mb": max(o["rss_mb"] for o in ours),
        "rss_mb_ideal": max(i["rss_mb"] for i in ideal),
        "lost": lost,
    }


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


def peak_rss_mb(pid: int) -> float:
    """The most resident memory a process has used so far (VmHWM, Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
            async with IdealProcess(sim, broker, qos, ACCOUNT) as ideal:
                await asyncio.sleep(0.5)
                async with (
                    Counter(broker, "ideal/#", n) as theirs,
                    Counter(broker, "fin2mqtt/hib/+/trade", n) as ours,
                ):
                    before = cpu_seconds(daemon.pid), cpu_seconds(ideal.pid)
                    await sim.blast(ACCOUNT, n, rate, 0)
                    got_ours, got_theirs = await ours.result(), await theirs.result()
                    after = cpu_seconds(daemon.pid), cpu_seconds(ideal.pid)
            await daemon.terminate(30)
    ours_us = (after[0] - before[0]) / n * 1e6
    theirs_us = (after[1] - before[1]) / n * 1e6
    return {
        "fin2mqtt_us": ours_us,
        "ideal_us": theirs_us,
        "ratio": ours_us / theirs_us,
        "lost": float(2 * n - int(got_ours["distinct"]) - int(got_theirs["distinct"])),
    }


async def first_event(workdir: Path, broker: Broker, rounds: int) -> dict[str, Any]:
    """Time from exec to the first forwarded trade at a subscriber: fin2mqtt (one Hibachi
    account) and the ideal bridge, started ``rounds`` times each, interleaved. The simulator
    sends one trade as soon as the starting bridge's stream is up."""

    async def one(account: int, topic: str, spawn: Any) -> float:
        async with Counter(broker, topic, 1, idle=30) as counter:
            starts = sim.starts
            began = time.time()
            async with spawn():
                await sim.wait_until(
                    lambda: (
                        sim.starts > starts
                        and any(s.key for s in sim.streams if s.account == account)
                    ),
                    timeout=30,
                )
                await sim.blast(account, 1, None, 0)
                result = await counter.result()
        return float(result["first"]) - began

    ours: list[float] = []
    theirs: list[float] = []
    async with HibachiSimulator(expiry=60) as sim:
        for r in range(rounds):
            config = daemon_config(workdir / f"first{r}", broker, sim, 1)
            ours.append(
                await one(ACCOUNT, "fin2mqtt/hib/+/trade",
                          lambda: DaemonProcess(config, workdir / f"daemon-first{r}"))  # noqa: B023
            )  # fmt: skip
            theirs.append(
                await one(IDEAL_ACCOUNT, "ideal/#",
                          lambda: IdealProcess(sim, broker, 1, IDEAL_ACCOUNT, wait=False))
            )  # fmt: skip
    return {"fin2mqtt": ours, "ideal": theirs}


__all__ = ["cpu_per_event", "first_event", "latency", "throughput"]
