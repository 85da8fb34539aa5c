"""No configured secret in any log line, MQTT payload, bridge/info or check output (issue 16).

The daemon runs at ``log_level = "trace"`` (protocol libraries' debug output included) with a
known value for every kind of secret, and every provider's simulator is driven through
connect, auth failure, reconnect and a parse failure.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fin2mqtt_example.simulator import ExampleSimulator
from fin2mqtt_hibachi.simulator import HibachiSimulator
from fin2mqtt_ibex.simulator import IbexSimulator
from fin2mqtt_vezta.simulator import VeztaSimulator

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

HIBACHI_KEY = "hib-key-SECRET-0001"
HIBACHI_WRONG_KEY = "hib-wrong-SECRET-0002"
EXAMPLE_KEY = "ex-key-SECRET-0003"
URL_PASSWORD = "url-pass-SECRET-0004"
URL_QUERY_KEY = "q-key-SECRET-0005"
COMMAND_PASSWORD = "cmd-pass-SECRET-0006"
BAD_JWT = "bad-jwt-SECRET-0007"
VEZTA_JWT = "vezta-jwt-SECRET-0008"
CLIENT_SECRET = "client-SECRET-0009"
MQTT_PASSWORD = "mqtt-pass-SECRET-0010"


def link_state(recorder: MqttRecorder, topic: str) -> str | None:
    states = [m.json()["state"] for m in recorder.on(topic) if m.payload]
    return states[-1] if states else None


async def wait_state(recorder: MqttRecorder, topic: str, state: str, timeout: float = 15) -> None:
    await recorder.wait_for(
        lambda ms: any(m.topic == topic and m.payload and m.json()["state"] == state for m in ms),
        timeout=timeout,
        what=f"{topic} {state}",
    )


@pytest.mark.timeout(90)
async def test_no_secret_leaves_the_bridge(broker, recorder, daemon_config, tmp_path: Path):
    jwt_file = tmp_path / "ibex.jwt"
    jwt_file.write_text(BAD_JWT + "\n")  # refused first: auth failure, then a good one
    command = f'["sh", "-c", "cat {jwt_file} # fetched with {COMMAND_PASSWORD}"]'
    async with (
        HibachiSimulator(api_key=HIBACHI_KEY) as hibachi,
        ExampleSimulator(api_key=EXAMPLE_KEY) as example,
        IbexSimulator() as ibex,
        VeztaSimulator(tokens=(VEZTA_JWT,)) as vezta,
    ):
        ibex_jwt = ibex.mint()
        providers = f"""
[[providers]]
type = "hibachi"
name = "hib"
api_key = "{HIBACHI_KEY}"
base_url = "{hibachi.base_url}"
accounts = [{{id = 128, alias = "main"}}]
ping_interval = 0.2
retry_min = 0.05
retry_max = 0.2
auth_retry = 0.3

[[providers]]
type = "hibachi"
name = "hibbad"
api_key = "{HIBACHI_WRONG_KEY}"
base_url = "{hibachi.base_url}"
accounts = [{{id = 129, alias = "main"}}]
retry_min = 0.05
retry_max = 0.2
auth_retry = 0.3

[[providers]]
type = "example"
name = "ex"
api_key = "{EXAMPLE_KEY}"
url = "{example.url}"
retry_min = 0.05
retry_max = 0.2

[[providers]]
type = "ibex"
name = "ibex"
api_url = "http://127.0.0.1:{ibex.port}"
token_command = {command}
safes = [{{address = "{"0x" + "ab" * 20}", alias = "main"}}]
fallback_after = 30
token_poll = 0.1
retry_min = 0.05
retry_max = 0.2
auth_retry = 0.3

[[providers]]
type = "vezta"
name = "vz"
url = "{vezta.ws_url}"
token = "{VEZTA_JWT}"
channels = ["user:orders", "market:prices"]
retry_min = 0.05
retry_max = 0.2

[[providers]]
type = "testprov"
name = "tp"
client_secret = "{CLIENT_SECRET}"
url = "wss://fin2mqtt:{URL_PASSWORD}@upstream.invalid/ws?apikey={URL_QUERY_KEY}"
garbage_at = 2
ticks = 4
"""
        config = daemon_config(
            providers,
            extra='log_level = "trace"',
            mqtt=f'username = "fin2mqtt"\npassword = "{MQTT_PASSWORD}"',
        ).replace('log_level = "debug"\n', "")
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            # connect, and an auth failure
            await wait_state(recorder, "fin2mqtt/hib/main/link", "connected")
            await wait_state(recorder, "fin2mqtt/hibbad/main/link", "auth_failed")
            await wait_state(recorder, "fin2mqtt/ex/link", "connected")
            await wait_state(recorder, "fin2mqtt/vz/link", "connected")
            await wait_state(recorder, "fin2mqtt/ibex/link", "auth_failed")
            jwt_file.write_text(ibex_jwt + "\n")  # the command now prints a good token
            await wait_state(recorder, "fin2mqtt/ibex/link", "connected")
            # a parse failure and a malformed known event
            await example.send_garbage()
            await hibachi.push(128, [{"event": "trade_update", "account": "128"}])
            await recorder.wait_topic("fin2mqtt/ex/raw")
            await recorder.wait_topic("fin2mqtt/hib/main/raw")
            await recorder.wait_topic("fin2mqtt/tp/raw")
            # reconnect
            connects = hibachi.starts
            hibachi.drop_all()
            example.drop_all()
            await hibachi.wait_until(lambda: hibachi.starts > connects, timeout=10)
            await wait_state(recorder, "fin2mqtt/ex/link", "connected")
            info = await retained(broker.host, broker.port, "fin2mqtt/bridge/info")
            await daemon.terminate()
        check = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bridge", "check", "-c", str(daemon.config_path)],
            capture_output=True, text=True, env=dict(os.environ), check=False, timeout=60,
        )  # fmt: skip

    secrets = [
        HIBACHI_KEY, HIBACHI_WRONG_KEY, EXAMPLE_KEY, URL_PASSWORD, URL_QUERY_KEY,
        COMMAND_PASSWORD, BAD_JWT, ibex_jwt, VEZTA_JWT, CLIENT_SECRET, MQTT_PASSWORD,
    ]  # fmt: skip
    log = daemon.log()
    assert "websockets.client" in log  # the most verbose level really ran
    assert check.returncode == 0, check.stderr
    places = {
        "log": log,
        "check": check.stdout + check.stderr,
        "bridge/info": info["fin2mqtt/bridge/info"].payload.decode(),
        "mqtt": "\n".join(
            f"{m.topic} {m.payload.decode(errors='replace')}" for m in recorder.messages
        ),
    }
    leaks = [(where, s) for where, text in places.items() for s in secrets if s in text]
    assert leaks == []
