"""End to end: the test provider's events reach a real broker with the full MQTT contract."""

from __future__ import annotations

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

PROVIDER = """
[[providers]]
type = "testprov"
name = "alpha"
account = "Main Acct"
balance = "100.10"
amount = "0.05"
ticks = 3
positions = {"ETH/USDT-P" = "0.002552700"}
"""


async def test_events_state_and_bridge_topics(
    broker, recorder: MqttRecorder, daemon_config, tmp_path
):
    async with DaemonProcess(daemon_config(PROVIDER), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        txs = await recorder.wait_topic("fin2mqtt/alpha/main-acct/transaction", 3)

        # events: QoS 1, not retained, exact JSON with money as strings
        assert [m.qos for m in txs] == [1, 1, 1]
        assert [m.retain for m in txs] == [False, False, False]
        first = txs[0].json()
        assert first["schema"] == 1
        assert first["kind"] == "transaction"
        assert first["provider"] == "alpha"
        assert first["account"] == "Main Acct"
        assert first["id"] == "tx-0"
        assert first["amount"] == "0.05"
        assert first["asset"] == "USD"
        assert first["direction"] == "in"
        assert first["source_time"] == "2023-11-14T22:13:20Z"
        assert first["details"] == {"seq": 0}
        assert [m.json()["id"] for m in txs] == ["tx-0", "tx-1", "tx-2"]

        # what a new subscriber (Home Assistant, Node-RED after a restart) sees as retained
        await recorder.wait_for(
            lambda ms: any(
                m.topic == "fin2mqtt/alpha/main-acct/balance/usd" and m.json()["total"] == "100.25"
                for m in ms
            ),
            what="final balance",
        )
        state = await retained(broker.host, broker.port)
        assert state["fin2mqtt/bridge/state"].payload == b'{"schema":1,"state":"online"}'
        assert state["fin2mqtt/bridge/state"].qos == 1
        balance = state["fin2mqtt/alpha/main-acct/balance/usd"].json()
        assert balance["kind"] == "balance"
        assert balance["total"] == "100.25"
        assert balance["asset"] == "USD"
        position = state["fin2mqtt/alpha/main-acct/position/eth-usdt-p"].json()
        assert position["quantity"] == "0.002552700"
        assert position["direction"] == "long"
        link = state["fin2mqtt/alpha/link"].json()
        assert link["state"] == "connected"
        assert link["error"] is None
        assert "fin2mqtt/alpha/main-acct/transaction" not in state  # events are never retained

        info = state["fin2mqtt/bridge/info"].json()
        assert info["providers"] == [{"name": "alpha", "type": "testprov"}]
        assert info["plugins"] == {"testprov": "0.1.0"}
        assert info["config"]["mqtt"]["port"] == broker.port

        code, elapsed = await daemon.terminate()
        assert code == 0
        assert elapsed < 5
    after = await retained(broker.host, broker.port)
    assert after["fin2mqtt/bridge/state"].json() == {"schema": 1, "state": "offline"}


async def test_secrets_never_published(broker, recorder, daemon_config, tmp_path):
    key = tmp_path / "api.key"
    key.write_text("s3cr3t-value\n")
    providers = PROVIDER + f'api_key_file = "{key}"\n'
    mqtt = 'username = "bridge"\npassword = "hunter2-broker"\n'
    async with DaemonProcess(daemon_config(providers, mqtt=mqtt), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic("fin2mqtt/bridge/info")
        info = recorder.on("fin2mqtt/bridge/info")[0].json()
        assert info["config"]["providers"][0]["api_key"] == "**********"
        assert info["config"]["mqtt"]["password"] == "**********"
        await daemon.terminate()
    everything = b"".join(m.payload for m in recorder.messages)
    assert b"s3cr3t-value" not in everything
    assert b"hunter2-broker" not in everything
    assert "s3cr3t-value" not in daemon.log()
    assert "hunter2-broker" not in daemon.log()


async def test_will_turns_offline_when_killed(broker: Broker, recorder, daemon_config, tmp_path):
    config = daemon_config(PROVIDER, mqtt="keepalive = 5")
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: any(
                m.topic == "fin2mqtt/bridge/state" and m.json()["state"] == "online" for m in ms
            )
        )
        daemon.kill()
        await daemon.wait_exit()
        # the broker notices the dropped TCP connection and publishes the will
        await recorder.wait_for(
            lambda ms: any(
                m.topic == "fin2mqtt/bridge/state" and m.json() == {"schema": 1, "state": "offline"}
                for m in ms
            ),
            timeout=5,
            what="will",
        )
    state = await retained(broker.host, broker.port, "fin2mqtt/bridge/state")
    assert state["fin2mqtt/bridge/state"].json() == {"schema": 1, "state": "offline"}
    assert state["fin2mqtt/bridge/state"].retain is True


async def test_requests_get_answers(broker, recorder, daemon_config, tmp_path):
    import aiomqtt

    async with DaemonProcess(daemon_config(PROVIDER), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish("fin2mqtt/bridge/request/stats", b'{"transaction":"t1"}', qos=1)
            await client.publish("fin2mqtt/bridge/request/nope", b'{"transaction":7}', qos=1)
            await client.publish("fin2mqtt/bridge/request/info", b"not json", qos=1)
        stats = (await recorder.wait_topic("fin2mqtt/bridge/response/stats"))[0]
        body = stats.json()
        assert body["status"] == "ok"
        assert body["transaction"] == "t1"
        assert body["error"] is None
        assert body["data"]["providers"]["alpha"]["link"] == "connected"
        nope = (await recorder.wait_topic("fin2mqtt/bridge/response/nope"))[0].json()
        assert nope == {
            "schema": 1,
            "status": "error",
            "data": None,
            "error": (
                "unknown request 'nope' (known: action, discovery/refresh, health, info, restart,"
                " resync, stats)"
            ),
            "transaction": 7,
        }
        bad = (await recorder.wait_topic("fin2mqtt/bridge/response/info"))[0].json()
        assert bad["status"] == "error"
        assert (
            bad["error"] == "request is not valid JSON: Expecting value: line 1 column 1 (char 0)"
        )
        await daemon.terminate()
