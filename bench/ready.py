"""Time from process start to READY=1 and from SIGTERM to exit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import summary
from bridge.testing.broker import make_broker
from bridge.testing.daemon import DaemonProcess


async def run(workdir: Path, rounds: int, instances: int = 5) -> dict[str, Any]:
    """Start the daemon with ``instances`` test providers ``rounds`` times."""
    broker = make_broker(workdir / "broker")
    broker.start()
    ready: list[float] = []
    stop: list[float] = []
    providers = "".join(
        f'[[providers]]\ntype = "testprov"\nname = "p{i}"\nticks = 1\n' for i in range(instances)
    )
    config = (
        f'state_dir = "{workdir / "state"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n{providers}'
    )
    try:
        for n in range(rounds):
            async with DaemonProcess(config, workdir / f"daemon{n}") as daemon:
                ready.append(await daemon.wait_ready())
                _code, elapsed = await daemon.terminate()
                stop.append(elapsed)
    finally:
        broker.stop()
    print(f"start to READY=1 with {instances} providers: {summary(ready, '{:.3f}')} s")
    print(f"SIGTERM to exit:                        {summary(stop, '{:.3f}')} s")
    return {"ready_s": sorted(ready)[len(ready) // 2], "stop_s": sorted(stop)[len(stop) // 2]}
