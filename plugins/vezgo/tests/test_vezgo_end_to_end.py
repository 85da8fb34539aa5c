"""Vezgo end to end: the real daemon (a subprocess), a real broker, real HTTP from loopback aliases.

Webhooks come from 127.0.0.2 (allowed here in place of Vezgo's four addresses); 127.0.0.3 is a
stranger; 127.0.0.4 a trusted reverse proxy. The simulator plays Vezgo's API for "Sync now".
"""

from __future__ import annotations

import json
import socket

import aiomqtt
import pytest
from fin2mqtt_vezgo.simulator import (
    OTHER_SOURCE,
    VezgoSimulator,
    new_account_event,
    sync_account,
    sync_error,
)

from bridge.testing.daemon import DaemonProcess
from bridge.testing.ports import free_port
from bridge.testing.recorder import MqttRecorder, retained

STATUS = "fin2mqtt/vezgo/main/status/sync"
NOTICE = "fin2mqtt/vezgo/main/notification"
REQUEST = "fin2mqtt/bridge/request/action"
RESPONSE = "fin2mqtt/bridge/response/action"

OTHER = """
[[providers]]
type = "testprov"
name = "alpha"
interval = 0.05
"""


@pytest.fixture
async def sim():
    async with VezgoSimulator(accounts={"acc-1001": "alice", "acc-3003": "bob"}) as s:
        yield s


def config(daemon_config, sim: VezgoSimulator, hook_port: int, more: str = "") -> str:
    providers = f"""
[[providers]]
type = "vezgo"
name = "vezgo"
client_id = "app-1"
secret = "{sim.secret}"
login_name = "alice"
api_url = "{sim.url}"
allowed_sources = ["127.0.0.2/32"]
trusted_proxies = ["127.0.0.4/32"]
failure_threshold = 2
http_timeout = 0.5
accounts = [{{ id = "acc-1001", alias = "main" }}, {{ id = "acc-2002", alias = "gone" }}]
{more}
"""
    return daemon_config(providers, extra=f'[webhooks]\nhost = "127.0.0.1"\nport = {hook_port}\n')


async def started(daemon: DaemonProcess, recorder: MqttRecorder) -> None:
    await daemon.wait_ready()
    await recorder.wait_for(
        lambda ms: any(
            m.topic == "fin2mqtt/vezgo/link" and m.payload and m.json()["state"] == "connected"
            for m in ms
        ),
        what="webhook route listening",
    )


def states(recorder: MqttRecorder) -> list[tuple[str, int]]:
    return [
        (m.json()["status"], m.json()["details"]["consecutive_failures"])
        for m in recorder.on(STATUS)
    ]


async def test_hooks_become_statuses_events_and_entities(
    broker, recorder, daemon_config, sim, tmp_path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/vezgo"
    async with DaemonProcess(config(daemon_config, sim, port), tmp_path / "d") as daemon:
        await started(daemon, recorder)
        vezgo = sim.sender(url)
        assert await vezgo.send(sync_account("acc-1001")) == (200, {"status": "accepted"})
        await recorder.wait_topic(STATUS)
        first = (await retained(broker.host, broker.port, STATUS))[STATUS]
        assert (first.qos, first.retain) == (1, True)  # what a new subscriber gets
        ok = first.json()
        assert ok["kind"] == "account_status"
        assert (ok["account"], ok["topic"], ok["status"], ok["raw"]) == (
            "main",
            "sync",
            "ok",
            "SyncAccount",
        )
        assert ok["details"] == {
            "last_success": ok["received_at"],
            "last_error": None,
            "last_error_at": None,
            "consecutive_failures": 0,
            "connector": "binance",
            "needs_attention": False,
            "reason": "synced",
        }
        (notice,) = await recorder.wait_topic(NOTICE)
        assert (notice.qos, notice.retain) == (1, False)
        assert notice.json()["title"] == "Sync succeeded"

        temporary = sync_error("acc-1001", "TemporaryFailureError")
        for body in (
            temporary,
            temporary,
            sync_account("acc-1001"),
            sync_error("acc-1001", "WeirdError"),
        ):
            assert (await vezgo.send(body))[0] == 200
        await recorder.wait_topic(STATUS, 5)
        assert states(recorder) == [
            ("ok", 0),
            ("retrying", 1),
            ("failing", 2),  # failure_threshold = 2
            ("ok", 0),
            ("unknown_error", 1),
        ]
        weird = recorder.on(STATUS)[-1].json()
        assert (weird["raw"], weird["details"]["last_error"]) == ("WeirdError", "WeirdError")
        assert weird["details"]["needs_attention"] is True
        notices = await recorder.wait_topic(NOTICE, 5)
        assert [n.json()["severity"] for n in notices] == [
            "info",
            "warning",
            "error",
            "info",
            "error",
        ]
        assert all((n.qos, n.retain) == (1, False) for n in notices)

        # an unconfigured account appears under a short hash, never its id
        assert (await vezgo.send(sync_account("acc-3003")))[0] == 200
        await recorder.wait_for(
            lambda ms: any(m.topic.endswith("/status/sync") and m.topic != STATUS for m in ms)
        )
        assert not any("acc-3003" in m.topic or b"acc-3003" in m.payload for m in recorder.messages)

        # newAccountEvent: passed through as a raw event
        raw_body = new_account_event({"type": "trade", "amount": "0.5"})
        assert (await vezgo.send(raw_body))[0] == 200
        (raw,) = await recorder.wait_topic("fin2mqtt/vezgo/raw")
        assert (raw.json()["name"], raw.json()["data"], raw.qos, raw.retain) == (
            "newAccountEvent",
            raw_body,
            1,
            False,
        )

        found = await retained(broker.host, broker.port, "homeassistant/+/fin2mqtt_vezgo/+/config")
        prefix = "main_status_sync"
        enum = found[f"homeassistant/sensor/fin2mqtt_vezgo/{prefix}_sync_status/config"].json()
        assert (enum["name"], enum["device_class"]) == ("Sync status", "enum")
        labels = {
            "ok": "OK",
            "retrying": "Retrying",
            "failing": "Failing",
            "reconnect_required": "Reconnect required",
            "contact_vendor": "Contact vendor",
            "unknown_error": "Unknown error",
        }
        table = json.dumps(labels, separators=(",", ":"))
        assert enum["value_template"] == f"{{{{ {table}.get(value_json.status, 'Other') }}}}"
        assert enum["options"] == [*labels.values(), "Other"]
        assert enum["device"]["name"] == "Vezgo main"
        problem = found[
            f"homeassistant/binary_sensor/fin2mqtt_vezgo/{prefix}_needs_attention/config"
        ].json()
        assert (problem["device_class"], problem["value_template"]) == (
            "problem",
            "{{ 'ON' if value_json.details.needs_attention else 'OFF' }}",
        )
        last = found[f"homeassistant/sensor/fin2mqtt_vezgo/{prefix}_last_success/config"].json()
        assert (last["device_class"], last["name"]) == ("timestamp", "Last successful sync")
        failures = found[
            f"homeassistant/sensor/fin2mqtt_vezgo/{prefix}_consecutive_failures/config"
        ].json()
        assert failures["value_template"] == "{{ value_json.details.consecutive_failures }}"
        button = found["homeassistant/button/fin2mqtt_vezgo/main_action_sync/config"].json()
        assert (button["name"], button["command_topic"], button["payload_press"]) == (
            "Sync now",
            REQUEST,
            '{"instance":"vezgo","action":"sync","account":"main"}',
        )
        assert button["device"] == enum["device"]
        # the secret never reaches the broker
        assert not any(sim.secret.encode() in m.payload for m in recorder.messages)
        await daemon.terminate()


async def test_hostile_input_is_refused_and_changes_nothing(
    broker, recorder, daemon_config, sim, tmp_path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/vezgo"
    text = config(daemon_config, sim, port, OTHER)
    async with DaemonProcess(text, tmp_path / "d") as daemon:
        await started(daemon, recorder)
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction")
        vezgo = sim.sender(url)
        good = sync_account("acc-1001")
        hostile = [
            (vezgo.send(good, source=OTHER_SOURCE), 403, "source address 127.0.0.3 is not allowed"),
            (
                vezgo.send(good, source=OTHER_SOURCE, forwarded_for="127.0.0.2"),
                403,
                "source address 127.0.0.3 is not allowed",
            ),
            (
                vezgo.send(good, headers={"x-client-id": "someone-else"}),
                403,
                "wrong value of header x-client-id",
            ),
            (vezgo.send(good, headers={"x-client-id": None}), 401, "missing header x-client-id"),
            (
                vezgo.send(None, raw=b'{"hook": "SyncAccount",'),
                400,
                "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 24 (char 23)",
            ),
            (
                vezgo.send(good, headers={"Content-Type": "text/plain"}),
                415,
                "content type must be application/json, not text/plain",
            ),
            (
                vezgo.send({**good, "pad": "x" * 70_000}),
                413,
                "body larger than 65536 bytes",
            ),
            (
                vezgo.send({"hook": "AccountDeleted", "account": {"id": "acc-1001"}}),
                422,
                "unknown hook 'AccountDeleted' (known: SyncAccount, SyncError, newAccountEvent)",
            ),
            (
                vezgo.send({"hook": "SyncError", "error": "LoginFailedError"}),
                422,
                "SyncError without account.id",
            ),
            (vezgo.send([good]), 422, "body must be a JSON object"),
        ]
        for post, status, error in hostile:
            assert await post == (status, {"error": error})
        before = len(recorder.on("fin2mqtt/alpha/acc-1/transaction"))
        # the other provider keeps publishing meanwhile
        await recorder.wait_topic("fin2mqtt/alpha/acc-1/transaction", before + 5)
        vezgo_topics = {m.topic for m in recorder.messages if m.topic.startswith("fin2mqtt/vezgo/")}
        assert vezgo_topics == {"fin2mqtt/vezgo/link"}
        # through the trusted proxy, the forwarded address counts
        proxied = await vezgo.send(good, source="127.0.0.4", forwarded_for="127.0.0.2")
        assert proxied == (200, {"status": "accepted"})
        (status,) = await recorder.wait_topic(STATUS)
        assert status.json()["status"] == "ok"
        assert "rejected: 403" in daemon.log()
        await daemon.terminate()


async def answer(recorder: MqttRecorder, transaction: str) -> dict:
    await recorder.wait_for(
        lambda ms: any(m.topic == RESPONSE and m.json()["transaction"] == transaction for m in ms),
        what=f"answer {transaction}",
    )
    (found,) = [m for m in recorder.on(RESPONSE) if m.json()["transaction"] == transaction]
    assert (found.qos, found.retain) == (1, False)
    return found.json()


async def test_sync_now_from_mqtt_and_from_the_button(
    broker, recorder, daemon_config, sim, tmp_path
):
    port = free_port()
    sim.webhook_url = f"http://127.0.0.1:{port}/hooks/vezgo"
    async with (
        DaemonProcess(config(daemon_config, sim, port), tmp_path / "d") as daemon,
        aiomqtt.Client(broker.host, broker.port) as client,
    ):
        await started(daemon, recorder)

        async def ask(transaction: str, account: str = "main") -> dict:
            request = {"instance": "vezgo", "action": "sync", "account": account}
            payload = json.dumps({**request, "transaction": transaction})
            await client.publish(REQUEST, payload, qos=1)
            return await answer(recorder, transaction)

        assert await ask("t1") == {
            "schema": 1,
            "status": "ok",
            "data": {
                "instance": "vezgo",
                "action": "sync",
                "account": "main",
                "result": {"sync": "requested", "reply": "account"},
            },
            "error": None,
            "transaction": "t1",
        }
        token_call, sync_call = sim.calls
        assert (token_call.path, token_call.login_name, token_call.body) == (
            "/v1/auth/token",
            "alice",
            {"clientId": "app-1", "secret": sim.secret},
        )
        (token,) = sim.tokens
        assert (sync_call.path, sync_call.authorization) == (
            "/v1/accounts/acc-1001/sync",
            f"Bearer {token}",
        )
        # the later webhook updates the status
        (status,) = await recorder.wait_topic(STATUS)
        assert status.json()["status"] == "ok"

        # the Home Assistant button: 202 this time, and the sync then fails
        sim.sync_reply, sim.sync_error = "accepted", "LoginFailedError"
        found = await retained(broker.host, broker.port, "homeassistant/button/#")
        button = found["homeassistant/button/fin2mqtt_vezgo/main_action_sync/config"].json()
        await client.publish(button["command_topic"], button["payload_press"], qos=1)
        pressed = await answer(recorder, None)
        assert pressed["status"] == "ok"
        assert pressed["data"]["result"] == {"sync": "requested", "reply": "accepted"}
        await recorder.wait_topic(STATUS, 2)
        assert states(recorder)[-1] == ("reconnect_required", 1)
        assert len(sim.calls) == 4

        # every failure is answered as an error, naming the alias, never the account id
        sim.token_status = 401
        assert (await ask("e401"))["error"] == "vezgo sync (main): POST /v1/auth/token: HTTP 401"
        sim.token_status = None
        sim.sync_status = 404
        assert (await ask("e404"))["error"] == (
            'vezgo sync (main): POST /v1/accounts/main/sync: HTTP 404: {"error": "forced"}'
        )
        for code in (429, 503):
            sim.sync_status = code
            assert (await ask(f"e{code}"))["error"] == (
                f"vezgo sync (main): POST /v1/accounts/main/sync failed 1 times: HTTP {code}"
            )
        sim.sync_status = None
        sim.stall = 1.0  # longer than http_timeout
        timed_out = await ask("slow")
        assert timed_out["status"] == "error"
        assert timed_out["error"].startswith(
            "vezgo sync (main): POST /v1/auth/token failed 1 times:"
        )
        assert "Timeout" in timed_out["error"]
        sim.stall = 0
        assert (await ask("ghost", account="ghost"))["error"] == (
            "vezgo sync: unknown account 'ghost' (main, gone)"
        )
        # the account "gone" is configured but unknown to Vezgo (for this user): 404
        assert (await ask("gone", account="gone"))["error"] == (
            'vezgo sync (gone): POST /v1/accounts/gone/sync: HTTP 404: {"error": "account not found"}'
        )
        responses = b"".join(m.payload for m in recorder.on(RESPONSE))
        assert b"acc-1001" not in responses and b"acc-2002" not in responses
        assert not any(sim.secret.encode() in m.payload for m in recorder.messages)
        assert token not in daemon.log() and sim.secret not in daemon.log()
        # the daemon still answers everything else
        await client.publish("fin2mqtt/bridge/request/info", b'{"transaction":"i"}', qos=1)
        await recorder.wait_topic("fin2mqtt/bridge/response/info")
        await daemon.terminate()


async def test_a_hook_answered_2xx_survives_sigkill_before_the_broker_saw_it(
    broker, daemon_config, sim, tmp_path
):
    port = free_port()
    text = config(daemon_config, sim, port)
    async with DaemonProcess(text, tmp_path / "d1") as daemon:
        await daemon.wait_ready()
        broker.stop()
        vezgo = sim.sender(f"http://127.0.0.1:{port}/hooks/vezgo")
        assert await vezgo.send(sync_error("acc-1001", "LoginFailedError")) == (
            200,
            {"status": "accepted"},
        )
        daemon.kill()
    broker.start()
    async with (
        MqttRecorder(broker.host, broker.port, ("fin2mqtt/vezgo/#",)) as rec,
        DaemonProcess(text, tmp_path / "d2") as daemon,
    ):
        await daemon.wait_ready()
        (notice,) = await rec.wait_topic(NOTICE)
        body = notice.json()
        assert (notice.qos, notice.retain) == (1, False)
        assert (body["title"], body["details"]["status"]) == (
            "Sync failed: LoginFailedError",
            "reconnect_required",
        )
        # the hook's retained status was kept too (Vezgo will not say it again) …
        await rec.wait_topic(STATUS)
        status = (await retained(broker.host, broker.port, STATUS))[STATUS]
        assert (status.json()["status"], status.json()["details"]["consecutive_failures"]) == (
            "reconnect_required",
            1,
        )
        # … and the failure counter goes on from it after the restart
        vezgo = sim.sender(f"http://127.0.0.1:{port}/hooks/vezgo")
        assert (await vezgo.send(sync_error("acc-1001", "TemporaryFailureError")))[0] == 200
        await rec.wait_topic(STATUS, 2)
        assert rec.on(STATUS)[-1].json()["details"]["consecutive_failures"] == 2
        await daemon.terminate()


async def test_a_webhook_port_in_use_stops_the_daemon_with_a_clear_error(
    broker, daemon_config, sim, tmp_path
):
    """Another program holds the port: the daemon says so and exits (status 3), instead of a
    traceback, or of waiting forever for a publisher that lost its cancellation."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with DaemonProcess(config(daemon_config, sim, port), tmp_path / "d") as daemon:
            code = await daemon.wait_exit(30)
            log = daemon.log()
    assert code == 3, log
    assert (
        f"the webhook server cannot listen on 127.0.0.1:{port}: Address already in use; is "
        "another program (or another fin2mqtt) using the port? Choose another with [webhooks] port"
    ) in log
    assert "Traceback" not in log
    state = await retained(broker.host, broker.port, "fin2mqtt/bridge/state")
    assert state["fin2mqtt/bridge/state"].json()["state"] == "offline"
