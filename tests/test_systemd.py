"""systemd integration: sd_notify messages, watchdog, journald-friendly logs, clean stop."""

from __future__ import annotations

import asyncio

from bridge.testing.daemon import DaemonProcess

PROVIDER = """
[[providers]]
type = "testprov"
name = "alpha"
ticks = 1
stop_marker = "{marker}"
"""


async def test_notifications_ready_status_watchdog_stopping(broker, daemon_config, tmp_path):
    marker = tmp_path / "stopped"
    config = daemon_config(PROVIDER.format(marker=marker))
    env = {"WATCHDOG_USEC": "400000"}  # 0.4 s: the daemon must ping every 0.2 s
    async with DaemonProcess(config, tmp_path / "d", env=env) as daemon:
        ready_after = await daemon.wait_ready()
        assert ready_after < 10
        assert daemon.notifications[:2] == [
            f"STATUS=connecting to MQTT broker {broker.host}:{broker.port}; 1 provider(s)",
            "READY=1",  # once the providers are started, whether or not the broker is up
        ]
        assert (
            f"STATUS=connected to MQTT broker {broker.host}:{broker.port}; 1 provider(s)"
            in daemon.notifications
        )
        await asyncio.sleep(1.0)
        pings = daemon.notifications.count("WATCHDOG=1")
        assert 3 <= pings <= 7
        code, elapsed = await daemon.terminate()
        assert code == 0
        assert elapsed < 5
        assert daemon.notifications[-2:] == ["STOPPING=1", "STATUS=stopping"]
    # the provider's clean-stop hook ran before the process exited
    assert marker.read_text() == "stopped at 1\n"


async def test_watchdog_is_fed_while_the_publisher_keeps_retrying(broker, daemon_config, tmp_path):
    config = daemon_config(PROVIDER.format(marker=tmp_path / "m"), mqtt="keepalive = 5")
    # a broker outage is not a daemon fault: restarting fin2mqtt would not bring the broker
    # back, so the watchdog stays fed while the publisher is retrying on schedule
    async with DaemonProcess(config, tmp_path / "d", env={"WATCHDOG_USEC": "400000"}) as daemon:
        await daemon.wait_ready()
        broker.stop()
        before = daemon.notifications.count("WATCHDOG=1")
        await asyncio.sleep(1.0)
        assert daemon.notifications.count("WATCHDOG=1") > before
        broker.start()
        await daemon.terminate()


async def test_logs_under_journald_carry_priority_and_no_timestamp(broker, daemon_config, tmp_path):
    import os

    config = daemon_config(PROVIDER.format(marker=tmp_path / "m"))
    log_file = tmp_path / "d" / "daemon.log"
    log_file.parent.mkdir(parents=True)
    log_file.touch()
    st = os.stat(log_file)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    async with DaemonProcess(config, tmp_path / "d", env=env) as daemon:
        await daemon.wait_ready()
        await daemon.terminate()
    lines = daemon.log().splitlines()
    assert "<6>fin2mqtt: fin2mqtt 0.2.0 starting: 1 provider instance(s)" in lines
    assert any(line.startswith("<6>fin2mqtt: ready (") for line in lines)


async def test_logs_outside_journald_have_timestamps(broker, daemon_config, tmp_path):
    config = daemon_config(PROVIDER.format(marker=tmp_path / "m"))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await daemon.terminate()
    line = next(l for l in daemon.log().splitlines() if "starting" in l)
    assert line[:4].isdigit() and line[4] == "-"  # 2026-…
    assert line.endswith(" INFO    fin2mqtt: fin2mqtt 0.2.0 starting: 1 provider instance(s)")


async def test_sigterm_before_the_broker_is_reachable_exits_cleanly(
    daemon_config, broker, tmp_path
):
    broker.stop()
    async with DaemonProcess(
        daemon_config(PROVIDER.format(marker=tmp_path / "m")), tmp_path / "d"
    ) as daemon:
        # READY does not wait for the broker: systemd's start timeout would kill and restart
        # the daemon in a loop while the broker is down, each time losing what it holds
        await daemon.wait_ready(broker=False)
        await asyncio.sleep(0.5)
        code, elapsed = await daemon.terminate()
        assert code == 0
        assert elapsed < 5
        assert not any(n.startswith("STATUS=connected") for n in daemon.notifications)
    assert f"MQTT broker {broker.host}:{broker.port} unreachable" in daemon.log()
