"""Hibachi end to end: simulator ↔ daemon (subprocess) ↔ mosquitto ↔ subscriber."""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
from fin2mqtt_hibachi.simulator import API_KEY, HibachiSimulator

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

BASE = "fin2mqtt/hib/main"


def providers(sim: HibachiSimulator, *, key: str = API_KEY, ping: float = 0.1) -> str:
    return f"""
[[providers]]
type = "hibachi"
name = "hib"
api_key = "{key}"
base_url = "{sim.base_url}"
accounts = [{{id = 128, alias = "main"}}]
ping_interval = {ping}
request_timeout = 0.3
retry_min = 0.05
retry_max = 0.2
auth_retry = 0.3
"""


@pytest.fixture
async def sim():
    async with HibachiSimulator(expiry=0.5) as s:  # the real key lives 10 s: 1/20 of the time here
        yield s


async def test_snapshot_becomes_retained_balance_and_positions(
    broker, recorder, daemon_config, sim, tmp_path
):
    async with DaemonProcess(daemon_config(providers(sim)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{BASE}/position/eth-usdt-p")
        state = await retained(broker.host, broker.port, f"{BASE}/#")
        balance = state[f"{BASE}/balance/usdt"].json()
        assert (balance["total"], balance["asset"]) == ("910.997790", "USDT")
        position = state[f"{BASE}/position/eth-usdt-p"].json()
        assert (position["direction"], position["quantity"], position["unrealized_pnl"]) == (
            "long",
            "0.002552700",
            "-0.003021",
        )
        assert state[f"{BASE}/link"].json()["state"] == "connected"
        await daemon.terminate()


async def test_every_documented_event_reaches_its_topic(
    broker, recorder: MqttRecorder, daemon_config, sim, tmp_path
):
    async with DaemonProcess(daemon_config(providers(sim)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{BASE}/link")
        await sim.wait_until(lambda: sim.starts == 1 and sim.streams and sim.streams[0].key)
        assert await sim.push(128, sim.seed_events(128)) == 1
        await recorder.wait_topic(f"{BASE}/order", 6)
        await recorder.wait_topic(f"{BASE}/trade", 2)
        await recorder.wait_topic(f"{BASE}/transaction", 7)
        await recorder.wait_topic(f"{BASE}/notification", 1)
        orders = [m.json()["status"] for m in recorder.on(f"{BASE}/order")]
        assert sorted(orders) == sorted(
            ["created", "updated", "cancelled", "partially_matched", "rejected", "matched"]
        )
        assert all(m.qos == 1 and not m.retain for m in recorder.on(f"{BASE}/order"))
        txs = sorted(
            (m.json()["type"], m.json()["status"]) for m in recorder.on(f"{BASE}/transaction")
        )
        assert txs == sorted([
            ("deposit", "credited"), ("withdrawal", "debited"), ("funding", "settled"),
            ("deposit", "processing/accepted/rejected/succeeded"),
            ("transfer", "processing/accepted/rejected/succeeded"),
            ("withdrawal", "rejected"), ("withdrawal", "processing/accepted/rejected/succeeded"),
        ])  # fmt: skip
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/balance/usdt" and m.json()["total"] == "1234.000000" for m in ms
            )
        )
        await recorder.wait_topic(f"{BASE}/position/hft-usdt-p")
        # the BTC position arrives already closed: its topic never held anything, so there is
        # nothing to clear (a clear is published only for a topic that holds state)
        await asyncio.sleep(0.3)
        assert recorder.on(f"{BASE}/position/btc-usdt-p") == []
        await daemon.terminate()


async def test_pings_keep_the_key_alive(broker, recorder, daemon_config, sim, tmp_path):
    async with DaemonProcess(daemon_config(providers(sim)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: sim.starts == 1)
        await asyncio.sleep(3.0)  # six expiry periods ≈ 60 s of the real server
        assert sim.expirations == 0
        assert sim.starts == 1 and sim.connects == 1
        assert sim.pings >= 20
        await daemon.terminate()


async def test_missed_ping_reply_restarts_with_a_fresh_snapshot_and_no_duplicates(
    broker, recorder: MqttRecorder, daemon_config, sim, tmp_path
):
    async with DaemonProcess(daemon_config(providers(sim)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: sim.starts == 1 and sim.streams and sim.streams[0].key)
        order = sim.seed_events(128)[0]
        await sim.push(128, [order])
        await recorder.wait_topic(f"{BASE}/order")
        sim.ignore_pings = True
        await sim.wait_until(lambda: sim.connects == 2, timeout=5)
        sim.ignore_pings = False
        await sim.wait_until(lambda: sim.starts == 2 and sim.streams and sim.streams[0].key)
        await sim.push(128, [order])  # the same fact again after the reconnect
        await recorder.wait_for(
            lambda ms: (
                [m.json()["state"] for m in ms if m.topic == f"{BASE}/link"][-1:] == ["connected"]
            ),
            what="connected again",
        )
        await asyncio.sleep(0.3)
        assert len(recorder.on(f"{BASE}/order")) == 1
        # the fresh snapshot repeats an unchanged balance: not published again
        assert len(recorder.on(f"{BASE}/balance/usdt")) == 1
        # the log says why (the link topic may skip a short "disconnected": see wait_log)
        await daemon.wait_log("disconnected: no reply to stream.ping")
        errors = [
            m.json()["error"]
            for m in recorder.on(f"{BASE}/link")
            if m.json()["state"] == "disconnected"
        ]
        assert all(e.startswith("no reply to stream.ping") for e in errors), errors
        await daemon.terminate()


async def test_expired_key_restarts_the_stream(broker, recorder, daemon_config, sim, tmp_path):
    # pings far slower than the key's life: the server expires it and says so
    config = daemon_config(providers(sim, ping=5.0))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: sim.expirations >= 1 and sim.starts >= 2, timeout=5)
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/link"
                and m.json()["error"] == "listen key expired (stream_expired)"
                for m in ms
            )
        )
        await daemon.terminate()


async def test_sigterm_sends_stream_stop(broker, recorder, daemon_config, sim, tmp_path):
    async with DaemonProcess(daemon_config(providers(sim)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: sim.starts == 1 and sim.streams and sim.streams[0].key)
        key = sim.streams[0].key
        code, elapsed = await daemon.terminate()
        assert code == 0 and elapsed < 5
    assert sim.stops == [key]


async def test_bad_key_is_auth_failed_on_the_link_topic(
    broker, recorder, daemon_config, sim, tmp_path
):
    async with DaemonProcess(daemon_config(providers(sim, key="wrong")), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/link" and m.json()["state"] == "auth_failed" for m in ms
            )
        )
        link = next(
            m.json() for m in recorder.on(f"{BASE}/link") if m.json()["state"] == "auth_failed"
        )
        assert link["error"] == "handshake refused: HTTP 401"
        await asyncio.sleep(0.5)
        assert sim.attempts <= 3  # retried slowly (auth_retry 0.3 s), not hammered
        await daemon.terminate()


async def test_an_account_hung_up_in_the_handshake_leaves_the_other_account_alone(
    broker, recorder: MqttRecorder, daemon_config, sim, tmp_path
):
    attempts: Counter[str] = Counter()
    refuse_b = [True]

    def hang_up(request) -> bool:
        account = parse_qs(urlsplit(request.path).query)["accountId"][0]
        attempts[account] += 1
        return account == "129" and refuse_b[0]

    sim.hang_up = hang_up
    config = providers(sim).replace(
        'accounts = [{id = 128, alias = "main"}]',
        'accounts = [{id = 128, alias = "a"}, {id = 129, alias = "b"}]',
    )
    a_link, b_link = "fin2mqtt/hib/a/link", "fin2mqtt/hib/b/link"

    def last(topic: str) -> tuple[str, str | None]:
        messages = recorder.on(topic)
        return (
            (messages[-1].json()["state"], messages[-1].json()["error"]) if messages else ("", None)
        )

    async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(lambda ms: last(a_link)[0] == "connected", what="A connected")
        await sim.wait_until(lambda: attempts["129"] >= 4)  # B is retried, on its own
        assert last(b_link)[0] in ("disconnected", "connecting")
        b_errors = {m.json()["error"] for m in recorder.on(b_link)} - {None}
        assert all(e.startswith("handshake failed: InvalidMessage: ") for e in b_errors), b_errors
        assert b_errors
        # A: one handshake, its link topic never said anything but connecting/connected
        assert attempts["128"] == 1
        assert {m.json()["state"] for m in recorder.on(a_link)} <= {"connecting", "connected"}
        assert await sim.push(128, sim.seed_events(128)[:1]) == 1  # A's socket is alive
        await recorder.wait_topic("fin2mqtt/hib/a/order")

        refuse_b[0] = False
        await recorder.wait_for(lambda ms: last(b_link)[0] == "connected", what="B connected")
        state = await retained(broker.host, broker.port, "fin2mqtt/hib/#")
        links = {
            t: (m.json()["state"], m.json()["error"])
            for t, m in state.items()
            if t.endswith("/link")
        }
        # every link topic is true, and none belongs to the instance as a whole
        assert links == {a_link: ("connected", None), b_link: ("connected", None)}
        assert recorder.on("fin2mqtt/hib/link") == []
        assert attempts["128"] == 1
        assert "provider crashed" not in daemon.log()
        assert "ExceptionGroup" not in daemon.log()
        await daemon.terminate()
