"""Many Hibachi accounts in one daemon: time to connect all, RSS, CPU while idle-streaming."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator

from bridge.testing.broker import make_broker
from bridge.testing.daemon import DaemonProcess

TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def run(workdir: Path, accounts: int, idle: float) -> dict[str, float]:
    """One daemon with ``accounts`` Hibachi accounts (3 s pings) against one simulator."""
    broker = make_broker(workdir / "broker")
    broker.start()
    try:
        async with HibachiSimulator() as sim:
            table = ", ".join(f"{{id = {1000 + n}}}" for n in range(accounts))
            config = (
                f'state_dir = "{workdir / "state"}"\nlog_level = "warning"\n'
                f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                f'[[providers]]\ntype = "hibachi"\nname = "hib"\napi_key = "{API_KEY}"\n'
                f'base_url = "{sim.base_url}"\naccounts = [{table}]\n'
            )
            async with DaemonProcess(config, workdir / f"daemon-{accounts}") as daemon:
                began = daemon.started_at
                await daemon.wait_ready(60)
                await sim.wait_until(lambda: sim.starts >= accounts, timeout=120)
                connected = time.monotonic() - began
                # the snapshots and discovery configs of every account are still being published
                # (~12 s at a full core for 1,000 accounts here): measure once two seconds in a
                # row took under 30 % of a core, so what is measured is the steady state (pings)
                quiet, give_up = 0, time.monotonic() + 60
                while quiet < 2 and time.monotonic() < give_up:
                    cpu0 = cpu_seconds(daemon.pid)
                    await asyncio.sleep(1.0)
                    quiet = quiet + 1 if cpu_seconds(daemon.pid) - cpu0 < 0.3 else 0
                cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
                pings0 = sim.pings
                await asyncio.sleep(idle)
                cpu = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0) * 100
                rss = rss_mb(daemon.pid)
                pings = sim.pings - pings0
                restarts = sim.starts - accounts
                await daemon.terminate(30)
    finally:
        broker.stop()
    print(
        f"{accounts:>5} accounts: all streaming after {connected:.2f} s, RSS {rss:.0f} MB, "
        f"CPU {cpu:.1f} % of one core while idle-streaming {idle:.0f} s "
        f"({pings} pings, {restarts} stream restarts)"
    )
    return {
        f"connect_s_{accounts}_accounts": round(connected, 3),
        f"rss_mb_{accounts}_accounts": round(rss, 1),
        f"cpu_pct_{accounts}_accounts": round(cpu, 2),
    }
