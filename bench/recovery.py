"""Recovery: broker restarted → all retained state back; upstream dropped → snapshot back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
from fin2mqtt_hibachi.simulator import HibachiSimulator

from bench.e2e import ACCOUNT, daemon_config
from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained


async def run(workdir: Path, broker: Broker) -> dict[str, float]:
    """Both recovery times, in seconds, from the moment the broken part is back."""
    async with HibachiSimulator(expiry=60) as sim:
        config = daemon_config(workdir / "recovery", broker, sim, 1)
        async with DaemonProcess(config, workdir / "daemon-recovery") as daemon:
            await daemon.wait_ready(30)
            await sim.wait_until(lambda: sim.starts >= 1, timeout=30)
            await asyncio.sleep(1.5)  # let bridge/stats and everything else settle
            expected = set(await retained(broker.host, broker.port))

            broker.restart()  # no persistence: every retained message is gone
            back = time.monotonic()
            while not expected <= await _retained_now(broker):
                assert time.monotonic() - back < 60, "retained state not back within 60 s"
                await asyncio.sleep(0.01)
            broker_s = time.monotonic() - back

            # The snapshot after a reconnect repeats unchanged state, which is not republished:
            # the link topic going back to "connected" is what a subscriber sees.
            topic = f"fin2mqtt/hib/{ACCOUNT}/link"
            async with MqttRecorder(broker.host, broker.port, (topic,)) as rec:
                await rec.wait_topic(topic)  # the retained one
                starts = sim.starts
                sim.drop_all()
                dropped = time.monotonic()
                await rec.wait_for(
                    lambda ms: _down_then_up([m.json()["state"] for m in ms if m.topic == topic]),
                    timeout=30,
                    what="the link down, then connected again",
                )
                upstream_s = time.monotonic() - dropped
                assert sim.starts == starts + 1
            await daemon.terminate(30)
    print(f"broker restarted -> all {len(expected)} retained topics back: {broker_s:.3f} s")
    print(f"upstream dropped -> reconnected, snapshot taken:          {upstream_s:.3f} s")
    return {"broker_recovery_s": round(broker_s, 3), "upstream_recovery_s": round(upstream_s, 3)}


async def _retained_now(broker: Broker) -> set[str]:
    """The retained topics a new subscriber gets; none while the restarted broker does not
    answer yet (amqtt, just started, has let a SUBSCRIBE wait past the client's timeout)."""
    try:
        return set(await retained(broker.host, broker.port, quiet=0.05))
    except aiomqtt.MqttError:
        return set()


def _down_then_up(states: list[str]) -> bool:
    """The link left ``connected`` and came back to it."""
    down = next((i for i, s in enumerate(states) if s != "connected"), None)
    return down is not None and "connected" in states[down:]
