"""Vezta end to end: simulator (Socket.IO) ↔ daemon (subprocess) ↔ broker ↔ subscriber."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fin2mqtt_vezta.simulator import TOKEN, VeztaSimulator, six

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

BASE = "fin2mqtt/vz"
PUBLIC = ["market:prices", "market:orderbook", "market:trades", "monitor:signals"]
USER = ["user:orders", "user:notifications", "user:portfolio", "user:copy-trade"]


def providers(sim: VeztaSimulator, channels: list[str], token: str | None = None, **extra) -> str:
    settings = {
        "url": f'"{sim.ws_url}"',
        "channels": "[" + ", ".join(f'"{c}"' for c in channels) + "]",
        "retry_min": 0.05,
        "retry_max": 0.2,
        "auth_retry": 0.5,
        "subscribe_timeout": 2,
        **extra,
    }
    if token is not None:
        settings["token"] = f'"{token}"'
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f'[[providers]]\ntype = "vezta"\nname = "vz"\n{lines}\n'


def states(recorder: MqttRecorder, topic: str) -> list[tuple[str, str | None]]:
    return [(m.json()["state"], m.json()["error"]) for m in recorder.on(topic) if m.payload]


async def wait_state(recorder: MqttRecorder, topic: str, state: str) -> None:
    await recorder.wait_for(
        lambda ms: any(m.topic == topic and m.payload and m.json()["state"] == state for m in ms),
        what=f"{topic} {state}",
    )


@pytest.fixture
async def sim():
    async with VeztaSimulator() as s:
        yield s


async def test_public_channels_without_a_token_keep_only_the_chosen_markets(
    broker, recorder, daemon_config, sim, tmp_path
):
    config = providers(
        sim, PUBLIC, markets='["m-101", "fed-cut-march"]', aliases='{"m-101" = "btc-100k"}'
    )
    async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: len(sim.subscribes) == 4)
        assert [c for _, c in sim.subscribes] == PUBLIC
        await wait_state(recorder, f"{BASE}/link", "connected")
        await sim.push_prices()
        for market in sim.markets:
            await sim.publish("market:orderbook", sim.orderbook(market))
            await sim.publish("market:trades", sim.trade(market))
        await sim.publish("monitor:signals", sim.signal())

        price = (await recorder.wait_topic(f"{BASE}/market/btc-100k/price"))[0]
        assert price.qos == 1
        body = price.json()
        assert body["market"] == "btc-100k"
        assert body["account"] is None
        assert body["price"] == body["details"]["yes_price"] == six(sim.markets[0].yes)
        assert set(body["details"]) >= {"no_price", "volume_24h", "change_5m", "change_24h"}
        assert body["details"]["slug"] == "btc-above-100k-2026"
        top = (await recorder.wait_topic(f"{BASE}/market/m-102/orderbook"))[0].json()
        assert len(top["bids"]) == len(top["asks"]) == 1  # the top of the book
        assert top["bids"][0]["price"] < top["asks"][0]["price"]
        assert top["details"]["spread"] == "0.020000"
        trades = await recorder.wait_topic(f"{BASE}/trade", 2)
        assert {t.json()["symbol"] for t in trades} == {"btc-100k", "m-102"}
        assert all((t.retain, t.qos) == (False, 1) for t in trades)
        signal = (await recorder.wait_topic(f"{BASE}/notification"))[0].json()
        assert (signal["category"], signal["severity"]) == ("whale_trade", "warning")
        await recorder.wait_topic(
            "homeassistant/sensor/fin2mqtt_vz/market_btc-100k_price_price/config"
        )
        now = await retained(broker.host, broker.port, f"{BASE}/#")
        assert sorted(now) == [
            f"{BASE}/link",
            f"{BASE}/market/btc-100k/orderbook",
            f"{BASE}/market/btc-100k/price",
            f"{BASE}/market/m-102/orderbook",
            f"{BASE}/market/m-102/price",
        ]  # state is retained; trades and signals are events, not retained
        assert now[f"{BASE}/market/btc-100k/price"].payload == price.payload
        await daemon.terminate()
    # the market nobody asked for never reached the broker
    assert not [m for m in recorder.messages if "m-103" in m.topic or "eth-flippening" in m.topic]
    assert states(recorder, f"{BASE}/link")[-1] == ("connected", None)
    assert not [m for m in recorder.messages if m.topic.startswith(f"{BASE}/main/")]


async def test_user_channels_with_a_token(broker, recorder, daemon_config, sim, tmp_path):
    token_file = tmp_path / "vezta.jwt"
    token_file.write_text(TOKEN + "\n")
    config = providers(sim, USER, token_file=f'"{token_file}"')
    async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await wait_state(recorder, f"{BASE}/main/link", "connected")
        assert sorted(c for _, c in sim.subscribes) == sorted(USER)
        await sim.publish("user:orders", sim.order("o-1", "OPEN"))
        await sim.publish("user:orders", sim.order("o-2", "CREATED"))
        await sim.publish("user:portfolio", sim.portfolio())
        await sim.publish("user:notifications", sim.notification())
        await sim.publish("user:copy-trade", sim.copy_trade("failed"))

        orders = await recorder.wait_topic(f"{BASE}/main/order", 2)
        assert [(o.json()["order_id"], o.json()["status"]) for o in orders] == [
            ("o-1", "open"),
            ("o-2", "created"),
        ]
        assert all((o.retain, o.qos) == (False, 1) for o in orders)
        assert orders[0].json()["remaining_quantity"] == "100.000000"
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/main/status/open_orders" and m.json()["status"] == "2"
                for m in ms
            )
        )
        value = (await recorder.wait_topic(f"{BASE}/main/balance/usd"))[0]
        assert value.json()["total"] == sim.portfolio()["totalValue"]
        assert value.json()["details"]["realized_pnl"] == "12.500000"
        position = (await recorder.wait_topic(f"{BASE}/main/position/m-101-yes"))[0].json()
        assert (position["direction"], position["quantity"]) == ("long", "100.000000")
        notes = await recorder.wait_topic(f"{BASE}/main/notification", 2)
        assert {n.json()["category"] for n in notes} == {"order_filled", "copy_trade"}
        failed = next(n.json() for n in notes if n.json()["category"] == "copy_trade")
        assert (failed["severity"], failed["message"]) == ("error", "insufficient balance")
        await recorder.wait_topic("homeassistant/sensor/fin2mqtt_vz/main_balance_usd_total/config")
        await recorder.wait_topic(
            "homeassistant/sensor/fin2mqtt_vz/main_status_open_orders_count/config"
        )

        # the order fills, the position is sold: both leave the retained state
        await sim.publish("user:orders", sim.order("o-1", "FILLED", "100"))
        await sim.publish("user:portfolio", sim.portfolio(shares=0))
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/main/position/m-101-yes" and not m.payload for m in ms
            )
        )
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/main/status/open_orders" and m.json()["status"] == "1"
                for m in ms
            )
        )
        now = await retained(broker.host, broker.port, f"{BASE}/#")
        assert sorted(now) == [
            f"{BASE}/main/balance/usd",
            f"{BASE}/main/link",
            f"{BASE}/main/status/open_orders",
        ]
        assert now[f"{BASE}/main/status/open_orders"].json()["raw"][0]["order_id"] == "o-2"
        await daemon.terminate()
    assert TOKEN not in daemon.log()
    assert not [m for m in recorder.messages if TOKEN.encode() in m.payload]


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ({}, "user:orders: Unauthorized"),
        ({"error_event": "exception"}, "user:orders: Unauthorized"),
        ({"refuse_bad_token": True}, "namespace /ws refused: Unauthorized"),
    ],
)
async def test_a_refused_token_is_reported_while_public_channels_go_on(
    broker, recorder, daemon_config, tmp_path, variant, reason
):
    async with VeztaSimulator(**variant) as sim:
        token_file = tmp_path / "vezta.jwt"
        token_file.write_text("expired-jwt\n")
        config = providers(sim, ["market:prices", "user:orders"], token_file=f'"{token_file}"')
        async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_state(recorder, f"{BASE}/main/link", "auth_failed")
            await wait_state(recorder, f"{BASE}/link", "connected")
            await sim.push_prices()
            await recorder.wait_topic(f"{BASE}/market/m-101/price")
            assert ("auth_failed", reason) in states(recorder, f"{BASE}/main/link")
            # the token file is read again before the next (slow) attempt: a fresh token works
            token_file.write_text(TOKEN + "\n")
            await wait_state(recorder, f"{BASE}/main/link", "connected")
            await sim.publish("user:orders", sim.order("o-1", "OPEN"))
            await recorder.wait_topic(f"{BASE}/main/order")
            await daemon.terminate()
        assert states(recorder, f"{BASE}/link")[-1] == ("connected", None)
        assert "expired-jwt" not in daemon.log()
        assert TOKEN not in daemon.log()


@pytest.mark.parametrize("variant", [{}, {"ack_style": "wrapped", "envelope": "channel"}])
async def test_subscriptions_are_restored_after_a_namespace_disconnect_and_a_transport_drop(
    broker, recorder, daemon_config, tmp_path, variant
):
    async with VeztaSimulator(**variant) as sim:
        config = providers(sim, ["market:prices", "user:portfolio"], token=TOKEN)
        async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await sim.wait_until(lambda: len(sim.subscribes) == 2)
            for fault in (sim.disconnect_all, sim.drop_transports):
                before = set(sim.sessions)
                result = fault()
                if asyncio.iscoroutine(result):
                    await result
                # both connections come back on new sessions, each subscribed again
                await sim.wait_until(lambda old=before: resubscribed(sim, old))
            await wait_state(recorder, f"{BASE}/main/link", "connected")
            await wait_state(recorder, f"{BASE}/link", "connected")
            await sim.push_prices()
            await sim.publish("user:portfolio", sim.portfolio())
            await recorder.wait_topic(f"{BASE}/market/m-101/price")
            await recorder.wait_topic(f"{BASE}/main/balance/usd")
            await daemon.terminate()
        assert [c for _, c in sim.subscribes].count("market:prices") == 3
        assert [c for _, c in sim.subscribes].count("user:portfolio") == 3
        # the log says the link went down (its topic may skip a short "disconnected")
        assert "link disconnected: " in daemon.log()


def resubscribed(sim: VeztaSimulator, old: set[str]) -> bool:
    """Both connections are back on new sessions, each subscribed to its channel again."""
    channels = sorted(c for sid in sim.sessions for c in sim.channels_of(sid))
    return not old & set(sim.sessions) and channels == ["market:prices", "user:portfolio"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_burst_of_10000_market_updates_stays_bounded(
    broker, recorder, daemon_config, sim, tmp_path
):
    config = providers(sim, ["market:prices"], queue_size=200)
    async with DaemonProcess(daemon_config(config), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await sim.wait_until(lambda: len(sim.subscribes) == 1)
        await sim.push_prices()
        await recorder.wait_topic(f"{BASE}/market/m-103/price")
        before = rss_kib(daemon.pid)
        market = sim.markets[0]
        last = None
        for _ in range(10_000):
            last = sim.price(market)
            await sim.publish("market:prices", last)
        assert last is not None
        topic, latest = f"{BASE}/market/m-101/price", last["volume24h"].encode()
        checked = 0

        def arrived(messages) -> bool:  # looks at each message once: 10,000 of them come
            nonlocal checked
            fresh, checked = messages[checked:], len(messages)
            return any(m.topic == topic and latest in m.payload for m in fresh)

        await recorder.wait_for(arrived, timeout=30, what="the last price of the burst")
        grown = rss_kib(daemon.pid) - before
        published = len(recorder.on(f"{BASE}/market/m-101/price"))
        await daemon.terminate()
    # the latest price won; the link never reconnected (drop_oldest) and memory stayed flat
    assert grown < 20_000, f"RSS grew by {grown} KiB"
    links = states(recorder, f"{BASE}/link")
    assert links[-1] == ("connected", None)
    assert "disconnected" not in [s for s, _ in links]
    print(f"burst: RSS +{grown} KiB, {published} price messages published for 10,000 updates")
