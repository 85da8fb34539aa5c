"""What survives a stop, a SIGKILL and a restart: the outbox, delivered ids, owned retained topics.

The real daemon (a subprocess) with the scripted test provider, a real broker, and subscribers
counting events by id. The state directory is kept between the runs of one test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.pipeline.journal import Journal
from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

TX = "fin2mqtt/alpha/acc-1/transaction"


def provider(ticks: int, interval: float = 0.001, **extra: str) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return (
        "[[providers]]\n"
        'type = "testprov"\n'
        'name = "alpha"\n'
        f"interval = {interval}\n"
        f"ticks = {ticks}\n"
        f"{lines}"
    )


def waiting_in_journal(state_dir: Path) -> int:
    """The events a start would read from the state file now."""
    journal = Journal(state_dir, 1)
    try:
        return len(journal.open().events)
    finally:
        journal.close()


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def tx_ids(rec: MqttRecorder) -> list[str]:
    return [m.json()["id"] for m in rec.on(TX)]


async def test_events_accepted_while_the_broker_is_down_survive_sigkill(
    broker: Broker, daemon_config, tmp_path
):
    state = tmp_path / "state"
    broker.stop()
    async with DaemonProcess(daemon_config(provider(1000)), tmp_path / "d1") as daemon:
        await daemon.wait_ready(broker=False)
        # accepted = written to the state directory
        await until(
            lambda: (state / "state.sqlite3").exists() and waiting_in_journal(state) == 1000
        )
        daemon.kill()
    broker.start()
    # the upstream says nothing new after the restart: only the journal can deliver them
    async with (
        MqttRecorder(broker.host, broker.port, (TX,)) as rec,
        DaemonProcess(daemon_config(provider(0)), tmp_path / "d2") as daemon,
    ):
        await daemon.wait_ready()
        await rec.wait_for(lambda ms: len(ms) >= 1000, timeout=20, what="1,000 events")
        await until(lambda: waiting_in_journal(state) == 0)
        await daemon.terminate()
    ids = tx_ids(rec)
    assert sorted(set(ids)) == sorted(f"tx-{n}" for n in range(1000))
    assert len(ids) == 1000
    assert [m.qos for m in rec.on(TX)] == [1] * 1000


async def test_dropped_events_are_delivered_when_the_upstream_replays_them(
    broker: Broker, daemon_config, tmp_path
):
    broker.stop()
    config = daemon_config(provider(150), mqtt="outbox_size = 100")
    async with DaemonProcess(config, tmp_path / "d1") as daemon:
        await daemon.wait_ready(broker=False)
        await until(lambda: "dropped 1 oldest event(s), 1 in total" in daemon.log())
        await asyncio.sleep(0.5)
        code, _ = await daemon.terminate()
        assert code == 0
    assert "50 event(s) were dropped in this run (outbox full)" in daemon.log()
    assert "stopped; 100 event(s) not delivered, kept for the next start" in daemon.log()
    assert waiting_in_journal(tmp_path / "state") == 100  # tx-50 … tx-149
    broker.start()
    # the upstream replays all 150 after the restart: the 50 dropped ones were never
    # delivered, so their ids were never committed, and they go out now
    async with (
        MqttRecorder(broker.host, broker.port, (TX,)) as rec,
        DaemonProcess(config, tmp_path / "d2") as daemon,
    ):
        await daemon.wait_ready()
        await rec.wait_for(lambda ms: len(ms) >= 150, timeout=20, what="150 events")
        await asyncio.sleep(0.5)
        await daemon.terminate()
    ids = tx_ids(rec)
    assert sorted(ids) == sorted(f"tx-{n}" for n in range(150))  # each exactly once


async def test_delivered_ids_are_remembered_across_a_restart(
    broker: Broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    config = daemon_config(provider(30, interval=0.005))
    for run in (1, 2):  # the second run replays the same 30 transactions
        async with DaemonProcess(config, tmp_path / f"d{run}") as daemon:
            await daemon.wait_ready()
            await recorder.wait_for(lambda ms: len([m for m in ms if m.topic == TX]) >= 30)
            await asyncio.sleep(0.5)
            await daemon.terminate()
    assert sorted(tx_ids(recorder)) == sorted(f"tx-{n}" for n in range(30))


def instances(*tables: str) -> str:
    return "\n".join(tables)


def table(name: str, account: str, positions: str = "{}") -> str:
    return (
        "[[providers]]\n"
        'type = "testprov"\n'
        f'name = "{name}"\n'
        f'account = "{account}"\n'
        "ticks = 0\n"
        f"positions = {positions}\n"
    )


async def test_what_the_previous_run_owned_and_is_gone_is_cleared_after_a_restart(
    broker: Broker, daemon_config, tmp_path
):
    fast = "cleanup_delay = 0.5"
    first = instances(
        table("alpha", "acc-1", '{ ETH = "1", BTC = "2" }'),
        table("beta", "acc-1"),
        table("delta", "old"),
    )
    async with DaemonProcess(daemon_config(first, mqtt=fast), tmp_path / "d1") as daemon:
        await daemon.wait_ready()
        await asyncio.sleep(1.0)
        await daemon.terminate()
    before = set(await retained(broker.host, broker.port))
    assert "fin2mqtt/alpha/acc-1/position/btc" in before
    assert "fin2mqtt/beta/acc-1/balance/usd" in before
    assert "fin2mqtt/delta/old/balance/usd" in before

    # BTC closed while the daemon was stopped, beta removed, delta's account renamed
    second = instances(table("alpha", "acc-1", '{ ETH = "1" }'), table("delta", "new"))
    async with DaemonProcess(daemon_config(second, mqtt=fast), tmp_path / "d2") as daemon:
        await daemon.wait_ready()
        await asyncio.sleep(2.0)
        after = await retained(broker.host, broker.port)
        await daemon.terminate()
    gone = before - set(after)
    assert {t for t in gone if not t.startswith("homeassistant/")} == {
        "fin2mqtt/alpha/acc-1/position/btc",
        "fin2mqtt/beta/link",
        "fin2mqtt/beta/acc-1/balance/usd",
        "fin2mqtt/delta/old/balance/usd",
    }
    assert {t for t in gone if t.startswith("homeassistant/")} == {
        t for t in before if t.startswith("homeassistant/") and ("btc" in t or "beta" in t
                                                                or "old_" in t)
    }  # fmt: skip
    assert "fin2mqtt/alpha/acc-1/position/eth" in after
    assert "fin2mqtt/delta/new/balance/usd" in after
    assert not any("beta" in t or "/old/" in t or "btc" in t for t in after)


async def test_a_provider_that_restores_nothing_keeps_its_previous_topics(
    broker: Broker, daemon_config, tmp_path
):
    # a webhook provider hears of an account only when the upstream pushes: what the previous
    # run published stays until the provider changes or clears it
    fast = "cleanup_delay = 0.3"
    first = table("hooks", "acc-1") + "restores_state = false\n"
    async with DaemonProcess(daemon_config(first, mqtt=fast), tmp_path / "d1") as daemon:
        await daemon.wait_ready()
        await asyncio.sleep(0.5)
        await daemon.terminate()
    second = table("hooks", "acc-2") + "restores_state = false\n"
    async with DaemonProcess(daemon_config(second, mqtt=fast), tmp_path / "d2") as daemon:
        await daemon.wait_ready()
        await asyncio.sleep(1.5)
        after = await retained(broker.host, broker.port)
        await daemon.terminate()
    assert "fin2mqtt/hooks/acc-1/balance/usd" in after
    assert "fin2mqtt/hooks/acc-2/balance/usd" in after
