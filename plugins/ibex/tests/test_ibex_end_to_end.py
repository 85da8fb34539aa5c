"""IBEX FI end to end: simulator (WebSocket + HTTP) ↔ daemon (subprocess) ↔ mosquitto ↔ subscriber."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from fin2mqtt_ibex.simulator import MAIN_SAFE, SAVINGS_SAFE, IbexSimulator
from websockets.asyncio.client import connect

from bridge.testing.daemon import DaemonProcess
from bridge.testing.recorder import MqttRecorder, retained

BASE = "fin2mqtt/ibex"
MAIN = f"{BASE}/main"
SAVINGS = f"{BASE}/savings"
FAST_LIMITS = "[[100, 6.0], [20, 1.0]]"
"""The documented limits (100 per minute, 20 per 10 s) ten times faster."""


def providers(sim: IbexSimulator, token_file: Path, **extra: object) -> str:
    settings = {
        "fallback_after": 0.3,
        "poll_interval": 0.12,
        "rate_limits": FAST_LIMITS,
        "token_poll": 0.05,
        "retry_min": 0.02,
        "retry_max": 0.1,
        "auth_retry": 0.3,
        "duplicate_retry": 30,
        "http_timeout": 2,
        "auth_timeout": 2,
        **extra,
    }
    lines = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f"""
[[providers]]
type = "ibex"
name = "ibex"
api_url = "http://127.0.0.1:{sim.port}"
token_file = "{token_file}"
safes = [{{address = "{MAIN_SAFE}", alias = "main"}}, {{address = "{SAVINGS_SAFE}", alias = "savings"}}]
{lines}
"""


@pytest.fixture(params=["v1.2", "v1.1"])
async def sim(request):
    async with IbexSimulator(
        generation=request.param, seed=7, rate_limits=((100, 6.0), (20, 1.0))
    ) as s:
        yield s


@pytest.fixture
async def v12():
    async with IbexSimulator(seed=7, rate_limits=((100, 6.0), (20, 1.0))) as s:
        yield s


def token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "ibex.jwt"
    path.write_text(token + "\n")
    return path


def link_of(recorder: MqttRecorder) -> list[tuple[str, str | None]]:
    return [(m.json()["state"], m.json()["error"]) for m in recorder.on(f"{BASE}/link")]


def last_link(recorder: MqttRecorder) -> tuple[str, str | None]:
    """The last published link state (state, error); ("", None) before the first."""
    states = link_of(recorder)
    return states[-1] if states else ("", None)


async def test_burst_becomes_retained_balances_and_statuses(
    broker, recorder, daemon_config, sim, tmp_path
):
    # what the WebSocket alone says: on a loaded machine the stream can take longer than
    # fallback_after to come up, and a poll then publishes the HTTP API's fuller state
    config = daemon_config(providers(sim, token_file(tmp_path, sim.mint()), fallback_after=60))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{SAVINGS}/status/recovery")
        await recorder.wait_topic(f"{BASE}/status/kyc")  # user_data came twice: it overwrote
        await recorder.wait_topic(f"{SAVINGS}/transaction")
        state = await retained(broker.host, broker.port, f"{BASE}/#")
        balances = {t: m.json()["total"] for t, m in state.items() if "/balance/" in t}
        expected = {f"{MAIN}/balance/eure": "100.00", f"{SAVINGS}/balance/eure": "2500.50"}
        if sim.generation == "v1.2":  # v1.1's balance_data carries the main token only
            expected[f"{SAVINGS}/balance/usdc"] = "12.5"
        assert balances == expected
        assert state[f"{MAIN}/balance/eure"].json()["asset"] == "EURe"
        kyc = state[f"{BASE}/status/kyc"].json()
        assert (kyc["status"], kyc["raw"], kyc["details"]) == (
            "pending",
            "1",
            {"user_id": "user-42"},
        )
        main_iban = state[f"{MAIN}/status/iban"].json()
        assert (main_iban["status"], main_iban["raw"]) == ("approved", {"chainId": 100})
        assert state[f"{SAVINGS}/status/iban"].json()["status"] == "not_approved"
        assert state[f"{MAIN}/status/recovery"].json()["status"] == "disabled"
        assert state[f"{BASE}/status/chain"].json()["status"] == "100"
        assert state[f"{BASE}/link"].json()["state"] == "connected"
        assert all(m.retain and m.qos == 1 for m in state.values())
        # one transaction per Safe in the burst, published once, not retained
        [tx] = recorder.on(f"{MAIN}/transaction")
        assert (tx.retain, tx.qos) == (False, 1)
        body = tx.json()
        assert (body["direction"], body["amount"], body["asset"]) == (
            "in",
            "100.00",
            "EURe" if sim.generation == "v1.2" else None,
        )
        assert body["tx_hash"] == sim.safes[MAIN_SAFE].transactions[0]["hash"]
        # user_data came twice, 0.25 s apart, saying the same: each of its topics published once
        await asyncio.sleep(0.5)
        for topic in (f"{BASE}/status/kyc", f"{MAIN}/status/iban", f"{SAVINGS}/status/iban"):
            assert len(recorder.on(topic)) == 1, topic
        # the auth message carried the token and the client name
        assert sim.received[0]["type"] == "auth"
        assert sim.received[0]["clientName"] == "fin2mqtt"
        # Home Assistant: a balance sensor per token, and the recovery-pending binary sensor
        configs = await retained(broker.host, broker.port, "homeassistant/#")
        assert (
            "homeassistant/binary_sensor/fin2mqtt_ibex/main_status_recovery_pending/config"
            in configs
        )
        assert (
            "homeassistant/binary_sensor/fin2mqtt_ibex/main_status_kyc_pending/config"
            not in configs
        )
        eure = configs["homeassistant/sensor/fin2mqtt_ibex/main_balance_eure_total/config"].json()
        assert (eure["device_class"], eure["unit_of_measurement"]) == ("monetary", "EURe")
        # IBAN and BIC strings never appear anywhere
        assert not [m for m in recorder.messages if b"DE89" in m.payload or b'"bic"' in m.payload]
        await daemon.terminate()


async def test_updates_reach_their_topics(broker, recorder, daemon_config, sim, tmp_path):
    # what the WebSocket alone says: on a loaded machine the stream can take longer than
    # fallback_after to come up, and a poll then publishes the HTTP API's fuller state
    config = daemon_config(providers(sim, token_file(tmp_path, sim.mint()), fallback_after=60))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{SAVINGS}/status/recovery")
        await sim.wait_until(lambda: sim.sessions)
        await sim.push_transaction(MAIN_SAFE, Decimal("50.25"))
        await sim.update_balance(MAIN_SAFE, "EURe", Decimal("150.25"))
        await sim.set_kyc("2")
        await sim.set_iban(SAVINGS_SAFE, "approved")
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/status/kyc" and m.json()["status"] == "verified" for m in ms
            ),
            what="kyc verified",
        )
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{SAVINGS}/status/iban" and m.json()["status"] == "approved" for m in ms
            ),
            what="savings iban approved",
        )
        balance = (await recorder.wait_topic(f"{MAIN}/balance/eure", 2))[-1].json()
        assert balance["total"] == "150.25"
        # new_transaction also lists the recent ones: each transaction is published once
        txs = await recorder.wait_topic(f"{MAIN}/transaction", 2)
        await asyncio.sleep(0.2)
        assert [m.json()["amount"] for m in recorder.on(f"{MAIN}/transaction")] == [
            "100.00",
            "50.25",
        ]
        assert txs[-1].json()["asset"] == "EURe"
        rereads = [path for _, path, _ in sim.http_log if path == "/v1.2/users/me"]
        if sim.generation == "v1.2":  # signal-only updates: the state is read over HTTP
            assert 1 <= len(rereads) <= 2  # signals arriving together share one read
        else:
            assert rereads == []
            kyc = recorder.on(f"{BASE}/status/kyc")[-1].json()
            assert kyc["details"] == {"previous": "1"}
        await daemon.terminate()


async def test_expired_token_is_never_sent_and_a_replaced_file_is_used_without_restart(
    broker, recorder, daemon_config, v12, tmp_path
):
    path = token_file(tmp_path, v12.mint(expires_in=-60))
    async with DaemonProcess(daemon_config(providers(v12, path)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: any(
                m.topic == f"{BASE}/link" and m.json()["state"] == "auth_failed" for m in ms
            ),
            what="auth_failed",
            timeout=3,
        )
        state, error = last_link(recorder)
        assert state == "auth_failed"
        assert error.startswith("the token expired at ")
        assert f"(file {path}; waiting for a fresh token)" in error
        await asyncio.sleep(0.5)
        assert (v12.attempts, v12.http_log) == (0, [])  # nothing was tried with it
        path.write_text(v12.mint() + "\n")
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "connected", what="connected")
        await recorder.wait_topic(f"{MAIN}/balance/eure")
        assert v12.connects == 1
        assert daemon.running
        await daemon.terminate()


async def test_token_expiring_while_connected_reconnects_with_the_replaced_file(
    broker, recorder, daemon_config, v12, tmp_path
):
    v12.enforce_expiry = True
    path = token_file(tmp_path, v12.mint(expires_in=3.0))
    async with DaemonProcess(daemon_config(providers(v12, path)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{MAIN}/transaction")
        await v12.wait_until(lambda: "TOKEN_EXPIRED" in v12.auth_failures, timeout=8)
        await recorder.wait_for(
            lambda ms: last_link(recorder)[0] == "auth_failed", what="auth_failed"
        )
        assert v12.connects == 1
        path.write_text(v12.mint() + "\n")
        await v12.wait_until(lambda: v12.sessions, timeout=5)
        await recorder.wait_for(
            lambda ms: last_link(recorder)[0] == "connected", what="connected again"
        )
        assert v12.connects == 2
        # the second burst replayed the transactions: still published once each
        await v12.push_transaction(MAIN_SAFE, Decimal("7"))
        await recorder.wait_topic(f"{MAIN}/transaction", 2)
        await asyncio.sleep(0.3)
        assert [m.json()["amount"] for m in recorder.on(f"{MAIN}/transaction")] == ["100.00", "7"]
        await daemon.terminate()


async def test_already_connected_is_reported_and_not_retried_in_a_loop(
    broker, recorder, daemon_config, v12, tmp_path
):
    async with connect(v12.url) as squatter:  # another client holds the user's only socket
        await squatter.send(json.dumps({"type": "auth", "token": v12.mint()}))
        await v12.wait_until(lambda: v12.sessions)
        config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
        async with DaemonProcess(config, tmp_path / "d") as daemon:
            await daemon.wait_ready()
            await recorder.wait_for(
                lambda ms: last_link(recorder)[0] == "fallback",
                what="fallback",
            )
            await asyncio.sleep(1.5)
            assert v12.attempts == 2  # the squatter and us, once: no reconnect storm
            assert v12.auth_failures == ["ALREADY_CONNECTED"]
            state, error = last_link(recorder)
            assert state == "fallback"
            assert error == (
                "ALREADY_CONNECTED: another client holds this user's only WebSocket "
                "(connection conn-1); polling over HTTP every 0.12 s"
            )
            # the data still flows, over HTTP
            state = await retained(broker.host, broker.port, f"{BASE}/#")
            assert state[f"{SAVINGS}/balance/usdc"].json()["total"] == "12.5"
            assert "polling over HTTP every 0.12 s" in daemon.log()
            await daemon.terminate()


async def test_close_4003_holds_off_instead_of_reconnecting(
    broker, recorder, daemon_config, v12, tmp_path
):
    config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await v12.wait_until(lambda: v12.sessions)
        await recorder.wait_topic(f"{MAIN}/transaction")
        await v12.close_all(4003, "Duplicate session")
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "fallback", what="fallback")
        await asyncio.sleep(1.0)
        assert v12.attempts == 1
        assert last_link(recorder) == (
            "fallback",
            "closed by server: 4003 Duplicate session; polling over HTTP every 0.12 s",
        )
        await daemon.terminate()


async def test_websocket_down_polls_within_the_limits_then_stops_when_it_is_back(
    broker, recorder, daemon_config, v12, tmp_path
):
    v12.reject_status = 503  # the WebSocket cannot be held; HTTP still answers
    config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{MAIN}/balance/eure")
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "fallback", what="fallback")
        assert last_link(recorder) == (
            "fallback",
            "handshake refused: HTTP 503; polling over HTTP every 0.12 s",
        )
        # balances stay fresh while polling
        v12.safes[MAIN_SAFE].tokens["EURe"] = Decimal("555.55")
        await recorder.wait_for(
            lambda ms: (
                [m.json()["total"] for m in ms if m.topic == f"{MAIN}/balance/eure"][-1:]
                == ["555.55"]
            ),
            what="polled balance",
        )
        await asyncio.sleep(3.0)  # polling as fast as allowed
        assert v12.rate_limited == 0
        assert v12.most_in_any_window(1.0) <= 20
        assert v12.most_in_any_window(6.0) <= 100
        assert len(v12.http_log) >= 40  # it did poll, close to the limit
        # transactions were polled too, each published once
        assert len(recorder.on(f"{MAIN}/transaction")) == 1
        # the WebSocket comes back: connected, and polling stops
        v12.reject_status = None
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "connected", what="connected")
        back = time.monotonic()
        await asyncio.sleep(1.0)
        late = [path for t, path, _ in v12.http_log if t > back + 0.1]
        assert late == []
        assert "HTTP polling stopped: the WebSocket is back" in daemon.log()
        await daemon.terminate()


async def test_http_errors_back_off_and_show_on_the_link(
    broker, recorder, daemon_config, v12, tmp_path
):
    v12.reject_status = 503
    v12.http_fail = 500
    config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(
            lambda ms: "HTTP fallback failing" in (last_link(recorder)[1] or ""),
            what="fallback failing",
        )
        state, error = last_link(recorder)
        assert state in ("connecting", "disconnected")  # the WebSocket keeps retrying
        assert error == (
            "handshake refused: HTTP 503; HTTP fallback failing: "
            "GET /v1.2/users/me/balances failed 3 times: HTTP 500"
        )
        v12.http_fail = None
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "fallback", what="fallback")
        await recorder.wait_topic(f"{MAIN}/balance/eure")
        await daemon.terminate()


async def test_reconnect_reconciles_transactions_and_publishes_none_twice(
    broker, recorder, daemon_config, v12, tmp_path
):
    config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await v12.wait_until(lambda: v12.sessions)
        await recorder.wait_topic(f"{MAIN}/transaction")
        v12.drop_all()  # 1006
        v12.add_transaction(MAIN_SAFE, Decimal("3.5"))  # while the link was down
        await v12.wait_until(lambda: v12.connects == 2 and v12.sessions)
        await recorder.wait_topic(f"{MAIN}/transaction", 2)
        await v12.wait_until(lambda: any(p.endswith("/transactions") for _, p, _ in v12.http_log))
        await asyncio.sleep(0.3)
        assert [m.json()["amount"] for m in recorder.on(f"{MAIN}/transaction")] == ["100.00", "3.5"]
        assert len(recorder.on(f"{SAVINGS}/transaction")) == 1
        await daemon.terminate()


async def test_http_401_rereads_the_token_file(broker, recorder, daemon_config, v12, tmp_path):
    v12.reject_status = 503
    path = token_file(tmp_path, v12.mint())
    async with DaemonProcess(daemon_config(providers(v12, path)), tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "fallback", what="fallback")
        v12.secret = "a-new-signing-key-the-old-token-fails-0123456789"  # the old token is revoked
        await recorder.wait_for(
            lambda ms: "HTTP 401" in (last_link(recorder)[1] or ""), what="401 on the link"
        )
        assert last_link(recorder)[1].endswith(
            "HTTP fallback failing: GET /v1.2/users/me/balances: HTTP 401"
        )
        path.write_text(v12.mint() + "\n")  # signed with the new key
        await recorder.wait_for(
            lambda ms: last_link(recorder)[0] == "fallback", what="fallback again"
        )
        ok = [p for _, p, status in v12.http_log if status == 200]
        await v12.wait_until(lambda: len([s for _, _, s in v12.http_log if s == 200]) > len(ok))
        await daemon.terminate()


async def test_an_html_page_on_an_http_read_leaves_the_websocket_connected(
    broker, recorder, daemon_config, v12, tmp_path
):
    config = daemon_config(providers(v12, token_file(tmp_path, v12.mint())))
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await recorder.wait_topic(f"{MAIN}/transaction")
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "connected", what="connected")
        v12.html_body = True  # a proxy answers the REST API with its maintenance page
        await v12.set_iban(SAVINGS_SAFE, "approved")  # v1.2: a signal to re-read the user
        await v12.wait_until(lambda: any(p == "/v1.2/users/me" for _, p, _ in v12.http_log))
        await asyncio.sleep(0.5)
        # the failed read is reported, and the healthy WebSocket is left alone
        assert (
            "re-reading the user after an update signal failed: GET /v1.2/users/me: "
            "undecodable body (text/html: '<html><body><h1>Scheduled maintenance</h1></body></html>')"
        ) in daemon.log()
        assert "JSONDecodeError" not in daemon.log()
        assert v12.connects == 1
        assert [state for state, _ in link_of(recorder)][-1] == "connected"
        assert "disconnected" not in [state for state, _ in link_of(recorder)]

        # while the WebSocket is down, the fallback's own failure shows on the link topic
        v12.reject_status = 503
        v12.drop_all()
        await recorder.wait_for(
            lambda ms: "HTTP fallback failing" in (last_link(recorder)[1] or ""),
            what="fallback failing",
        )
        assert last_link(recorder)[1] == (
            "handshake refused: HTTP 503; HTTP fallback failing: GET /v1.2/users/me/balances: "
            "undecodable body (text/html: '<html><body><h1>Scheduled maintenance</h1></body></html>')"
        )
        v12.html_body = False
        await recorder.wait_for(lambda ms: last_link(recorder)[0] == "fallback", what="fallback")
        assert daemon.running
        await daemon.terminate()
