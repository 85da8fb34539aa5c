"""Recorded Vezta frames → events, for every channel and every variant PROTOCOLS.md §4 lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fin2mqtt_vezta import VeztaProvider, answers, refusal
from fin2mqtt_vezta.settings import VeztaSettings
from pydantic import ValidationError

from bridge.api import AuthFailure
from bridge.testing.parsing import parse_frames

FRAMES = json.loads((Path(__file__).parent / "frames.json").read_text(), parse_float=Decimal)
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def provider(**settings) -> VeztaProvider:
    return VeztaProvider("vz", VeztaSettings(token="jwt", **settings))


def parse(frames=FRAMES, account: str | None = "main", **settings) -> list[dict]:
    events = parse_frames(provider(**settings), frames, NOW, account)
    return [e.model_dump(mode="json", by_alias=True) for e in events]


def frame(channel: str, data) -> dict:
    return {"event": "data", "data": {"channel": channel, "data": data}}


def by_kind(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["kind"] == kind]


def test_every_channel_and_variant_becomes_the_right_events():
    events = parse()
    summary = [
        (e["kind"], e.get("market") or e.get("symbol") or e.get("category") or e.get("name"))
        for e in events
    ]
    assert summary == [
        ("market_price", "m-101"),
        ("market_price", "m-102"),  # a batch of two, numbers as JSON numbers
        ("market_price", "m-103"),
        ("order_book", "m-101"),
        ("order_book", "m-102"),  # emitted under the channel's own name, levels as pairs
        ("trade", "m-101"),
        ("trade", "m-102"),  # an envelope nested once more
        ("notification", "whale_trade"),
        ("order", "m-101"),
        ("account_status", None),
        ("order", "m-101"),
        ("account_status", None),
        ("order", "m-101"),
        ("account_status", None),
        ("notification", "order_filled"),
        ("snapshot", None),
        ("notification", "copy_trade"),
        ("notification", "copy_trade"),
        ("raw", "error"),  # an error that is no refusal of the token is passed on
        ("raw", "market:candles"),  # a channel the document does not name
    ]
    # subscribed / unsubscribed and the two refusals (on the link topic) publish nothing


def test_prices_keep_money_exact_and_times_in_utc():
    prices = by_kind(parse(), "market_price")
    first = prices[0]
    assert (first["account"], first["price"], first["bid"], first["ask"]) == (
        None,
        "0.530000",
        None,
        None,
    )
    assert first["details"] == {
        "market_id": "m-101",
        "slug": "btc-above-100k-2026",
        "source": "polymarket",
        "yes_price": "0.530000",
        "no_price": "0.470000",
        "volume_24h": "125000.000000",
        "change_5m": "0.010000",
        "change_1h": "-0.020000",
        "change_24h": "0.050000",
    }
    assert first["source_time"] == "2026-03-01T12:00:00Z"
    assert (prices[1]["price"], prices[1]["details"]["no_price"]) == ("0.31", "0.69")
    assert prices[1]["source_time"] == "2026-03-01T12:00:00Z"  # epoch milliseconds
    assert prices[2]["source_time"] == "2026-03-01T12:00:00Z"  # +01:00 offset


def test_order_books_keep_the_top_of_the_book_and_the_spread():
    books = by_kind(parse(), "order_book")
    assert books[0]["bids"] == [{"price": "0.520000", "size": "250.000000"}]  # best, not first
    assert books[0]["asks"] == [{"price": "0.540000", "size": "300.000000"}]
    assert books[0]["details"]["spread"] == "0.020000"
    assert books[1]["details"]["spread"] == "0.030000"  # computed when the frame has none
    deeper = by_kind(parse(orderbook_depth=2), "order_book")[0]
    assert [lv["price"] for lv in deeper["bids"]] == ["0.520000", "0.510000"]


def test_trades_have_stable_ids_and_the_polymarket_extras():
    trades = by_kind(parse(), "trade")
    first, second = trades
    assert (first["id"], first["trade_id"]) == ("trade-t-9007199254740993", "t-9007199254740993")
    assert (first["side"], first["price"], first["quantity"]) == ("buy", "0.530000", "150.000000")
    assert first["details"]["amount"] == "79.500000"
    assert first["details"]["tx_hash"] == "0x01"
    assert (second["side"], second["details"]["outcome"]) == ("sell", "no")
    assert "tx_hash" not in second["details"]
    assert parse() == parse()  # the same frames always give the same ids


def test_orders_are_events_and_the_open_ones_are_retained_state():
    events = parse()
    orders = by_kind(events, "order")
    assert [(o["status"], o["filled_quantity"], o["remaining_quantity"]) for o in orders] == [
        ("created", "0.000000", "100.000000"),
        ("partially_filled", "40.000000", "60.000000"),
        ("filled", "100.000000", "0.000000"),
    ]
    assert orders[1]["details"]["previous_status"] == "OPEN"
    assert orders[1]["details"]["fee"] == "0.208000"
    assert orders[0]["account"] == "main"
    assert len({o["id"] for o in orders}) == 3
    open_orders = by_kind(events, "account_status")
    assert [(s["topic"], s["status"], s["details"]["count"]) for s in open_orders] == [
        ("open_orders", "1", 1),
        ("open_orders", "1", 1),
        ("open_orders", "0", 0),
    ]
    assert open_orders[1]["raw"][0]["status"] == "partially_filled"


def test_an_order_update_that_changes_nothing_open_publishes_only_the_event():
    order = FRAMES[10]["data"]["data"]
    events = parse([frame("user:orders", order), frame("user:orders", order)])
    assert [e["kind"] for e in events] == ["order", "account_status", "order"]


def test_the_portfolio_is_a_snapshot_that_clears_closed_positions():
    (snapshot,) = by_kind(parse(), "snapshot")
    assert snapshot["covers"] == ["balance", "position"]
    value, *positions = snapshot["items"]
    assert (value["kind"], value["asset"], value["total"]) == ("balance", "USD", "1002.000000")
    assert value["details"]["unrealized_pnl"] == "2.000000"
    assert value["details"]["day_pnl"] == "-1.250000"
    assert [(p["symbol"], p["direction"], p["quantity"]) for p in positions] == [
        ("m-101-yes", "long", "100.000000"),
        ("m-102-no", "closed", "0.000000"),
    ]
    assert positions[0]["mark_price"] == "0.540000"
    assert positions[0]["unrealized_pnl"] == "2.000000"
    eur = by_kind(parse(currency="EUR"), "snapshot")[0]["items"][0]
    assert eur["asset"] == "EUR"


def test_notifications_copy_trades_and_signals():
    notes = by_kind(parse(), "notification")
    signal, notification, executed, skipped = notes
    assert (signal["account"], signal["severity"], signal["title"]) == (
        None,
        "warning",
        "Whale buys YES on btc-above-100k-2026",
    )
    assert signal["details"]["amount"] == "50000.000000"
    assert signal["id"] == "signal-s-1"
    assert (notification["id"], notification["account"]) == ("notification-n-1", "main")
    assert notification["details"]["read"] is False
    assert (executed["severity"], executed["title"]) == (
        "info",
        "Copy trade executed: Fed cuts rates in March?",
    )
    assert executed["details"]["total"] == "6.200000"
    assert (skipped["severity"], skipped["message"]) == ("warning", "market closed")
    assert executed["id"] != skipped["id"]


def test_the_market_filter_takes_ids_and_slugs():
    events = parse(markets=["m-101", "fed-cut-march"])
    markets = {e.get("market") or e.get("symbol") for e in events if e["account"] is None}
    assert markets == {"m-101", "m-102", None}  # None: the signal, which no filter limits
    # user data is never filtered
    assert len(by_kind(events, "order")) == 3


def test_a_market_known_by_slug_only_waits_for_its_first_price():
    book = FRAMES[5]  # m-102's order book, before any price of m-102
    price = frame("market:prices", FRAMES[3]["data"]["data"][0])
    events = parse([book, price, book], markets=["fed-cut-march"])
    assert [e["kind"] for e in events] == ["market_price", "order_book"]


def test_aliases_name_markets_in_topics_by_id_or_slug():
    events = parse(aliases={"m-101": "btc", "fed-cut-march": "fed"})
    prices = [e["market"] for e in by_kind(events, "market_price")]
    assert prices == ["btc", "fed", "m-103"]
    assert [b["market"] for b in by_kind(events, "order_book")] == ["btc", "fed"]
    positions = by_kind(events, "snapshot")[0]["items"][1:]
    assert [p["symbol"] for p in positions] == ["btc-yes", "fed-no"]


@pytest.mark.parametrize(
    ("frame_", "expected"),
    [
        ({"event": "error", "data": {"channel": "user:orders", "message": "Unauthorized"}},
         "user:orders: Unauthorized"),
        ({"event": "exception", "data": {"status": "error", "message": "Unauthorized"}},
         "user:portfolio: Unauthorized"),
        ({"event": "error", "data": {"status": 401, "message": "jwt expired"}},
         "user:portfolio: jwt expired"),
    ],
)  # fmt: skip
def test_a_refused_token_ends_the_user_connection_as_auth_failed(frame_, expected):
    vz = provider()
    vz.subscribing["main"] = "user:portfolio"  # a refusal naming no channel is the pending one
    with pytest.raises(AuthFailure, match=f"^{expected}$"):
        vz.control(frame_)


def test_other_frames_pass_control():
    vz = provider()
    for f in FRAMES:
        if refusal(f) is None:
            vz.control(f)
    assert refusal({"event": "error", "data": {"message": "Unknown channel"}}) is None


def test_subscription_answers_are_matched_to_their_channel():
    match = answers("market:prices")
    assert match({"event": "subscribed", "data": {"channel": "market:prices"}})
    assert match({"event": "subscribed", "data": "market:prices"})
    assert match(
        {
            "event": "subscribed",
            "data": {"event": "subscribed", "data": {"channel": "market:prices"}},
        }
    )
    assert not match({"event": "subscribed", "data": {"channel": "market:trades"}})
    assert match({"event": "exception", "data": {"status": "error", "message": "Unauthorized"}})
    assert not match({"event": "error", "data": {"channel": "user:orders", "message": "x"}})
    assert not match({"event": "data", "data": {"channel": "market:prices", "data": {}}})


def test_default_channels_depend_on_the_token():
    assert VeztaSettings(token="t").subscribed == (
        "user:orders",
        "user:notifications",
        "user:portfolio",
        "user:copy-trade",
    )
    assert VeztaSettings().subscribed == ("monitor:signals",)
    chosen = VeztaSettings(channels=["monitor:signals", "market:prices"])
    assert chosen.subscribed == ("market:prices", "monitor:signals")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"channels": ["user:orders"]}, "channels user:orders need a token"),
        ({"channels": []}, "name at least one channel"),
        ({"channels": ["market:candles"]}, "channels.0"),
        ({"token": "a", "token_file": "/x"}, "at most one of token, token_file, token_command"),
        ({"url": "ftp://x/ws"}, "must be a URL such as wss://backend.vezta.io/ws"),
    ],
)
def test_settings_errors_name_the_problem(settings, problem):
    with pytest.raises(ValidationError, match=problem):
        VeztaSettings(**settings)


def test_connections_split_public_and_user_channels():
    both = provider(channels=["market:prices", "user:orders"])
    assert both.channels == {None: ("market:prices",), "main": ("user:orders",)}
    specs = both.connections(None)  # type: ignore[arg-type]
    assert [s.account for s in specs] == [None, "main"]
    assert [s.options.overflow for s in specs] == ["drop_oldest", "reconnect"]
    assert [s.account for s in provider().connections(None)] == ["main"]  # type: ignore[arg-type]
    settings = VeztaSettings(url="wss://backend.vezta.io/ws")
    assert (settings.server, settings.namespace) == ("wss://backend.vezta.io", "/ws")
