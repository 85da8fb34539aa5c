"""Axisor: every example of the seed, both connection replies and both error shapes → events."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fin2mqtt_axisor import AxisorProvider, AxisorSettings
from fin2mqtt_axisor.simulator import SEED_EVENTS, AxisorSimulator
from pydantic import ValidationError

from bridge.testing.parsing import parse_frames

# as the link decodes them: JSON numbers become Decimal, never float
SEED = json.loads(SEED_EVENTS.read_text(), parse_float=Decimal)
NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
DOC_HELLO = {"type": "connection", "status": "connected", "userId": "user_123",
             "sessionId": "session_456", "serverTime": "2025-01-06T10:30:00Z"}  # fmt: skip
SERVER_HELLO = {"type": "connection_established", "connectionId": "c1", "userId": "user_123",
                "timestamp": "2025-01-06T10:30:00Z"}  # fmt: skip


@pytest.fixture(params=[DOC_HELLO, SERVER_HELLO], ids=["doc-reply", "server-reply"])
def provider(request) -> AxisorProvider:
    p = AxisorProvider("ax", AxisorSettings(token_file="/run/axisor.jwt", account="main"))
    p.control(request.param)  # the connection reply names the user (as on a live link)
    return p


def events_of(provider, frame) -> list[dict]:
    return [
        e.model_dump(mode="json", by_alias=True, exclude={"received_at", "schema_", "provider"})
        for e in parse_frames(provider, [frame], NOW)
    ]


def seed(kind: str) -> dict:
    [frame] = [f for f in SEED if f["type"] == kind]
    return frame


def test_the_seed_has_all_ten_event_types():
    assert len(SEED) == 10
    assert len({f["type"] for f in SEED}) == 10


def test_market_data_is_a_retained_price_with_the_24h_figures(provider):
    [price] = events_of(provider, seed("market_data_update"))
    assert (price["kind"], price["account"], price["market"], price["price"]) == (
        "market_price", None, "BTC_USD", "43250.50",
    )  # fmt: skip
    assert price["details"] == {
        "change_24h": "-1249.50",
        "change_percent_24h": "-2.81",
        "high_24h": "44500.00",
        "low_24h": "42800.00",
        "volume_24h": "1250000.00",
    }
    assert price["source_time"] == "2025-01-06T10:30:00Z"


def test_historical_candles_pass_as_an_event_with_exact_numbers(provider):
    [candles] = events_of(provider, seed("historical_data_update"))
    assert (candles["kind"], candles["name"], candles["account"]) == (
        "raw", "historical_data_update", None,
    )  # fmt: skip
    assert candles["data"] == {
        "symbol": "BTC_USD",
        "timeframe": "1h",
        "candles": [{"time": "2024-01-06T13:20:00Z", "open": "43000", "high": "43500",
                     "low": "42800", "close": "43250", "volume": "1000000"}],
        "timestamp": "2025-01-06T10:30:00Z",
    }  # fmt: skip
    assert candles["error"] is None


def test_price_alert(provider):
    [alert] = events_of(provider, seed("price_alert"))
    assert (alert["kind"], alert["account"], alert["category"]) == (
        "notification", "main", "price_alert",
    )  # fmt: skip
    assert (alert["title"], alert["message"]) == ("BTC_USD above 45000", "BTC_USD at 45200")
    assert alert["details"]["current_price"] == "45200"
    assert alert["source_time"] == "2025-01-06T10:30:00Z"


def test_margin_guard_execution(provider):
    [mg] = events_of(provider, seed("margin_guard_execution"))
    assert (mg["id"], mg["category"], mg["severity"]) == (
        "margin-guard-mg_exec_123", "margin_guard", "warning",
    )  # fmt: skip
    assert mg["message"] == "1 of 3 positions at risk"
    assert mg["details"]["positions"] == [
        {"position_id": "pos_123", "symbol": "BTC_USD", "distance_to_liquidation": "0.82",
         "at_risk": True, "recommended_action": "close_position"}
    ]  # fmt: skip
    assert mg["details"]["actions_executed"] == ["notification_sent"]
    assert "user_123" not in json.dumps(mg)  # the user is the account alias, never its id


def test_position_status_is_retained_per_position(provider):
    [pos] = events_of(provider, seed("position_status_update"))
    assert (pos["kind"], pos["account"], pos["symbol"], pos["direction"]) == (
        "position", "main", "BTC_USD pos_123", "long",
    )  # fmt: skip
    assert (pos["quantity"], pos["entry_price"], pos["mark_price"], pos["unrealized_pnl"]) == (
        "1000", "43000", "43500", "500",
    )  # fmt: skip
    assert pos["details"] == {"position_id": "pos_123", "symbol": "BTC_USD", "margin": "100",
                              "leverage": "10", "pnl": "500", "distance_to_liquidation": "0.92",
                              "at_risk": False}  # fmt: skip


def test_auto_close_is_an_event_and_clears_the_position(provider):
    notice, closed = events_of(provider, seed("auto_close_execution"))
    assert (notice["id"], notice["category"], notice["title"]) == (
        "auto-close-auto_close_123", "auto_close", "BTC_USD position closed",
    )  # fmt: skip
    assert notice["details"]["pnl"] == "-150"
    assert notice["details"]["closed_at"] == "2025-01-06T10:30:00Z"
    # the same topic key as the position's status: its retained topic is cleared
    assert (closed["kind"], closed["symbol"], closed["direction"]) == (
        "position", "BTC_USD pos_123", "closed",
    )  # fmt: skip


def test_in_app_notification_and_its_status(provider):
    [note] = events_of(provider, seed("in_app_notification"))
    assert (note["id"], note["category"], note["severity"], note["title"]) == (
        "notification-notif_123", "margin_guard", "warning", "Margin Guard Alert",
    )  # fmt: skip
    assert note["details"]["data"] == {"positionId": "pos_123", "distanceToLiquidation": "0.82"}
    [status] = events_of(provider, seed("notification_status_update"))
    assert (status["category"], status["message"]) == (
        "notification_status", "notification notif_123 delivered by email",
    )  # fmt: skip
    assert status["source_time"] == "2025-01-06T10:30:05Z"


def test_platform_status_is_retained_without_an_account(provider):
    [maint] = events_of(provider, seed("server_maintenance"))
    assert (maint["kind"], maint["account"], maint["topic"], maint["status"]) == (
        "account_status", None, "maintenance", "scheduled",
    )  # fmt: skip
    assert maint["details"]["start_time"] == "2025-01-07T02:00:00Z"
    [svc] = events_of(provider, seed("service_status_update"))
    assert (svc["topic"], svc["status"], svc["raw"]) == (
        "service_margin_guard", "degraded", "degraded",
    )  # fmt: skip
    assert svc["details"]["estimated_recovery"] == "2025-01-06T11:00:00Z"


def test_ids_are_stable_so_replays_dedupe(provider):
    first = [e["id"] for f in SEED for e in events_of(provider, f)]
    later = [e.id for e in parse_frames(provider, SEED, datetime(2027, 1, 1, tzinfo=UTC))]
    assert first == later
    assert len(set(first)) == len(first)


def test_floats_from_a_lenient_decoder_stay_exact(provider):
    frame = json.loads(json.dumps(seed("market_data_update"), default=float))
    [price] = events_of(provider, frame)
    assert price["price"] == "43250.5"  # the float's shortest digits, never 43250.500000001


def test_control_frames_publish_nothing(provider):
    replies = [
        DOC_HELLO,
        SERVER_HELLO,
        {"type": "room_subscription", "channel": "market:BTC_USD", "status": "subscribed",
         "subscribedRooms": ["user:user_123", "market:BTC_USD"]},
        {"type": "room_list", "subscribedRooms": ["user:user_123"]},
        {"type": "pong", "timestamp": "2025-01-06T10:30:00Z"},
    ]  # fmt: skip
    assert [events_of(provider, f) for f in replies] == [[], [], [], [], []]


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "error", "code": "RATE_LIMIT_EXCEEDED", "message": "Too many messages"},
        {"type": "error", "error": "Rate limit exceeded"},
    ],
    ids=["doc-shape", "server-shape"],
)
def test_rate_limit_in_either_shape_is_one_warning_per_minute(provider, frame):
    [note] = events_of(provider, frame)
    assert (note["kind"], note["account"], note["category"], note["severity"]) == (
        "notification", None, "error", "warning",
    )  # fmt: skip
    assert note["title"] == "RATE_LIMIT_EXCEEDED"
    later = parse_frames(provider, [frame], NOW.replace(second=59))
    assert later[0].id == note["id"]  # the same minute: deduplicated


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "error", "code": "AUTHENTICATION_FAILED", "message": "Invalid token"},
        {"type": "error", "error": "Authentication failed"},
        {"type": "error", "code": "INVALID_ROOM", "message": "Invalid room: market:NOPE"},
        {"type": "error", "error": "Invalid room: market:NOPE"},
    ],
)
def test_errors_the_connection_reports_itself_publish_nothing(provider, frame):
    assert events_of(provider, frame) == []


def test_other_errors_and_unknown_types_pass_through(provider):
    [err] = events_of(provider, {"type": "error", "code": "INTERNAL", "message": "oops"})
    assert (err["title"], err["message"], err["severity"]) == ("INTERNAL", "oops", "error")
    [raw] = events_of(provider, {"type": "leaderboard_update", "channel": "x", "data": {"a": 1}})
    assert (raw["kind"], raw["name"], raw["data"]) == (
        "raw", "leaderboard_update", {"type": "leaderboard_update", "channel": "x", "data": {"a": 1}},
    )  # fmt: skip


def test_other_users_get_an_alias_or_a_hash_never_their_id():
    settings = AxisorSettings(token_file="/run/axisor.jwt", aliases={"user_456": "bob"})
    p = AxisorProvider("ax", settings)
    p.control(DOC_HELLO)
    frame = seed("position_status_update")
    bob = {**frame, "data": {**frame["data"], "userId": "user_456"}}
    carol = {**frame, "data": {**frame["data"], "userId": "user_789"}}
    assert events_of(p, frame)[0]["account"] == "main"
    assert events_of(p, bob)[0]["account"] == "bob"
    [hashed] = events_of(p, carol)
    assert hashed["account"].startswith("user-")
    assert "789" not in hashed["account"]


def test_settings():
    sim = AxisorSimulator()
    ok = AxisorSettings(token=sim.mint(), symbols=["BTC_USD", "ETH_USD"], rooms=["positions"])
    assert ok.subscriptions == ["market:BTC_USD", "market:ETH_USD", "positions"]
    with pytest.raises(ValidationError, match="token expired at"):
        AxisorSettings(token=sim.mint(expires_in=-60))
    with pytest.raises(ValidationError, match="not a JWT"):
        AxisorSettings(token="opaque")
    with pytest.raises(ValidationError, match="without 'market:'"):
        AxisorSettings(token_file="/t", symbols=["market:BTC_USD"])
    with pytest.raises(ValidationError, match="may appear once"):
        AxisorSettings(token_file="/t", symbols=["BTC_USD"], rooms=["market:BTC_USD"])
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        AxisorSettings(token_file="/t", max_messages=101)
    with pytest.raises(ValidationError, match="wss://"):
        AxisorSettings(token_file="/t", url="https://api.axisor.com/ws")


def test_check_reports_an_expired_token(tmp_path):
    expired = AxisorSimulator().mint(expires_in=-60)
    config = tmp_path / "c.toml"
    config.write_text(f'[[providers]]\ntype = "axisor"\nname = "axisor"\ntoken = "{expired}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "providers[0]" in result.stderr
    assert "the token expired at" in result.stderr
    assert expired not in result.stderr + result.stdout  # never the secret itself
