"""Where the daemon's CPU goes per event: py-spy on the real daemon, fed by the Hibachi simulator.

``uv run python -m bench.profile [--rate 1000] [--seconds 10]`` (``--rate 0``: saturation) writes
``bench/results/profile-<rate>.svg`` (a flame graph) and prints the functions with the most
samples of their own, idle time (waiting in ``select``, idle worker threads) left out. py-spy
comes from PyPI through ``uv tool run``; it is not a dependency of the project.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
from pathlib import Path

from fin2mqtt_hibachi.simulator import HibachiSimulator

from bench.e2e import ACCOUNT, daemon_config
from bridge.testing.broker import make_broker
from bridge.testing.daemon import DaemonProcess

RESULTS = Path(__file__).parent / "results"
IDLE = ("EpollSelector.select", "_worker (concurrent/futures/thread.py")


def busy_stacks(raw: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw samples as (frames, count), idle ones (waiting in ``select``, idle worker
    threads) left out."""
    out = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if stack and not any(mark in frames[-1] for mark in IDLE):
            out.append((frames, int(count)))
    return out


def top_self(raw: Path, n: int = 25) -> list[tuple[float, str]]:
    """The functions with the most samples of their own, as shares of the busy samples."""
    stacks = busy_stacks(raw)
    own: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
    busy = sum(count for _, count in stacks)
    return [(100 * c / max(busy, 1), f) for f, c in own.most_common(n)]


def top_total(raw: Path, n: int = 40) -> list[tuple[float, str]]:
    """The functions with the most samples in or under them, as shares of the busy samples."""
    stacks = busy_stacks(raw)
    total: collections.Counter[str] = collections.Counter()
    for frames, count in stacks:
        for frame in set(frames):
            total[frame] += count
    busy = sum(count for _, count in stacks)
    return [(100 * c / max(busy, 1), f) for f, c in total.most_common(n)]


def py_spy(pid: int, seconds: float, out: Path, fmt: str) -> None:
    """Sample ``pid`` for ``seconds`` into ``out``."""
    subprocess.run(
        ["uv", "tool", "run", "py-spy", "record", "-p", str(pid), "-d", str(int(seconds)),
         "-r", "200", "-f", fmt, "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip


async def profile(rate: float, seconds: float, qos: int = 1) -> None:
    """Run the daemon against the simulator at ``rate`` events/s (0: as fast as possible)."""
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="f2m-profile-") as tmp:
        work = Path(tmp)
        broker = make_broker(work / "broker")
        broker.start()
        try:
            async with HibachiSimulator(expiry=60) as sim:
                config = daemon_config(work, broker, sim, qos)
                async with DaemonProcess(config, work / "daemon") as daemon:
                    await daemon.wait_ready(30)
                    await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
                    n = int((rate or 20_000) * (2 * seconds + 3))  # both recordings under load
                    name = f"profile-{int(rate) if rate else 'saturation'}" + (
                        "-qos0" if qos == 0 else ""
                    )
                    blast = asyncio.create_task(sim.blast(ACCOUNT, n, rate or None, 0))
                    await asyncio.sleep(1)
                    svg, raw = RESULTS / f"{name}.svg", work / f"{name}.txt"
                    await asyncio.to_thread(py_spy, daemon.pid, seconds, svg, "flamegraph")
                    await asyncio.to_thread(py_spy, daemon.pid, seconds, raw, "raw")
                    blast.cancel()
                    await daemon.terminate(30)
        finally:
            broker.stop()
        print(f"flame graph: {svg}")
        print("own samples:")
        for share, frame in top_self(raw):
            print(f"{share:5.1f} %  {frame}")
        print("in or under:")
        for share, frame in top_total(raw):
            print(f"{share:5.1f} %  {frame}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s; 0 = saturation")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    args = parser.parse_args()
    asyncio.run(profile(args.rate, args.seconds, args.qos))
    sys.exit(0)
