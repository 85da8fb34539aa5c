"""Hibachi: the seed's example frames → normalized events (snapshot tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fin2mqtt_hibachi import HibachiProvider, HibachiSettings
from fin2mqtt_hibachi.simulator import SEED_EVENTS

from bridge.testing.parsing import parse_frames

FRAMES = {
    "snapshot": json.loads((Path(__file__).parent / "snapshot_frame.json").read_text()),
    "events": json.loads(SEED_EVENTS.read_text()),
}
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def provider() -> HibachiProvider:
    settings = HibachiSettings(api_key="k", accounts=[{"id": 128, "alias": "main"}])
    return HibachiProvider("hib", settings)


def events_of(provider, frame):
    return [
        e.model_dump(mode="json", by_alias=True, exclude={"received_at", "schema_"})
        for e in parse_frames(provider, [frame], NOW)
    ]


def by_name(name: str, n: int = 0) -> dict:
    return [f for f in FRAMES["events"] if f.get("event") == name][n]


def test_snapshot_replaces_balance_and_positions(provider):
    [snap] = events_of(provider, FRAMES["snapshot"])
    assert snap["kind"] == "snapshot"
    assert snap["covers"] == ["balance", "position"]
    balance, position = snap["items"]
    assert (balance["kind"], balance["asset"], balance["total"], balance["account"]) == (
        "balance",
        "USDT",
        "910.997790",
        "main",
    )
    assert position["symbol"] == "ETH/USDT-P"
    assert position["direction"] == "long"
    assert position["quantity"] == "0.002552700"
    assert position["entry_price"] == "3918.661809"
    assert position["mark_price"] == "3917.478177"
    assert position["notional"] == "10.000146"
    assert position["unrealized_pnl"] == "-0.003021"
    assert position["details"] == {
        "entryNotional": "10.003168",
        "unrealizedFundingPnl": "0.000000",
        "unrealizedTradingPnl": "-0.003021",
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "order_creation",
            {
                "kind": "order",
                "status": "created",
                "order_id": "578745035695106058",
                "side": "buy",
                "price": "69762.24077",
                "quantity": "0.1288935088",
                "symbol": "BTC/USDT-P",
                "source_time": "2024-04-10T20:30:49Z",
            },
        ),
        ("order_update", {"kind": "order", "status": "updated", "filled_quantity": "0.096987527"}),
        (
            "order_cancellation",
            {
                "kind": "order",
                "status": "cancelled",
                "order_id": "578745034376521742",
                "side": "sell",
            },
        ),
        (
            "order_matched",
            {
                "kind": "order",
                "status": "matched",
                "order_id": "1234",
                "filled_quantity": "1234",
                "remaining_quantity": "1234",
                "order_type": "LIMIT",
            },
        ),
        (
            "order_not_fully_matched",
            {
                "kind": "order",
                "status": "partially_matched",
                "account": "2",
                "order_id": "3",
                "filled_quantity": "0.000000004",
                "remaining_quantity": "0.000000005",
            },
        ),
        ("order_request_rejected", {"kind": "order", "status": "rejected", "order_id": "1234"}),
        (
            "trade_update",
            {
                "kind": "trade",
                "status": "filled",
                "order_id": "582871374158365696",
                "price": "2345.000000",
                "quantity": "0.000421590",
                "realized_pnl": "0.022107",
                "side": "buy",
            },
        ),
        (
            "trade_rejected",
            {"kind": "trade", "status": "rejected", "order_id": "1234", "quantity": "1234"},
        ),
        (
            "funding_settlement",
            {
                "kind": "transaction",
                "type": "funding",
                "amount": "0.8618780736305764",
                "asset": "USDT",
                "status": "settled",
            },
        ),
        (
            "account_created",
            {
                "kind": "notification",
                "category": "account_created",
                "message": "ledger account 123",
            },
        ),
        (
            "deposit_status_update",
            {
                "kind": "transaction",
                "type": "deposit",
                "amount": "1234",
                "tx_hash": "0xabcdef",
                "direction": "in",
                "status": "processing/accepted/rejected/succeeded",
            },
        ),
        (
            "withdraw_status_update",
            {"kind": "transaction", "type": "withdrawal", "amount": "1234", "direction": "out"},
        ),
        (
            "withdraw_rejection",
            {"kind": "transaction", "type": "withdrawal", "status": "rejected", "amount": "1234"},
        ),
        (
            "transfer_status_update",
            {
                "kind": "transaction",
                "type": "transfer",
                "amount": "1234",
                "account": "main",
                "direction": None,
            },
        ),
    ],
)
def test_every_documented_event(provider, name, expected):
    [event] = events_of(provider, by_name(name))
    assert {k: event[k] for k in expected} == expected
    assert event["provider"] == "hib"
    assert event.get("account") == expected.get("account", "main")


def test_balance_update_in_all_three_shapes(provider):
    deposit, withdrawal, collateral = (
        events_of(provider, by_name("balance_update", n))[0] for n in range(3)
    )
    assert (deposit["kind"], deposit["type"], deposit["direction"], deposit["amount"]) == (
        "transaction",
        "deposit",
        "in",
        "123.000000",
    )
    assert (withdrawal["type"], withdrawal["direction"], withdrawal["amount"]) == (
        "withdrawal",
        "out",
        "123.000000",
    )
    assert (collateral["kind"], collateral["asset"], collateral["total"]) == (
        "balance",
        "USDT",
        "1234.000000",
    )


def test_positions_long_and_closed(provider):
    closed, long = (events_of(provider, by_name("position_update", n))[0] for n in range(2))
    assert (closed["kind"], closed["symbol"], closed["direction"], closed["quantity"]) == (
        "position",
        "BTC/USDT-P",
        "closed",
        "0.000000",
    )
    assert (long["symbol"], long["direction"], long["quantity"], long["notional"]) == (
        "HFT/USDT-P",
        "long",
        "28179.202190",
        None,  # the update does not say the current notional: the retained one is kept
    )
    assert long["details"]["entry_notional"] == "11926.363515"


def test_topic_field_and_upper_case_names_are_accepted(provider):
    frame = dict(by_name("order_creation"))
    del frame["event"]
    frame["topic"] = "ORDER_CREATED"
    [event] = events_of(provider, frame)
    assert (event["kind"], event["status"]) == ("order", "created")


def test_unknown_events_pass_through_raw(provider):
    [event] = events_of(
        provider, {"event": "margin_call", "account": "128", "data": {"level": "0.5", "id": 2**60}}
    )
    assert event["kind"] == "raw"
    assert event["name"] == "margin_call"
    assert event["data"] == {"level": "0.5", "id": 2**60}


def test_large_ids_stay_exact_and_ids_are_stable(provider):
    frame = by_name("order_creation")
    first = parse_frames(provider, [frame], NOW)[0]
    again = parse_frames(provider, [frame], datetime(2027, 1, 1, tzinfo=UTC))[0]
    assert first.order_id == "578745035695106058"
    assert first.id == again.id  # same fact, same id, whenever it arrives


def test_timestampless_events_arriving_twice_are_two_facts(provider):
    frame = by_name("balance_update", 0)
    a = parse_frames(provider, [frame], NOW)[0]
    b = parse_frames(provider, [frame], datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC))[0]
    assert a.id != b.id  # two deposits of 123: both published


async def test_stream_expired_ends_the_connection(provider):
    from bridge.api import TransportFailure

    await provider.on_connect(Conn("123"))  # the seed's stream_expired names key "123"
    with pytest.raises(TransportFailure, match="listen key expired"):
        provider.control(by_name("stream_expired"))
    provider.control(by_name("order_creation"))  # anything else passes


def on_connection(provider, frames, account="main", at=NOW):
    return parse_frames(provider, frames, at, account=account)


def test_known_event_without_data_is_raw_not_a_phantom_fill(provider):
    [event] = on_connection(provider, [{"event": "trade_update", "account": "128"}])
    assert (event.kind, event.name, event.account) == ("raw", "trade_update", "main")
    assert event.error == "no data object"


@pytest.mark.parametrize(
    "data",
    [
        {"orderId": 1, "symbol": "ETH/USDT-P"},  # no price, no quantity
        {"symbol": "ETH/USDT-P", "price": "abc", "quantity": "1"},
        {"symbol": "ETH/USDT-P", "price": None, "quantity": "1"},
    ],
)
def test_trade_with_a_malformed_body_is_raw(provider, data):
    [event] = on_connection(provider, [{"event": "trade_update", "account": "128", "data": data}])
    assert event.kind == "raw"
    assert event.error


def test_two_equal_fills_in_the_same_second_are_two_events(provider):
    """Equal bodies are told apart by their arrival, to the microsecond; the same arrival
    gives the same id."""
    fill = by_name("trade_update")
    first = on_connection(provider, [fill], at=NOW)[0]
    second = on_connection(provider, [fill], at=NOW.replace(microsecond=350))[0]
    assert first.kind == second.kind == "trade"
    assert first.id != second.id
    assert on_connection(provider, [fill], at=NOW)[0].id == first.id
    later = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)  # µs still distinct in a float
    ids = {on_connection(provider, [fill], at=later.replace(microsecond=us))[0].id
           for us in range(0, 1_000_000, 997)}  # fmt: skip
    assert len(ids) == len(range(0, 1_000_000, 997))


def test_events_stay_under_the_connections_account(provider):
    frame = by_name("order_not_fully_matched")  # the seed's "account": 2
    [event] = on_connection(provider, [frame])
    assert event.account == "main"
    assert event.details["upstream_account"] == "2"
    [own] = on_connection(provider, [by_name("order_creation")])
    assert "upstream_account" not in own.details


def test_a_null_in_the_snapshot_costs_that_position_only(provider):
    frame = json.loads(json.dumps(FRAMES["snapshot"]))
    positions = frame["result"]["accountSnapshot"]["positions"]
    good = len([p for p in positions if p["direction"] in ("Long", "Short")])
    positions.append({**positions[0], "symbol": "BAD/USDT-P", "quantity": None})
    snap, bad = on_connection(provider, [frame])
    assert snap.kind == "snapshot"
    assert [i.kind for i in snap.items].count("position") == good
    assert "balance" in [i.kind for i in snap.items]
    assert (bad.kind, bad.name, bad.account) == ("raw", "accountSnapshot.position", "main")
    assert bad.data["symbol"] == "BAD/USDT-P"


def test_epoch_timestamps_as_text_or_decimal_give_utc_source_time(provider):
    for stamp in ("1712781049", Decimal("1712781049"), 1712781049000):
        frame = {**by_name("order_creation"), "data": {**by_name("order_creation")["data"]}}
        frame["data"]["timestamp"] = stamp
        [event] = on_connection(provider, [frame])
        assert event.source_time == datetime(2024, 4, 10, 20, 30, 49, tzinfo=UTC), stamp


class Conn:
    """What ``on_connect`` sees of a connection whose ``stream.start`` gives ``key``."""

    account = "main"

    def __init__(self, key):
        self.key, self.data = key, {}

    async def request(self, message, **_):
        return {"id": 1, "status": 200, "result": {"listenKey": self.key, "accountSnapshot": {}}}


async def test_stream_expired_for_another_listen_key_is_ignored(provider):
    await provider.on_connect(Conn("ours-1"))
    foreign = {"event": "stream_expired", "account": "128", "params": {"listenKey": "theirs"}}
    provider.control(foreign)  # another session's key: the healthy stream stays
    from bridge.api import TransportFailure

    with pytest.raises(TransportFailure):
        provider.control({**foreign, "params": {"listenKey": "ours-1"}})
