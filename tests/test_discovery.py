"""Home Assistant discovery: configs retained, availability tied to bridge and link, re-sent."""

from __future__ import annotations

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
"""

BALANCE_CONFIG = "homeassistant/sensor/fin2mqtt_alpha/acc-1_balance_usd_total/config"
LINK_CONFIG = "homeassistant/binary_sensor/fin2mqtt_alpha/link_connected/config"
POSITION_CONFIGS = [
    "homeassistant/sensor/fin2mqtt_alpha/acc-1_position_eth-usdt-p_quantity/config",
    "homeassistant/sensor/fin2mqtt_alpha/acc-1_position_eth-usdt-p_direction/config",
    "homeassistant/sensor/fin2mqtt_alpha/acc-1_position_eth-usdt-p_unrealized_pnl/config",
]
EVENT_CONFIGS = [
    f"homeassistant/event/fin2mqtt_alpha/acc-1_{kind}_event/config"
    for kind in ("transaction", "order", "trade", "notification")
]
BRIDGE_CONFIGS = [
    "homeassistant/binary_sensor/fin2mqtt_bridge/connection_state/config",
    "homeassistant/sensor/fin2mqtt_bridge/version/config",
    "homeassistant/sensor/fin2mqtt_bridge/published/config",
    "homeassistant/sensor/fin2mqtt_bridge/dropped/config",
    "homeassistant/sensor/fin2mqtt_bridge/restarts/config",
    "homeassistant/sensor/fin2mqtt_bridge/parse_errors/config",
    "homeassistant/button/fin2mqtt_bridge/restart/config",
]


async def test_discovery_configs(broker, recorder: MqttRecorder, daemon_config, tmp_path):
    config = daemon_config(PROVIDER.format(ticks=1, close=-1))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        found = await retained(broker.host, broker.port, "homeassistant/#")
        assert sorted(found) == sorted(
            [BALANCE_CONFIG, LINK_CONFIG, *POSITION_CONFIGS, *EVENT_CONFIGS, *BRIDGE_CONFIGS]
        )
        assert all(m.qos == 1 for m in found.values())

        balance = found[BALANCE_CONFIG].json()
        assert balance == {
            "name": "USD balance",
            "state_topic": "fin2mqtt/alpha/acc-1/balance/usd",
            "value_template": "{{ value_json.total }}",
            "availability": [
                {
                    "topic": "fin2mqtt/bridge/state",
                    "value_template": "{{ value_json.state }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                },
                {
                    "topic": "fin2mqtt/alpha/link",
                    "value_template": "{{ 'online' if value_json.state in ('connected', 'fallback') else 'offline' }}",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                },
            ],
            "availability_mode": "all",
            "device": {
                "identifiers": ["fin2mqtt_alpha_acc-1"],
                "name": "Testprov alpha acc-1",
                "manufacturer": "fin2mqtt",
                "model": "Testprov",
                "sw_version": "0.2.0",
                "via_device": "fin2mqtt_bridge",
            },
            "origin": {
                "name": "fin2mqtt",
                "sw_version": "0.2.0",
                "support_url": "https://github.com/fin2mqtt/fin2mqtt",
            },
            "device_class": "monetary",
            "state_class": "total",
            "unit_of_measurement": "USD",
            "suggested_display_precision": 2,
            "json_attributes_topic": "fin2mqtt/alpha/acc-1/balance/usd",
            "json_attributes_template": (
                "{{ {'available': value_json.get('available'),"
                " 'locked': value_json.get('locked')} | tojson }}"
            ),
            "unique_id": "fin2mqtt_alpha_acc-1_balance_usd_total",
            "default_entity_id": "sensor.testprov_alpha_acc_1_usd_balance",
        }
        quantity, direction, pnl = (found[t].json() for t in POSITION_CONFIGS)
        assert (quantity["name"], quantity["unit_of_measurement"]) == ("ETH/USDT-P position", "ETH")
        assert quantity["value_template"] == (
            "{{ ('-' if value_json.direction == 'short' else '') ~ value_json.quantity }}"
        )
        assert (direction["device_class"], direction["options"]) == (
            "enum",
            ["Long", "Short", "Other"],
        )
        assert (pnl["device_class"], pnl["state_class"], pnl["unit_of_measurement"]) == (
            "monetary",
            "total",
            "USDT",
        )
        transactions = found[EVENT_CONFIGS[0]].json()
        assert transactions["state_topic"] == "fin2mqtt/alpha/acc-1/transaction"
        assert "deposit" in transactions["event_types"]
        assert transactions["default_entity_id"] == "event.testprov_alpha_acc_1_transaction"
        bridge = found[BRIDGE_CONFIGS[0]].json()
        assert bridge["device"]["identifiers"] == ["fin2mqtt_bridge"]
        assert (bridge["state_topic"], bridge["payload_on"]) == ("fin2mqtt/bridge/state", "online")
        assert "availability" not in bridge  # it shows "disconnected", not "unavailable"
        restart = found[BRIDGE_CONFIGS[-1]].json()
        assert restart["command_topic"] == "fin2mqtt/bridge/request/restart"
        link = found[LINK_CONFIG].json()
        assert link["device_class"] == "connectivity"
        assert link["state_topic"] == "fin2mqtt/alpha/link"
        assert link["value_template"] == "{{ 'ON' if value_json.state == 'connected' else 'OFF' }}"
        assert [a["topic"] for a in link["availability"]] == ["fin2mqtt/bridge/state"]
        assert link["entity_category"] == "diagnostic"

        # Home Assistant restarts: discovery (and the state after it) is sent again
        count = len(recorder.on(BALANCE_CONFIG))
        async with aiomqtt.Client(broker.host, broker.port) as ha:
            await ha.publish("homeassistant/status", b"online", qos=1)
        await recorder.wait_topic(BALANCE_CONFIG, count + 1)
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/balance/usd", 2)
        assert "Home Assistant came online: re-sending discovery and state" in daemon.log()
        await daemon.terminate()


async def test_closed_position_clears_its_topic_and_entities(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    config = daemon_config(PROVIDER.format(ticks=3, close=1))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction", 3)
        cleared = await recorder.wait_topic("fin2mqtt/alpha/acc-1/position/eth-usdt-p", 2)
        assert cleared[0].json()["quantity"] == "2.5"
        assert cleared[-1].payload == b""
        for topic in POSITION_CONFIGS:
            assert (await recorder.wait_topic(topic, 2))[-1].payload == b""
        found = await retained(broker.host, broker.port)
        assert "fin2mqtt/alpha/acc-1/position/eth-usdt-p" not in found
        assert not set(POSITION_CONFIGS) & set(found)
        assert BALANCE_CONFIG in found
        await daemon.terminate()


async def test_discovery_can_be_turned_off(broker, recorder: MqttRecorder, daemon_config, tmp_path):
    config = daemon_config(
        PROVIDER.format(ticks=1, close=-1), extra="[homeassistant]\ndiscovery = false\n"
    )
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        await daemon.terminate()
    assert not [m for m in recorder.messages if m.topic.startswith("homeassistant/")]


def test_an_entity_spec_can_be_limited_to_events_with_given_fields():
    from datetime import UTC, datetime

    from bridge.model.entities import EntitySpec
    from bridge.model.events import AccountStatusEvent
    from bridge.mqtt.discovery import Discovery, ProviderInfo
    from bridge.mqtt.topics import TopicMap

    pending = EntitySpec(
        kind="account_status",
        key="pending",
        name="Recovery pending",
        component="binary_sensor",
        value_template="{{ value_json.status }}",
        match=(("topic", "recovery"),),
    )
    topics = TopicMap("fin2mqtt")
    discovery = Discovery("homeassistant", topics, "0.1.0")
    discovery.register(ProviderInfo("ibex", "ibex", [pending]))

    def status(topic: str) -> AccountStatusEvent:
        now = datetime.now(UTC)
        return AccountStatusEvent(
            provider="ibex", account="main", id=topic, received_at=now, topic=topic, status="x"
        )

    assert discovery.configs(status("kyc"), "fin2mqtt/ibex/main/status/kyc", None) == []
    [config] = discovery.configs(status("recovery"), "fin2mqtt/ibex/main/status/recovery", None)
    assert (
        config.topic
        == "homeassistant/binary_sensor/fin2mqtt_ibex/main_status_recovery_pending/config"
    )
