"""Axisor end to end: simulator ↔ daemon (subprocess) ↔ mosquitto ↔ a subscriber."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fin2mqtt_axisor.simulator import USER_ID, AxisorSimulator, seed_events

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

BASE = "fin2mqtt/axisor"
MAIN = f"{BASE}/main"
ROOMS = {f"user:{USER_ID}", "market:BTC_USD", "market:ETH_USD", "margin_guard", "positions",
         "notifications"}  # fmt: skip


def providers(sim: AxisorSimulator, token: Path, **extra: object) -> str:
    settings: dict[str, object] = {
        "url": json.dumps(sim.url),
        "token_file": json.dumps(str(token)),
        "symbols": '["BTC_USD", "ETH_USD"]',
        "retry_min": 0.02,
        "retry_max": 0.1,
        "token_poll": 0.05,
        "auth_retry": 30,
        "reply_timeout": 1,
        "ping_interval": 5,
        "rate_window": 1.0,
        "max_messages": 20,
        **extra,
    }
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f'\n[[providers]]\ntype = "axisor"\nname = "axisor"\n{lines}\n'


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "axisor.jwt"
    path.write_text(token + "\n")
    return path


def link_states(recorder: MqttRecorder) -> list[tuple[str, str | None]]:
    return [(m.json()["state"], m.json()["error"]) for m in recorder.on(f"{BASE}/link")]


async def wait_link(recorder: MqttRecorder, state: str, count: int = 1) -> None:
    await recorder.wait_for(
        lambda ms: (
            sum(m.topic == f"{BASE}/link" and m.json()["state"] == state for m in ms) >= count
        ),
        what=f"link {state} x{count}",
    )


def most_in_window(times: list[float], window: float) -> int:
    """The most messages found in any ``window`` seconds."""
    return max((sum(t <= u < t + window for u in times) for t in times), default=0)


@pytest.mark.parametrize(("reply_variant", "auth_mode"), [("doc", "header"), ("server", "message")])
async def test_each_event_type_lands_on_its_topic(
    broker, recorder, daemon_config, tmp_path, reply_variant, auth_mode
):
    async with AxisorSimulator(reply_variant=reply_variant) as sim:
        config = daemon_config(
            providers(sim, token_file(tmp_path, sim.mint()), auth_mode=json.dumps(auth_mode))
        )
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "connected")
            assert sim.auth_modes == [auth_mode]
            assert ("auth" in [k for _, k in sim.log]) == (auth_mode == "message")
            events = {e["type"]: e for e in seed_events()}
            for kind, frame in events.items():
                if kind != "auto_close_execution":
                    assert await sim.push(frame) == 1
            await recorder.wait_topic(f"{MAIN}/notification", 4)
            await recorder.wait_topic(f"{BASE}/status/service_margin_guard")
            state = await retained(broker.host, broker.port, f"{BASE}/#")
            position = f"{MAIN}/position/btc_usd-pos_123"
            assert sorted(state) == sorted([
                f"{BASE}/link", f"{BASE}/market/btc_usd/price", position,
                f"{BASE}/status/maintenance", f"{BASE}/status/service_margin_guard",
                f"{BASE}/status/rooms",
            ])  # fmt: skip
            assert all(m.retain and m.qos == 1 for m in state.values())
            price = state[f"{BASE}/market/btc_usd/price"].json()
            assert (price["price"], price["details"]["high_24h"]) == ("43250.5", "44500.0")
            pos = state[position].json()
            assert (pos["details"]["distance_to_liquidation"], pos["details"]["at_risk"]) == (
                "0.92", False,
            )  # fmt: skip
            rooms = state[f"{BASE}/status/rooms"].json()
            assert rooms["status"] == "ok"
            assert set(rooms["raw"]["subscribed"]) == ROOMS - {f"user:{USER_ID}"}
            assert state[f"{BASE}/status/maintenance"].json()["status"] == "scheduled"
            # events: QoS 1, not retained
            notes = recorder.on(f"{MAIN}/notification")
            assert [m.json()["category"] for m in notes] == [
                "price_alert", "margin_guard", "margin_guard", "notification_status",
            ]  # fmt: skip
            [candles] = recorder.on(f"{BASE}/raw")
            assert candles.json()["name"] == "historical_data_update"
            assert all((m.qos, m.retain) == (1, False) for m in [*notes, candles])
            # Home Assistant: per position an at-risk binary sensor and the distance
            configs = await retained(broker.host, broker.port, "homeassistant/#")
            node = "homeassistant/{}/fin2mqtt_axisor/main_position_btc_usd-pos_123_{}/config"
            at_risk = configs[node.format("binary_sensor", "at_risk")].json()
            assert at_risk["device_class"] == "problem"
            assert configs[node.format("sensor", "distance_to_liquidation")]
            # auto-close: an event, and the position's retained topic is cleared
            await sim.push(events["auto_close_execution"])
            await recorder.wait_topic(f"{MAIN}/notification", 5)
            await recorder.wait_for(
                lambda ms: any(m.topic == position and not m.payload for m in ms)
            )
            assert position not in await retained(broker.host, broker.port, f"{BASE}/#")
            # nothing published carries the user id or the token
            token = token_file(tmp_path, sim.mint()).read_text().strip()
            published = b"".join(m.payload + m.topic.encode() for m in recorder.messages)
            assert USER_ID.encode() not in published
            assert token.encode()[:40] not in published
            await daemon.terminate()
        assert "eyJ" not in daemon.log()  # no JWT in the log either


async def test_rooms_are_restored_and_verified_after_every_reconnect(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator() as sim:
        config = daemon_config(providers(sim, token_file(tmp_path, sim.mint())))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "connected")
            assert sim.rooms() == [ROOMS]
            sim.drop_all()  # TCP cut, no close frame
            await sim.wait_until(lambda: sim.connects == 2)
            await wait_link(recorder, "connected", 2)  # rooms restored and verified
            assert sim.rooms() == [ROOMS]
            await sim.close_all(1011, "server restart")
            await sim.wait_until(lambda: sim.connects == 3 and len(sim.sent("list_rooms")) == 3)
            assert sim.rooms() == [ROOMS]  # on the server's side, not only in our log
            assert len(sim.sent("subscribe")) == 3 * 5
            await wait_link(recorder, "connected", 3)
            # the rooms' retained state did not change: published once
            assert len(recorder.on(f"{BASE}/status/rooms")) == 1
            await sim.push(seed_events()[0])
            await recorder.wait_topic(f"{BASE}/market/btc_usd/price")
            await daemon.terminate()


async def test_a_room_list_without_a_confirmed_room_reconnects(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator() as sim:
        real_answer = sim._answer

        async def forgetful(ws, state, message):
            await real_answer(ws, state, message)
            if message.get("type") == "subscribe" and sim.connects == 1:
                state.rooms.discard("positions")  # confirmed, then lost by the server

        sim._answer = forgetful
        config = daemon_config(providers(sim, token_file(tmp_path, sim.mint())))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await sim.wait_until(lambda: sim.connects == 2 and sim.rooms() == [ROOMS])
            # the log says why it reconnected; the link topic may skip the short "disconnected"
            # (its states are coalesced: the latest counts), and shows the reason if it does not
            await daemon.wait_log("link disconnected: rooms missing after subscribing: positions")
            await recorder.wait_for(
                lambda ms: link_states(recorder)[-1:] == [("connected", None)], what="connected"
            )
            errors = {e for s, e in link_states(recorder) if s == "disconnected"}
            assert errors <= {"rooms missing after subscribing: positions"}
            await daemon.terminate()


async def test_an_invalid_room_is_reported_once_without_a_retry_storm(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator(error_shape="server") as sim:
        symbols = '["BTC_USD", "NOPE_USD"]'
        config = daemon_config(providers(sim, token_file(tmp_path, sim.mint()), symbols=symbols))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "connected")
            [rooms] = await recorder.wait_topic(f"{BASE}/status/rooms")
            assert (rooms.json()["status"], rooms.json()["raw"]["refused"]) == (
                "degraded", ["market:NOPE_USD"],
            )  # fmt: skip
            for n in (2, 3):
                sim.drop_all()
                await sim.wait_until(lambda n=n: sim.connects == n)
                await wait_link(recorder, "connected", n)  # rooms verified again
            asked = [m for m in sim.received if m.get("channel") == "market:NOPE_USD"]
            assert len(asked) == 1  # not asked again on every reconnect
            assert sim.rooms() == [ROOMS - {"market:ETH_USD"}]
            notes = [m.json() for m in recorder.on(f"{BASE}/notification")]
            assert [(n["title"], n["details"]) for n in notes] == [
                ("INVALID_ROOM", {"room": "market:NOPE_USD"})
            ]
            assert link_states(recorder)[-1] == ("connected", None)
            assert len(recorder.on(f"{BASE}/status/rooms")) == 1
            await daemon.terminate()
        assert daemon.log().count("the server refused room market:NOPE_USD") == 1


@pytest.mark.parametrize(("auth_mode", "error_shape"), [("header", "doc"), ("message", "server")])
async def test_bad_token_is_auth_failed_retried_slowly_and_a_replaced_file_connects(
    broker, recorder, daemon_config, tmp_path, auth_mode, error_shape
):
    async with AxisorSimulator(error_shape=error_shape) as sim:
        forged = AxisorSimulator(secret="another-key-" * 4).mint()
        path = token_file(tmp_path, forged)
        config = daemon_config(providers(sim, path, auth_mode=json.dumps(auth_mode)))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "auth_failed")
            assert link_states(recorder)[-1] == (
                "auth_failed", "AUTHENTICATION_FAILED: Authentication failed",
            )  # fmt: skip
            await asyncio.sleep(0.6)  # 12 token polls: the refused token is not offered again
            assert (sim.attempts, sim.auth_failures) == (1, [auth_mode])
            state, error = link_states(recorder)[-1]
            assert state == "auth_failed"
            assert error.startswith(f"the server refused this token (file {path}; waiting")
            path.write_text(sim.mint())  # a fresh token, no restart
            await wait_link(recorder, "connected")
            assert sim.attempts == 2
            assert sim.rooms() == [ROOMS]
            await daemon.terminate()
        assert forged not in daemon.log()


async def test_close_1008_is_auth_failed_and_an_expired_file_is_never_sent(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator() as sim:
        sim.close_on_accept = (1008, "Policy Violation")
        path = token_file(tmp_path, sim.mint())
        async with DaemonProcess(daemon_config(providers(sim, path)), tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "auth_failed")
            assert ("auth_failed", "closed by server: 1008 Policy Violation") in link_states(
                recorder
            )
            sim.close_on_accept = None
            path.write_text(sim.mint(expires_in=-5))
            await recorder.wait_for(
                lambda ms: any(
                    m.topic == f"{BASE}/link" and "token expired" in (m.json()["error"] or "")
                    for m in ms
                ),
                what="expired token reported",
            )
            attempts = sim.attempts
            await asyncio.sleep(0.3)
            assert sim.attempts == attempts  # nothing is tried with an expired token
            await daemon.terminate()


def rate_config(sim, tmp_path, **extra):
    symbols = json.dumps([f"S{n}" for n in range(8)])
    return providers(sim, token_file(tmp_path, sim.mint()), symbols=symbols, rooms="[]", **extra)


async def test_our_messages_stay_within_our_budget(broker, recorder, daemon_config, tmp_path):
    # the server's 100 per 60 s and our 90, scaled to 6 and 5 per second (the margin absorbs
    # latency jitter): auth, 8 rooms and list_rooms take two windows, then pings
    async with AxisorSimulator(rate_limit=(6, 1.0), symbols=[f"S{n}" for n in range(8)]) as sim:
        extra = {"max_messages": 5, "ping_interval": 0.1, "auth_mode": '"message"'}
        config = daemon_config(rate_config(sim, tmp_path, **extra))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "connected")
            await sim.wait_until(lambda: len(sim.sent("ping")) >= 10, timeout=10)
            times = [t for t, _ in sim.log]
            assert most_in_window(times, 1.0) <= 6
            assert most_in_window(times, 0.9) <= 5  # our own budget, as the server saw it
            assert sim.rate_limited == 0
            assert len(sim.rooms()[0]) == 9
            await daemon.terminate()


@pytest.mark.parametrize("error_shape", ["doc", "server"])
async def test_rate_limit_exceeded_slows_us_down_without_a_storm(
    broker, recorder, daemon_config, tmp_path, error_shape
):
    # a server stricter than our budget: 4 per second against our 20
    symbols = [f"S{n}" for n in range(8)]
    async with (
        AxisorSimulator(rate_limit=(4, 1.0), error_shape=error_shape, symbols=symbols) as sim,
        DaemonProcess(daemon_config(rate_config(sim, tmp_path)), tmp_path / "d") as daemon,
    ):
        await daemon.wait_ready()
        await sim.wait_until(lambda: sim.rooms() and len(sim.rooms()[0]) == 9, timeout=10)
        await wait_link(recorder, "connected")
        # silent for a window after each refusal: refused twice (a 5th subscribe, then
        # list_rooms), 9 messages needed, nothing repeated in a loop
        assert sim.rate_limited == 2
        assert len(sim.log) == 9 + sim.rate_limited
        notes = [m.json() for m in recorder.on(f"{BASE}/notification")]
        assert 1 <= len(notes) <= 2  # one warning per minute
        assert {n["title"] for n in notes} == {"RATE_LIMIT_EXCEEDED"}
        await daemon.terminate()


async def test_app_ping_keeps_the_link_and_a_missing_pong_reconnects(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator() as sim:
        config = daemon_config(providers(sim, token_file(tmp_path, sim.mint()), ping_interval=0.1,
                                         reply_timeout=0.3))  # fmt: skip
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await sim.wait_until(lambda: len(sim.sent("ping")) >= 3)
            assert sim.connects == 1
            sim.answer_ping = False  # pongs stop: the server is not really there
            await sim.wait_until(lambda: sim.connects == 2, timeout=5)
            # the log says why (the link topic may skip a short "disconnected": see wait_log)
            await daemon.wait_log("link disconnected: no pong within 0.3 s")
            errors = {e for s, e in link_states(recorder) if s == "disconnected"}
            assert errors <= {"no pong within 0.3 s"}
            await daemon.terminate()


async def test_a_server_without_app_pings_is_judged_by_protocol_pings(
    broker, recorder, daemon_config, tmp_path
):
    async with AxisorSimulator() as sim:
        sim.answer_ping = False
        config = daemon_config(providers(sim, token_file(tmp_path, sim.mint()), ping_interval=0.1,
                                         reply_timeout=0.2))  # fmt: skip
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await wait_link(recorder, "connected")
            await asyncio.sleep(1.0)
            assert (sim.connects, len(sim.sent("ping"))) == (1, 1)  # tried once, then stopped
            assert link_states(recorder)[-1] == ("connected", None)
            await daemon.terminate()
