"""Provider actions end to end: MQTT request → action → answer; HA buttons that send requests."""

from __future__ import annotations

import json

import aiomqtt

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

PROVIDER = """
[[providers]]
type = "testprov"
name = "alpha"
ticks = 1
actions = true
action_timeout = 0.5
"""

REQUEST = "fin2mqtt/bridge/request/action"
RESPONSE = "fin2mqtt/bridge/response/action"


def answers(recorder: MqttRecorder) -> dict[object, dict]:
    return {m.json()["transaction"]: m.json() for m in recorder.on(RESPONSE)}


async def test_every_action_request_gets_one_answer(broker, recorder, daemon_config, tmp_path):
    requests: list[tuple[object, bytes]] = [
        (1, b'{"instance":"alpha","action":"hang","transaction":1}'),
        (2, b'{"instance":"alpha","action":"echo","params":{"x":[1,"2"]},"transaction":2}'),
        (3, b'{"instance":"alpha","action":"refresh","account":"acc-1","transaction":3}'),
        (4, b'{"instance":"alpha","action":"refresh","account":"nope","transaction":4}'),
        (5, b'{"instance":"alpha","action":"refresh","transaction":5}'),
        (6, b'{"instance":"alpha","action":"echo","account":"acc-1","transaction":6}'),
        (7, b'{"instance":"beta","action":"echo","transaction":7}'),
        (8, b'{"instance":"alpha","action":"zap","transaction":8}'),
        (9, b'{"action":"echo","transaction":9}'),
        (10, b'{"instance":"alpha","action":"fail","transaction":10}'),
        (11, b'{"instance":"alpha","action":"crash","transaction":11}'),
        (12, b'{"instance":"alpha","action":"slow","transaction":12}'),
        (13, b'{"instance":"alpha","action":"slow","transaction":13}'),
        (14, b'{"instance":"alpha","action":"echo","params":[1],"transaction":14}'),
    ]
    async with DaemonProcess(daemon_config(PROVIDER), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        async with aiomqtt.Client(broker.host, broker.port) as client:
            for _, payload in requests:
                await client.publish(REQUEST, payload, qos=1)
            await client.publish(REQUEST, b"{not json", qos=1)
            await client.publish(REQUEST, b"[1, 2]", qos=1)
            await client.publish("fin2mqtt/bridge/request/info", b'{"transaction":"i"}', qos=1)
        # the info request is answered while "hang" and "slow" still run
        await recorder.wait_topic("fin2mqtt/bridge/response/info")
        assert 1 not in answers(recorder) and 12 not in answers(recorder)
        await recorder.wait_topic(RESPONSE, len(requests) + 2, timeout=10)

        got = answers(recorder)
        assert all(m.qos == 1 and not m.retain for m in recorder.on(RESPONSE))

        def error(t: object) -> str:
            assert got[t]["status"] == "error" and got[t]["data"] is None, got[t]
            return got[t]["error"]

        assert got[2] == {
            "schema": 1,
            "status": "ok",
            "data": {
                "instance": "alpha",
                "action": "echo",
                "account": None,
                "result": {"params": {"x": [1, "2"]}},
            },
            "error": None,
            "transaction": 2,
        }
        assert got[3]["status"] == "ok"
        assert got[3]["data"]["account"] == "acc-1"
        assert got[3]["data"]["result"]["account"] == "acc-1"
        assert error(1) == "alpha hang: no result within 0.5 s"
        assert error(4) == "alpha refresh: unknown account 'nope' (acc-1)"
        assert error(5) == "alpha refresh: give an account (acc-1)"
        assert error(6) == "alpha echo is not per account: leave out 'account'"
        assert error(7) == "unknown instance 'beta' (known: alpha)"
        assert (
            error(8) == "alpha has no action 'zap' (known: crash, echo, fail, hang, refresh, slow)"
        )
        assert error(9) == "'instance' is missing (a string)"
        assert error(10) == "alpha fail: the upstream said no"
        assert error(11) == "alpha crash: RuntimeError: a bug in the plugin"
        assert error(14) == "'params' must be a JSON object"
        # two presses of one action: the first runs, the second is refused meanwhile
        assert got[12] == {
            "schema": 1,
            "status": "ok",
            "data": {"instance": "alpha", "action": "slow", "account": None, "result": "done"},
            "error": None,
            "transaction": 12,
        }
        assert error(13) == "alpha slow is already running"
        untracked = [m.json() for m in recorder.on(RESPONSE) if m.json()["transaction"] is None]
        assert sorted(a["error"] for a in untracked) == [
            'an action request is a JSON object: {"instance", "action", …}',
            "request is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ]
        # a bug in an action is logged with its traceback, the daemon goes on
        assert "RuntimeError: a bug in the plugin" in daemon.log()
        code, _ = await daemon.terminate()
        assert code == 0


async def test_buttons_publish_the_request_that_runs_the_action(
    broker, recorder, daemon_config, tmp_path
):
    async with DaemonProcess(daemon_config(PROVIDER), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        found = await retained(broker.host, broker.port, "homeassistant/button/fin2mqtt_alpha/#")
        node = "homeassistant/button/fin2mqtt_alpha"
        assert sorted(found) == [
            f"{node}/acc-1_action_refresh/config",
            f"{node}/action_crash/config",
            f"{node}/action_echo/config",
            f"{node}/action_fail/config",
            f"{node}/action_hang/config",
            f"{node}/action_slow/config",
        ]
        assert all(m.qos == 1 and m.retain for m in found.values())
        refresh = found[f"{node}/acc-1_action_refresh/config"].json()
        assert refresh == {
            "name": "Refresh",
            "command_topic": REQUEST,
            "payload_press": '{"instance":"alpha","action":"refresh","account":"acc-1"}',
            "qos": 1,
            "retain": False,
            "availability": [
                {
                    "topic": "fin2mqtt/bridge/state",
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": {
                "identifiers": ["fin2mqtt_alpha_acc-1"],
                "name": "Testprov alpha acc-1",
                "manufacturer": "fin2mqtt",
                "model": "Testprov",
                "sw_version": refresh["device"]["sw_version"],
                "via_device": "fin2mqtt_bridge",
            },
            "origin": refresh["origin"],
            "unique_id": "fin2mqtt_alpha_acc-1_action_refresh",
            "default_entity_id": "button.testprov_alpha_acc_1_refresh",
        }
        # the button shares the device of the account's other entities
        balance = (await retained(broker.host, broker.port, "homeassistant/sensor/#"))[
            "homeassistant/sensor/fin2mqtt_alpha/acc-1_balance_usd_total/config"
        ].json()
        assert balance["device"] == refresh["device"]
        echo = found[f"{node}/action_echo/config"].json()
        assert echo["icon"] == "mdi:message"
        assert echo["device"]["identifiers"] == ["fin2mqtt_alpha"]

        # what Home Assistant does when the button is pressed
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(refresh["command_topic"], refresh["payload_press"], qos=1)
        (answer,) = await recorder.wait_topic(RESPONSE)
        assert answer.json() == {
            "schema": 1,
            "status": "ok",
            "data": {
                "instance": "alpha",
                "action": "refresh",
                "account": "acc-1",
                "result": {"account": "acc-1", "ticks": 1},
            },
            "error": None,
            "transaction": None,
        }
        assert json.loads(refresh["payload_press"])["instance"] == "alpha"
        await daemon.terminate()
