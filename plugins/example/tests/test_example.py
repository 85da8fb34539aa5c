"""The template plugin: recorded frames → events, and end to end against its simulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fin2mqtt_example import ExampleProvider, ExampleSettings
from fin2mqtt_example.simulator import ExampleSimulator

from bridge.testing.daemon import DaemonProcess
from bridge.testing.parsing import parse_frames

FRAMES = json.loads((Path(__file__).parent / "frames.json").read_text())
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def parse_all():
    """The frames through ``parse`` as the core runs it (an unhandled frame becomes raw)."""
    provider = ExampleProvider("ex", ExampleSettings(api_key="k"))
    return [e.model_dump(mode="json", by_alias=True) for e in parse_frames(provider, FRAMES, NOW)]


def test_recorded_frames_become_events():
    events = parse_all()
    assert [(e["kind"], e.get("asset") or e.get("market") or e.get("name")) for e in events] == [
        ("balance", "USD"),
        ("market_price", "BTC-USD"),
        ("trade", None),
        ("balance", "USD"),
        ("raw", "maintenance"),
    ]
    trade = events[2]
    assert trade["trade_id"] == "9007199254740993"  # 2^53 + 1 stays exact
    assert (trade["side"], trade["price"], trade["quantity"]) == ("buy", "64000.25", "0.001")
    assert trade["source_time"] == "2025-10-09T08:53:21Z"
    assert events[1]["account"] is None
    assert events[4]["data"] == {"type": "maintenance", "minutes": 5}


def test_parse_is_deterministic():
    assert parse_all() == parse_all()


@pytest.fixture
async def simulator():
    async with ExampleSimulator() as sim:
        yield sim


async def test_end_to_end_with_the_simulator(broker, recorder, daemon_config, simulator, tmp_path):
    providers = f"""
[[providers]]
type = "example"
name = "ex"
url = "{simulator.url}"
api_key = "demo-key"
retry_min = 0.05
retry_max = 0.2
"""
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        balance = (await recorder.wait_topic("fin2mqtt/ex/main/balance/usd"))[0].json()
        assert balance["total"] == "1000.00"
        await simulator.broadcast([simulator.price_frame("BTC-USD"), *simulator.fill_frames()])
        trade = (await recorder.wait_topic("fin2mqtt/ex/main/trade"))[0]
        assert trade.qos == 1
        assert trade.json()["trade_id"] == "9007199254740994"
        price = (await recorder.wait_topic("fin2mqtt/ex/market/btc-usd/price"))[0].json()
        assert price["market"] == "BTC-USD"
        await recorder.wait_topic(
            "homeassistant/sensor/fin2mqtt_ex/market_btc-usd_price_price/config"
        )
        code, elapsed = await daemon.terminate()
        assert code == 0
        assert elapsed < 5
    # a clean stop is not a crash: the link is not restarted on the way out
    after_stop = daemon.log().split("INFO    fin2mqtt: stopping", 1)[1]
    assert "restarting" not in after_stop
    assert "connected again" not in after_stop
    links = [m.json()["state"] for m in recorder.on("fin2mqtt/ex/link")]
    assert links[-1] == "connected"


async def test_wrong_key_is_auth_failed_on_the_link_topic(
    broker, recorder, daemon_config, simulator, tmp_path
):
    providers = f"""
[[providers]]
type = "example"
name = "ex"
url = "{simulator.url}"
api_key = "wrong"
"""
    async with DaemonProcess(daemon_config(providers), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: any(
                m.topic == "fin2mqtt/ex/link" and m.json()["state"] == "auth_failed" for m in ms
            )
        )
        link = next(
            m.json() for m in recorder.on("fin2mqtt/ex/link") if m.json()["state"] == "auth_failed"
        )
        assert link["error"] == "handshake refused: HTTP 401"
        await daemon.terminate()
    assert "link auth_failed: handshake refused: HTTP 401 (retrying)" in daemon.log()
