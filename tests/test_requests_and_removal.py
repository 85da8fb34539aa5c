"""The request API as a client sees it, and removals as a JSON-only subscriber (Node-RED) sees them."""

from __future__ import annotations

import json

import aiomqtt

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

PROVIDER = """
[[providers]]
type = "testprov"
name = "alpha"
interval = 0.05
ticks = {ticks}
positions = {{"ETH/USDT-P" = "2.5"}}
close_positions_at = {close}
actions = true
"""
POSITION = "fin2mqtt/alpha/acc-1/position/eth-usdt-p"


async def test_a_closed_position_reaches_a_json_subscriber_before_its_clear(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    async with DaemonProcess(daemon_config(PROVIDER.format(ticks=3, close=1)), tmp_path / "d"):
        seen = await recorder.wait_topic(POSITION, 3)
        # what Node-RED's JSON mqtt-in node gets: every payload it can parse, in order
        position, notice, clear = seen
        assert position.json()["quantity"] == "2.5"
        assert notice.qos == 1
        body = notice.json()
        assert {k: body[k] for k in ("schema", "state", "reason", "kind", "symbol")} == {
            "schema": 1,
            "state": "removed",
            "reason": "closed",
            "kind": "position",
            "symbol": "ETH/USDT-P",
        }
        assert clear.payload == b""
        # Home Assistant's entities went before the notice (it never renders it)
        order = [m.topic for m in recorder.messages]
        config = "homeassistant/sensor/fin2mqtt_alpha/acc-1_position_eth-usdt-p_quantity/config"
        cleared_config = max(i for i, t in enumerate(order) if t == config)
        assert cleared_config < recorder.messages.index(notice)
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction", 3)
        found = await retained(broker.host, broker.port, "fin2mqtt/#")
        assert POSITION not in found  # the notice is not retained: nothing grows
        assert len(recorder.on(POSITION)) == 3  # one clear, never a second


async def test_events_carry_the_event_type_of_their_entity(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    async with DaemonProcess(daemon_config(PROVIDER.format(ticks=1, close=-1)), tmp_path / "d"):
        (transaction,) = await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        config = (
            await recorder.wait_topic(
                "homeassistant/event/fin2mqtt_alpha/acc-1_transaction_event/config"
            )
        )[0].json()
        assert config["state_topic"] == transaction.topic
        assert transaction.json()["event_type"] == "deposit"
        assert transaction.json()["event_type"] in config["event_types"]
        assert recorder.messages.index(transaction) > [m.topic for m in recorder.messages].index(
            "homeassistant/event/fin2mqtt_alpha/acc-1_transaction_event/config"
        )


async def test_every_request_op_is_answered(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    config = daemon_config(PROVIDER.format(ticks=1, close=-1))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        requests = [
            ("health", b'{"transaction":1}'),
            ("info", b'{"transaction":2}'),
            ("stats", b""),
            ("resync", b'{"instance":"alpha","transaction":4}'),
            ("resync", b'{"instance":"beta","transaction":5}'),
            ("resync", b'{"transaction":6}'),
            ("resync", b"[1,2"),
            ("discovery/refresh", b'{"transaction":8}'),
            ("restart", b"{}"),
            ("nope", b'{"transaction":10}'),
            ("info", b'"just a string"'),
        ]
        links_before = len(recorder.on("fin2mqtt/alpha/link"))
        configs_before = len(
            recorder.on("homeassistant/sensor/fin2mqtt_alpha/acc-1_balance_usd_total/config")
        )
        async with aiomqtt.Client(broker.host, broker.port) as client:
            for op, payload in requests:
                await client.publish(f"fin2mqtt/bridge/request/{op}", payload, qos=1)

        def answers(op: str, count: int) -> list[dict]:
            return [
                m.json() for m in recorder.messages if m.topic == f"fin2mqtt/bridge/response/{op}"
            ][:count]

        for op in {op for op, _ in requests}:
            await recorder.wait_topic(
                f"fin2mqtt/bridge/response/{op}", sum(o == op for o, _ in requests)
            )
        for message in recorder.messages:
            if "/bridge/response/" in message.topic:
                assert (message.qos, message.retain) == (1, False)
                assert message.json()["schema"] == 1

        [health] = answers("health", 1)
        assert health["status"] == "ok" and health["transaction"] == 1
        assert health["data"]["healthy"] is True, health
        assert health["data"]["links"] == {"alpha": {"": "connected"}}
        info, not_an_object = answers("info", 2)
        assert info["data"]["version"] and info["transaction"] == 2
        assert not_an_object["status"] == "ok"  # info takes no arguments
        [stats] = answers("stats", 1)
        assert stats["data"]["providers"]["alpha"]["link"] == "connected"
        assert stats["data"]["restarts"] == 0
        resyncs = {a["transaction"]: a for a in answers("resync", 4)}
        ok, unknown, missing, bad_json = (resyncs[t] for t in (4, 5, 6, None))
        assert ok["data"] == {"instance": "alpha", "connections": 1}, ok
        assert unknown == {"schema": 1, "status": "error", "data": None,
                           "error": "unknown instance 'beta' (known: alpha)", "transaction": 5}  # fmt: skip
        assert missing["error"] == "'instance' is missing (a string)"
        assert bad_json["status"] == "error" and "not valid JSON" in bad_json["error"]
        [refresh] = answers("discovery/refresh", 1)
        assert refresh["status"] == "ok" and refresh["transaction"] == 8
        [restart] = answers("restart", 1)
        assert restart["data"] == {"connections": {"alpha": 1}}
        [nope] = answers("nope", 1)
        assert nope["status"] == "error" and "unknown request 'nope'" in nope["error"]

        # resync and restart reconnected the link; discovery/refresh re-sent the configs
        links = await recorder.wait_topic("fin2mqtt/alpha/link", links_before + 2)
        assert links[-1].json()["state"] in ("connecting", "connected")
        await recorder.wait_topic(
            "homeassistant/sensor/fin2mqtt_alpha/acc-1_balance_usd_total/config", configs_before + 1
        )
        assert "resync of alpha asked: 1 connection(s) reconnecting" in daemon.log()
        # the bridge device's Restart button publishes exactly the restart request
        restart_button = (
            await retained(
                broker.host, broker.port, "homeassistant/button/fin2mqtt_bridge/restart/config"
            )
        )["homeassistant/button/fin2mqtt_bridge/restart/config"].json()
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(
                restart_button["command_topic"], restart_button["payload_press"], qos=1
            )
        await recorder.wait_topic("fin2mqtt/bridge/response/restart", 2)
        assert (
            json.loads(recorder.on("fin2mqtt/bridge/response/restart")[-1].payload)["status"]
            == "ok"
        )
        await daemon.terminate()
