"""Nothing secret, personal or wrong leaves the bridge: the core's share (issue 16).

Public configuration view, log redaction, raw events (sensitive keys, bytes, account, size),
partial state, scoped snapshots, UTC times, reserved names, secret precedence.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.api import (
    BalanceEvent,
    ParseContext,
    PositionEvent,
    Provider,
    ProviderSettings,
    RawEvent,
    SnapshotEvent,
    TradeEvent,
)
from bridge.config.loader import load_config
from bridge.model.redaction import MASK, SECRETS
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.hub import Hub
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.retained_state import RetainedState
from bridge.pipeline.seen_ids import SeenIds
from bridge.plugin.parsing import unparsed_event
from bridge.runtime.logsetup import setup_logging
from bridge.testing.parsing import parse_frames

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ADDRESS = "0x" + "ab12" * 10


@pytest.fixture(autouse=True)
def _no_secrets_between_tests() -> Iterator[None]:
    SECRETS.clear()
    yield
    SECRETS.clear()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


# --- the public configuration ----------------------------------------------------------------

LEAKY = f"""
[mqtt]
password = "mqtt-pass-0001"

[[providers]]
type = "example"
name = "ex"
api_key = "example-key-0002"
url = "wss://fin2mqtt:url-pass-0003@stream.example.invalid/ws?apikey=query-key-0004"

[[providers]]
type = "ibex"
name = "ibex"
token_command = ["sh", "-c", "curl -s -u fin2mqtt:cmd-pass-0005 https://vault.invalid/jwt"]
safes = [{{ address = "{ADDRESS}", alias = "main" }}]
"""
LEAKED = ("mqtt-pass-0001", "example-key-0002", "url-pass-0003", "query-key-0004", "cmd-pass-0005")


def test_bridge_info_config_is_the_public_view(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(LEAKY)
    public = load_config(path).redacted()
    text = json.dumps(public)
    assert not [s for s in LEAKED if s in text]
    assert ADDRESS not in text.lower()
    example, ibex = public["providers"]
    assert example["url"] == "wss://stream.example.invalid/ws"
    assert example["api_key"] == MASK
    assert ibex["token_command"] == MASK
    assert ibex["safes"] == [{"address": f"{ADDRESS[:6]}…{ADDRESS[-4:]}", "alias": "main"}]
    assert public["mqtt"]["password"] == MASK


def test_check_output_and_errors_carry_no_secret(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        LEAKY.replace('host = "', 'host = "') + '\n[webhooks]\nport = "url-pass-0003"\n'
    )
    bad = run_cli("check", "-c", str(path))
    assert bad.returncode == 2
    assert "webhooks.port" in bad.stderr
    assert not [s for s in LEAKED if s in bad.stdout + bad.stderr]
    path.write_text(LEAKY)
    good = run_cli("check", "-c", str(path))
    assert good.returncode == 0, good.stderr
    assert not [s for s in LEAKED if s in good.stdout + good.stderr]


# --- logging ---------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("websockets", "aiomqtt", "paho", "engineio", "socketio", "aiohttp"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.usefixtures("restore_logging")
def test_protocol_loggers_stay_at_info_unless_trace(capfd: pytest.CaptureFixture[str]):
    setup_logging("debug")
    logging.getLogger("websockets.client").debug("> Authorization: hdr-0001")
    logging.getLogger("fin2mqtt.test").debug("our own debug line")
    err = capfd.readouterr().err
    assert "our own debug line" in err
    assert "hdr-0001" not in err
    setup_logging("trace")
    logging.getLogger("websockets.client").debug("> Authorization: hdr-0002")
    assert "hdr-0002" in capfd.readouterr().err


@pytest.mark.usefixtures("restore_logging")
def test_every_record_is_scrubbed_whatever_logger_wrote_it(capfd: pytest.CaptureFixture[str]):
    SECRETS.add("sekrit-0001", "tok-0002")
    setup_logging("trace")
    logging.getLogger("websockets.client").debug("> TEXT %s", '{"type":"auth","token":"tok-0002"}')
    logging.getLogger("some.library").warning("key is %s", "sekrit-0001")
    try:
        raise ValueError("bad key sekrit-0001")
    except ValueError:
        logging.getLogger("fin2mqtt").exception("failed")
    err = capfd.readouterr().err
    assert "sekrit-0001" not in err
    assert "tok-0002" not in err
    assert err.count(MASK) >= 4  # the frame, the argument, the message and its source line
    assert "ValueError: bad key" in err


# --- raw events ------------------------------------------------------------------------------


class RawSettings(ProviderSettings):
    """Nothing to set."""


class RawProvider(Provider[RawSettings]):
    """Leaves everything raw, or fails on frames that say so."""

    settings_model = RawSettings
    sensitive_keys = frozenset({"userId"})

    def connections(self, ctx: Any) -> list[Any]:
        return []

    def parse(self, frame: Any, ctx: ParseContext) -> list[Any] | None:
        if isinstance(frame, dict) and frame.get("fail"):
            raise KeyError("price")
        if isinstance(frame, dict) and frame.get("lose_account"):
            return [ctx.raw("x", frame).model_copy(update={"account": None})]
        return None


def raw_of(frame: Any, account: str | None = "acct") -> RawEvent:
    [event] = parse_frames(RawProvider("p", RawSettings()), [frame], NOW, account=account)
    assert isinstance(event, RawEvent)
    return event


def test_raw_events_mask_sensitive_keys_at_any_depth():
    SECRETS.add("known-secret-value")
    frame = {
        "id": 7,
        "result": {"listenKey": "lk-1", "nested": [{"api_key": "k", "userId": 42}]},
        "note": "contains known-secret-value",
    }
    event = raw_of(frame)
    assert event.data == {
        "id": 7,
        "result": {"listenKey": MASK, "nested": [{"api_key": MASK, "userId": MASK}]},
        "note": f"contains {MASK}",
    }


def test_raw_events_keep_the_connections_account_and_binary_frames():
    assert raw_of({"lose_account": True}).account == "acct"
    assert raw_of(b"\xff\xfe\x00binary").data == "base64://4AYmluYXJ5"
    provider, frame = RawProvider("p", RawSettings()), {"fail": True, "token": "t"}
    ctx = ParseContext("p", "acct", NOW)
    with pytest.raises(KeyError) as exc:
        parse_frames(provider, [frame], NOW, account="acct")
    failed = unparsed_event(provider, frame, ctx, exc.value)
    assert (failed.name, failed.account, failed.error) == ("unparsed", "acct", "KeyError: 'price'")
    assert failed.data == {"fail": True, "token": MASK}


# --- the hub: partial state, scoped snapshots, size limit ------------------------------------


def make_hub(max_payload: int = 65_536) -> Hub:
    outbox = Outbox(1000, retained=RetainedState(), seen=SeenIds(1000))
    return Hub(TopicMap("b"), outbox, None, 1, max_payload=max_payload)


def state(hub: Hub, topic: str) -> dict[str, Any] | None:
    payload = hub.outbox.state(topic)
    return json.loads(payload) if payload else None


COMMON = {"provider": "p", "account": "a", "received_at": NOW}


def test_a_partial_position_update_keeps_what_it_does_not_carry():
    hub = make_hub()
    full = PositionEvent(id="1", symbol="ETH", direction="long", quantity=Decimal(2),
                         entry_price=Decimal(3000), mark_price=Decimal(3100),
                         notional=Decimal(6200), unrealized_pnl=Decimal(200), **COMMON)  # fmt: skip
    hub.submit([full])
    hub.submit([PositionEvent(id="2", symbol="ETH", direction="long", quantity=Decimal(3),
                              details={"entry_notional": "9000"}, partial=True, **COMMON)])  # fmt: skip
    now = state(hub, "b/p/a/position/eth")
    assert now is not None
    assert (now["quantity"], now["unrealized_pnl"], now["mark_price"], now["entry_price"]) == (
        "3", "200", "3100", "3000",
    )  # fmt: skip
    assert now["details"] == {"entry_notional": "9000"}
    assert "partial" not in now


def test_a_snapshot_of_one_chain_leaves_the_others():
    hub = make_hub()

    def balances(chain: str, asset: str, amount: str) -> SnapshotEvent:
        item = BalanceEvent(id=f"{chain}{amount}", asset=asset, total=Decimal(amount),
                            details={"chain_id": chain}, **COMMON)  # fmt: skip
        return SnapshotEvent(id=f"s{chain}{amount}", covers=("balance",), scope={"chain_id": chain},
                             items=(item,), **COMMON)  # fmt: skip

    hub.submit([balances("100", "EURe@100", "1"), balances("42", "EURe@42", "2")])
    hub.submit([balances("100", "EURe@100", "3")])
    assert state(hub, "b/p/a/balance/eure-42") is not None  # not cleared by chain 100's snapshot
    assert state(hub, "b/p/a/balance/eure-100")["total"] == "3"  # type: ignore[index]
    hub.submit(
        [SnapshotEvent(id="s-none", covers=("balance",), scope={"chain_id": "100"}, **COMMON)]
    )
    assert state(hub, "b/p/a/balance/eure-100") is None
    assert state(hub, "b/p/a/balance/eure-42") is not None


def test_an_oversized_event_is_summarised_and_counted():
    hub = make_hub(max_payload=2048)
    huge = TradeEvent(id="t", symbol="X", details={"blob": "x" * 300_000}, **COMMON)
    hub.submit([huge])
    assert hub.oversized == 1
    [(topic, payload)] = _queued(hub)
    assert topic == "b/p/a/raw"
    body = json.loads(payload)
    assert (body["name"], body["data"]["kind"], body["data"]["size"] > 300_000) == (
        "trade", "trade", True,
    )  # fmt: skip
    assert len(payload) < 2048


def _queued(hub: Hub) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in hub.outbox._events]


# --- times -----------------------------------------------------------------------------------


def test_source_time_is_always_aware_utc():
    naive = BalanceEvent(id="1", asset="X", total=1, source_time=datetime(2026, 1, 1, 12),
                         provider="p", received_at=datetime(2026, 1, 1, 12, 0, 1))  # fmt: skip
    assert naive.source_time == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert naive.source_time.tzinfo is UTC  # type: ignore[union-attr]
    assert naive.received_at.tzinfo is UTC
    paris = datetime(2026, 1, 1, 13, tzinfo=timezone(timedelta(hours=1)))
    shifted = BalanceEvent(id="1", asset="X", total=1, source_time=paris, **COMMON)
    assert shifted.model_dump(mode="json")["source_time"] == "2026-01-01T12:00:00Z"


# --- names and secret precedence -------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "example"\nname = "bridge"\napi_key = "k"', "'bridge' is reserved"),
        (
            'type = "hibachi"\nname = "h"\napi_key = "k"\naccounts = [{id = 1, alias = "market"}]',
            "account alias 'market' is reserved",
        ),
        (
            'type = "hibachi"\nname = "h"\napi_key = "k"\n'
            'accounts = [{id = 1, alias = "Main"}, {id = 2, alias = "main"}]',
            "'Main' and 'main' are the same topic level 'main'",
        ),
    ],
)
def test_reserved_and_colliding_names_are_refused_by_check(tmp_path: Path, table, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[[providers]]\n{table}\n")
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert message in result.stderr


def test_a_credential_wins_over_a_password_file_and_a_value(tmp_path: Path):
    (tmp_path / "pw").write_text("from-file\n")
    path = tmp_path / "c.toml"
    path.write_text(f'[mqtt]\npassword_file = "{tmp_path / "pw"}"\n'
                    '[[providers]]\ntype = "testprov"\nname = "main"\napi_key = "inline"\n')  # fmt: skip
    creds = tmp_path / "creds"
    creds.mkdir()
    code = (
        "from pathlib import Path; from bridge.config.loader import load_config;"
        f"c = load_config(Path({str(path)!r}));"
        "print(c.settings.mqtt.password.get_secret_value(),"
        " c.instances[0].settings.api_key.get_secret_value())"
    )

    def values(env: dict[str, str]) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True)  # fmt: skip
        return out.stdout.split()

    assert values({"FIN2MQTT_MQTT__PASSWORD": "from-env"}) == ["from-file", "inline"]
    (creds / "mqtt__password").write_text("from-credential\n")
    (creds / "provider__main__api_key").write_text("key-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "FIN2MQTT_MQTT__PASSWORD": "from-env"}
    assert values(env) == ["from-credential", "key-credential"]
