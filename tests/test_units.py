"""Pure parts: events, topics, outbox policy, backoff, dedup store."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from bridge.links.backoff import Backoff
from bridge.links.websocket import decode
from bridge.model.events import BalanceEvent, OrderEvent, PositionEvent, TransactionEvent
from bridge.mqtt.topics import TopicMap, slug
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.seen_ids import GENERATIONS, SeenIds

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_money_is_a_decimal_string_and_ids_stay_exact():
    order = OrderEvent(
        provider="p",
        account="a",
        id=578745035695106058,
        received_at=NOW,
        order_id=578745035695106058,
        status="created",
        price="69762.24077",
        quantity=Decimal("0.1288935088"),
    )
    assert order.order_id == "578745035695106058"
    assert order.price == Decimal("69762.24077")
    data = order.model_dump_json(by_alias=True)
    assert '"order_id":"578745035695106058"' in data
    assert '"price":"69762.24077"' in data
    assert '"quantity":"0.1288935088"' in data
    assert '"schema":1' in data
    assert '"received_at":"2026-01-02T03:04:05Z"' in data


def test_small_amounts_never_turn_into_exponent_notation():
    balance = BalanceEvent(provider="p", id="b", received_at=NOW, asset="BTC", total="0.00000001")
    assert '"total":"0.00000001"' in balance.model_dump_json()


def test_float_ids_are_refused_and_float_amounts_keep_their_digits():
    with pytest.raises(ValidationError, match="never a float"):
        OrderEvent(provider="p", id=1.5, received_at=NOW, order_id="1", status="x")
    tx = TransactionEvent(provider="p", id="t", received_at=NOW, type="deposit", amount=0.1)
    assert tx.amount == Decimal("0.1")


def test_events_are_frozen_and_strict():
    tx = TransactionEvent(provider="p", id="t", received_at=NOW, type="deposit")
    with pytest.raises(ValidationError):
        tx.type = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        TransactionEvent(provider="p", id="t", received_at=NOW, type="deposit", colour="red")


def test_topics():
    topics = TopicMap("home/fin")
    pos = PositionEvent(
        provider="hib",
        account="Main",
        id="x",
        received_at=NOW,
        symbol="ETH/USDT-P",
        direction="long",
        quantity="1",
    )
    assert topics.for_event(pos) == "home/fin/hib/main/position/eth-usdt-p"
    tx = TransactionEvent(provider="hib", id="t", received_at=NOW, type="deposit")
    assert topics.for_event(tx) == "home/fin/hib/transaction"
    assert topics.request_op("home/fin/bridge/request/stats") == "stats"
    assert topics.request_op("home/fin/other") is None
    assert slug("  EURe ") == "eure"
    assert slug("###") == "_"


async def test_outbox_coalesces_state_and_interleaves_it_with_events():
    outbox = Outbox(capacity=100)
    outbox.put_event("e", b"1", 1)
    outbox.put_event("e", b"2", 1)
    outbox.set_state("s", b"old")
    outbox.set_state("s", b"new")
    sent = [await outbox.get() for _ in range(3)]
    assert [(m.topic, m.payload, m.qos, m.retain) for m in sent] == [
        ("e", b"1", 1, False),
        ("s", b"new", 1, True),
        ("e", b"2", 1, False),
    ]
    for msg in sent:
        outbox.done(msg)
    assert await outbox.wait_idle(0.1)


async def test_outbox_sends_state_first_after_a_reconnect():
    outbox = Outbox(capacity=100)
    outbox.set_state("s1", b"a")
    outbox.set_state("s2", b"b")
    for msg in [await outbox.get(), await outbox.get()]:
        outbox.done(msg)
    outbox.put_event("e", b"1", 1)
    outbox.republish_state()
    order = [(await outbox.get()).topic for _ in range(3)]
    assert order == ["s1", "s2", "e"]


async def test_outbox_retry_puts_events_back_in_front_and_state_back():
    outbox = Outbox(capacity=100)
    for n in range(3):
        outbox.put_event("e", str(n).encode(), 1)
    outbox.set_state("s", b"x")
    e0 = await outbox.get()
    s = await outbox.get()
    assert (e0.payload, s.payload) == (b"0", b"x")  # interleaved
    outbox.retry(s)
    outbox.retry(e0)
    assert not await outbox.wait_idle(0.01)
    order = [(await outbox.get()).payload for _ in range(4)]
    assert order == [b"0", b"x", b"1", b"2"]


async def test_outbox_drops_the_oldest_events_when_full_and_says_so(caplog):
    outbox = Outbox(capacity=100)
    with caplog.at_level(logging.WARNING, "bridge.pipeline.outbox"):
        for n in range(150):
            outbox.put_event("e", str(n).encode(), 1)
    assert outbox.dropped == 50
    assert outbox.pending_events == 100
    assert (await outbox.get()).payload == b"50"
    assert caplog.records[0].levelno == logging.ERROR
    assert caplog.messages[0] == (
        "outbox full (100 events, 67108864 bytes at most): dropped 1 oldest event(s), "
        "1 in total; their ids are forgotten, so an upstream replay delivers them"
    )
    assert len(caplog.messages) == 1  # one line, not one per drop


async def test_outbox_forgets_a_cleared_topic_once_delivered():
    outbox = Outbox(capacity=100)
    outbox.set_state("s", b"x")
    outbox.done(await outbox.get())
    outbox.set_state("s", b"")
    outbox.done(await outbox.get())
    assert len(outbox.retained) == 0
    outbox.republish_state()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(outbox.get(), 0.05)


def test_backoff_grows_is_capped_and_resets():
    backoff = Backoff(0.1, 1.0, uniform=lambda a, b: 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1
    jittered = Backoff(1.0, 10.0)
    delays = [jittered.next() for _ in range(50)]
    assert all(d <= 10.0 for d in delays)
    assert 0.85 <= delays[0] <= 1.15


async def test_snapshot_replaces_the_retained_state_it_covers():
    from bridge.model.events import SnapshotEvent
    from bridge.pipeline.hub import Hub

    outbox = Outbox(capacity=100)
    hub = Hub(TopicMap("b"), outbox, None, 1)

    def pos(symbol: str) -> PositionEvent:
        return PositionEvent(
            provider="h", account="a", id=symbol, received_at=NOW, symbol=symbol,
            direction="long", quantity="1",
        )  # fmt: skip

    bal = BalanceEvent(provider="h", account="a", id="b", received_at=NOW, asset="USDT", total="5")
    other = PositionEvent(
        provider="h",
        account="z",
        id="z",
        received_at=NOW,
        symbol="BTC",
        direction="short",
        quantity="2",
    )
    hub.submit([pos("BTC"), pos("ETH"), bal, other])
    snap = SnapshotEvent(
        provider="h",
        account="a",
        id="s",
        received_at=NOW,
        covers=("position",),
        items=(pos("SOL"), pos("ETH")),
    )
    hub.submit([snap])
    assert outbox.state("b/h/a/position/btc") is None  # gone from the snapshot: cleared
    assert outbox.state("b/h/a/position/eth") not in (None, b"")
    assert outbox.state("b/h/a/position/sol") not in (None, b"")
    assert outbox.state("b/h/a/balance/usdt") not in (None, b"")  # not covered: untouched
    assert outbox.state("b/h/z/position/btc") not in (None, b"")  # another account: untouched
    assert not outbox.retained.topics(("b/h/a/snapshot",))


def test_seen_ids_keep_the_newest_capacity_and_at_most_a_generation_more():
    """After every commit: the last ``capacity`` commits are known, and nothing older than
    ``capacity`` plus one generation (``capacity / GENERATIONS``) is."""
    capacity = 120
    extra = capacity // GENERATIONS
    seen = SeenIds(capacity)
    for n in range(1000):
        seen.commit(f"k{n}")
        newest = range(max(0, n + 1 - capacity), n + 1)
        assert all(f"k{i}" in seen for i in newest), n
        assert not any(f"k{i}" in seen for i in range(0, n + 1 - capacity - extra)), n
        assert min(n + 1, capacity) <= len(seen) <= capacity + extra
    assert seen.take_unsaved() == []  # not persistent: nothing for the journal


def test_seen_ids_remember_a_repeat_from_its_last_commit():
    capacity = 120
    seen = SeenIds(capacity)
    for n in range(200):
        seen.commit(f"k{n}")
    seen.commit("k100")  # acknowledged again: remembered from now
    for n in range(200, 200 + capacity - 1):
        seen.commit(f"k{n}")
    assert "k100" in seen  # its first commit is older than the window, its second is not
    assert "k101" not in seen
    for n in range(200 + capacity - 1, 200 + capacity + capacity // GENERATIONS):
        seen.commit(f"k{n}")
    assert "k100" not in seen


def test_seen_ids_load_a_journal_with_repeats_and_save_only_new_commits():
    seen = SeenIds(3)
    seen.load(["a", "b", "a", "c", "d"])  # "a" committed twice by an earlier run
    assert [k in seen for k in "abcd"] == [True, False, True, True]
    seen.persistent = True
    seen.commit("e")
    assert seen.take_unsaved() == ["e"]
    assert [k in seen for k in "acde"] == [False, True, True, True]
    seen = SeenIds(2 * GENERATIONS)  # generations of two keys
    seen.load(["a", "b", "c", "d"])  # {a, b} {c, d} {}
    seen.persistent = True
    seen.commit("e")  # {a, b} {c, d} {e}
    seen.commit("e")  # in the newest generation already: nothing new for the journal
    seen.commit("c")  # known from an older generation: saved again, its newest place
    assert seen.take_unsaved() == ["e", "c"]


def test_details_take_json_data_only_and_keep_a_copy():
    nested = {"a": [1, 2.5, "x", None, True, {"b": "c"}]}
    event = TransactionEvent(provider="p", id="1", received_at=datetime.now(UTC), type="deposit",
                             details=nested)  # fmt: skip
    assert event.details == nested
    nested["a"].append("later")  # the plugin's own dict changing afterwards
    assert event.details["a"][-1] == {"b": "c"}
    with pytest.raises(ValidationError, match=r"details\.amount"):
        TransactionEvent(provider="p", id="1", received_at=datetime.now(UTC), type="deposit",
                         details={"amount": Decimal("1")})  # fmt: skip
    with pytest.raises(
        ValidationError, match=r"details\.a\.list\.1\n  input was not a valid JSON value"
    ):
        TransactionEvent(provider="p", id="1", received_at=datetime.now(UTC), type="deposit",
                         details={"a": [1, (2, 3)]})  # fmt: skip
    with pytest.raises(ValidationError, match=r"details\.1\.\[key\]"):
        TransactionEvent(provider="p", id="1", received_at=datetime.now(UTC), type="deposit",
                         details={1: "x"})  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"price": 0.1, "id": 12345678901234567890}',
            {"price": Decimal("0.1"), "id": 12345678901234567890},
        ),
        (' {"a": 1}\n', {"a": 1}),  # padded with whitespace: still JSON
        ('{"a": 1} trailing', '{"a": 1} trailing'),  # not JSON as a whole: as it came
        ("pong", "pong"),
        ("", ""),
    ],
)
def test_websocket_text_frames_decode_as_json_with_exact_numbers_or_stay_text(
    text: str, expected: object
) -> None:
    assert decode(text) == expected
