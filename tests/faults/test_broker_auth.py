"""TLS with a self-signed CA and password authentication against mosquitto (skipped on amqtt).

A wrong CA or password is said in the log and in the STATUS= line systemd shows, retried with
backoff, never a crash; once the broker accepts (its password file fixed), the events accepted
meanwhile arrive once each.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.testing.broker import Broker, make_broker, make_tls
from bridge.testing.daemon import DaemonProcess

from .conftest import Subscriber, no_crash, record, stop_cleanly, tally

USER, PASSWORD = "fin2mqtt", "s3cret-Pa55"
TICKS = '[[providers]]\ntype = "testprov"\nname = "alpha"\ninterval = 0.01\nticks = {ticks}\n'


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Broker]:
    b = make_broker(tmp_path / "secure", persistence=True, tls=True, users={USER: PASSWORD})
    if not b.supports_auth:
        pytest.skip("TLS and passwords need mosquitto")
    if shutil.which("openssl") is None:
        pytest.skip("the test certificates are made with openssl, which is not installed")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def config(broker: Broker, tmp_path: Path, *, ca: Path, password: str, ticks: int) -> str:
    return (
        f'state_dir = "{tmp_path / "state"}"\n'
        'log_level = "debug"\n'
        "[mqtt]\n"
        f'host = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{USER}"\npassword = "{password}"\n'
        "reconnect_min = 0.05\nreconnect_max = 0.3\n"
        f'tls = {{ enabled = true, ca_file = "{ca}" }}\n'
        "[supervisor]\nrestart_min = 0.05\nrestart_max = 0.5\n" + TICKS.format(ticks=ticks)
    )


def subscriber(broker: Broker) -> Subscriber:
    assert broker.tls is not None
    return Subscriber(
        broker, "auth-counter", username=USER, password=PASSWORD, ca_file=broker.tls.ca_file
    )


async def test_tls_and_password_end_to_end(secure_broker: Broker, tmp_path):
    assert secure_broker.tls is not None
    cfg = config(secure_broker, tmp_path, ca=secure_broker.tls.ca_file, password=PASSWORD, ticks=50)
    async with subscriber(secure_broker) as sub, DaemonProcess(cfg, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sub.wait_ids([f"tx-{n}" for n in range(50)])
        tally(sub.ids(), [f"tx-{n}" for n in range(50)])
        assert sub.on("fin2mqtt/bridge/state")[-1].json() == {"schema": 1, "state": "online"}
        info = sub.on("fin2mqtt/bridge/info")[-1].json()
        assert PASSWORD not in sub.on("fin2mqtt/bridge/info")[-1].payload.decode()
        assert info["config"]["mqtt"]["password"] == "**********"
        assert PASSWORD not in daemon.log()
        await stop_cleanly(daemon)


@pytest.mark.parametrize("wrong", ["password", "ca"])
async def test_refused_by_the_broker_then_accepted(wrong: str, secure_broker: Broker, tmp_path):
    assert secure_broker.tls is not None
    other_ca = make_tls(tmp_path / "other", "other").ca_file
    ca = other_ca if wrong == "ca" else secure_broker.tls.ca_file
    password = "not-the-password" if wrong == "password" else PASSWORD
    expected = [f"tx-{n}" for n in range(100)]
    async with subscriber(secure_broker) as sub:
        async with DaemonProcess(
            config(secure_broker, tmp_path, ca=ca, password=password, ticks=100), tmp_path / "d1"
        ) as daemon:
            await daemon.wait_ready(broker=False)
            await asyncio.sleep(1.5)  # refused again and again meanwhile
            log = daemon.log()
            said = "Not authorized" if wrong == "password" else "CERTIFICATE_VERIFY_FAILED"
            assert f"MQTT broker 127.0.0.1:{secure_broker.port} unreachable" in log, log[-2000:]
            assert said in log, log[-2000:]
            assert log.count("unreachable") == 1  # said once, not once per attempt
            assert log.count("reconnecting to the broker in") >= 3  # retried, with backoff
            assert daemon.notifications[-1].startswith("STATUS=connecting to MQTT broker")
            assert not any(n.startswith("STATUS=connected") for n in daemon.notifications)
            assert password not in log
            no_crash(daemon)
            # the events accepted meanwhile wait in the state directory for the next run
            await stop_cleanly(daemon)
        assert "stopped; 100 event(s) not delivered, kept for the next start" in daemon.log()
        # fixed: the password the broker knows now, or the right CA
        if wrong == "password":
            secure_broker.set_users({USER: PASSWORD, "other": "x"})
        fixed = time.monotonic()
        right = config(
            secure_broker, tmp_path, ca=secure_broker.tls.ca_file, password=PASSWORD, ticks=100
        )
        async with DaemonProcess(right, tmp_path / "d2") as daemon:
            await daemon.wait_ready()
            await sub.wait_ids(expected)
            recovered = sub.last_arrival(expected) - fixed
            await asyncio.sleep(0.3)
            lost, dup = tally(sub.ids(), expected)
            await stop_cleanly(daemon)
    record(
        f"broker_refuses_{wrong}", f"wrong {'password' if wrong == 'password' else 'CA'} for 1.5 s",
        100, lost, dup, recovered, "right settings, restarted → the kept events delivered",
    )  # fmt: skip
