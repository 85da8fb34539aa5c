"""``fin2mqtt demo``: messages flow within seconds, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time


async def start_demo(*args: str):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a shell job
    )  # fmt: skip


async def read_until(proc, needle: str, timeout: float = 20) -> str:
    seen = ""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError(f"demo ended before {needle!r}:\n{seen}")
            seen += line.decode()
    return seen


async def test_demo_shows_messages_and_stops_on_ctrl_c():
    """Also beside a fin2mqtt service holding the default webhook port, 8787: the demo's
    webhook server takes a free port, and the Vezgo simulator posts there."""
    with contextlib.ExitStack() as stack:
        taken = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken by someone else: the same case
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        await _demo_shows_messages_and_stops_on_ctrl_c()


async def _demo_shows_messages_and_stops_on_ctrl_c() -> None:
    proc = await start_demo()
    try:
        head = await read_until(proc, "example/main/trade")
        assert "watch it yourself:  mosquitto_sub" in head
        assert "; webhooks and /healthz on http://127.0.0.1:" in head
        assert "127.0.0.1:8787" not in head
        assert "bridge/state  state=online" in head
        assert "   example/main/balance/usd  asset=USD total=1000.00" in head
        assert " E example/main/trade  status=filled" in head
        assert "example/market/btc-usd/price  market=BTC-USD price=" in head
        head += await read_until(proc, "/status/sync  topic=sync status=")  # a Vezgo webhook
        assert "   vezgo/link  state=connected" in head
        began = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group gets it
        rest, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0
        assert time.monotonic() - began < 5
        assert "bridge/state  state=offline" in rest.decode()
        assert "stopped (" in rest.decode()
        assert "unreachable" not in rest.decode()  # the embedded broker outlived the daemon
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_uses_the_broker_named_in_the_environment(broker):
    env = {
        **os.environ,
        "FIN2MQTT_MQTT__HOST": broker.host,
        "FIN2MQTT_MQTT__PORT": str(broker.port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", "--seconds", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        cwd="/",  # no ./fin2mqtt.toml: the environment alone names the broker
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "using the broker configured in FIN2MQTT_MQTT__HOST, FIN2MQTT_MQTT__PORT" in text
    assert "starting an embedded MQTT broker" not in text
    assert f"broker {broker.host}:{broker.port}" in text
    assert "example/main/trade" in text
