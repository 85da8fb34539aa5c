"""What parse gets for free: the event factory, deep JSON, UTC times, Decimals, raw fallbacks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect

from bridge.api import (
    BalanceEvent,
    MarketPriceEvent,
    ParseContext,
    RawEvent,
    Unhandled,
    decimal,
    decimal_or_none,
    to_json,
    utc_time,
)
from bridge.pipeline.context import InstanceContext
from tests.test_ws_link import EchoProvider, EchoSettings, RecordingHub, make_link, until

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def test_the_context_fills_provider_account_and_arrival():
    ctx = ParseContext("ex", "main", NOW)
    balance = ctx.event(BalanceEvent, id="b1", asset="USD", total="1.10")
    assert (balance.provider, balance.account, balance.received_at) == ("ex", "main", NOW)
    assert balance.total == Decimal("1.10")
    price = ctx.event(MarketPriceEvent, id="p1", account=None, market="BTC-USD", price="1")
    assert price.account is None
    assert (
        ctx.for_account("other").event(BalanceEvent, id="b", asset="X", total=1).account == "other"
    )


def test_to_json_goes_all_the_way_down():
    frame = {
        "a": Decimal("0.00000001"),
        "nested": [{"t": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "n": (1, Decimal("2.50"))}],
        "blob": b"\xff\x00",
        "text": b"hi",
        "big": 2**64,
        7: None,
    }
    assert to_json(frame) == {
        "a": "0.00000001",
        "nested": [{"t": "2026-01-02T03:04:05+00:00", "n": [1, "2.50"]}],
        "blob": "base64:/wA=",
        "text": "hi",
        "big": 2**64,
        "7": None,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-10-09T08:53:21Z", datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),
        ("2025-10-09T10:53:21+02:00", datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),
        ("2025-10-09T08:53:21", datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),  # no offset: UTC
        (1760000001, datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),
        (1760000001000, datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),  # milliseconds
        (Decimal("1760000001.5"), datetime(2025, 10, 9, 8, 53, 21, 500000, tzinfo=UTC)),
        ("1760000001", datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC)),
        (
            datetime(2025, 10, 9, 9, 53, 21, tzinfo=timezone(timedelta(hours=1))),
            datetime(2025, 10, 9, 8, 53, 21, tzinfo=UTC),
        ),
        (None, None),
        ("", None),
    ],
)
def test_times_become_aware_utc(value, expected):
    when = utc_time(value)
    assert when == expected
    assert when is None or when.tzinfo == UTC


def test_unreadable_times_and_numbers_are_errors():
    with pytest.raises(ValueError, match="not a time"):
        utc_time("yesterday")
    with pytest.raises(ValueError, match="not a number"):
        decimal("1,5")
    with pytest.raises(ValueError, match="not a finite number"):
        decimal("NaN")
    assert decimal(0.1) == Decimal("0.1")  # a float keeps its shortest digits, not binary noise
    assert decimal_or_none("") is None
    assert decimal_or_none("x") is None
    assert decimal_or_none("12.5") == Decimal("12.5")


class Picky(EchoProvider):
    def parse(self, frame, ctx):
        if frame == {"type": "heartbeat"}:
            return None
        if isinstance(frame, dict) and frame.get("type") == "odd":
            raise Unhandled("no model for odd frames")
        if isinstance(frame, bytes):
            return [ctx.raw("binary", frame)]
        return super().parse(frame, ctx)


def test_a_frame_parse_leaves_unhandled_is_published_raw_without_plugin_code():
    hub = RecordingHub()
    ctx = InstanceContext(Picky("p", EchoSettings()), hub, clock=lambda: NOW)
    ctx.deliver({"type": "heartbeat"}, account="a")
    ctx.deliver({"type": "odd", "n": Decimal("1.5")})
    first, second = hub.events
    assert isinstance(first, RawEvent)
    assert (first.name, first.account, first.data, first.error) == (
        "heartbeat",
        "a",
        {"type": "heartbeat"},
        None,
    )
    assert isinstance(second, RawEvent)
    assert (second.name, second.data, second.error) == (
        "odd",
        {"type": "odd", "n": "1.5"},
        "no model for odd frames",
    )
    assert ctx.parse_errors == 0  # unhandled is not an error


async def test_binary_frames_reach_parse_as_bytes_and_json_ones_decoded(sim):
    link, hub, _ = make_link(sim, Picky("echo", EchoSettings()))
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(link.run())
        await until(lambda: ("connected", None) in hub.links() and sim.subscribers)
        ws = next(iter(sim.subscribers))
        await sim.send_binary(ws, b"\x08\x96\x01")  # e.g. protobuf
        await sim.send_binary(ws, b'{"type": "event", "n": 5}')
        await until(lambda: len(hub.events) >= 4)
        raw = next(e for e in hub.events if isinstance(e, RawEvent))
        assert (raw.name, raw.data) == ("binary", "base64:CJYB")
        assert "5" in hub.ids()
        await link.close()
        await asyncio.wait_for(task, 2)


async def test_broadcast_reaches_only_clients_that_subscribed(sim):
    link, hub, _ = make_link(sim)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(link.run())
        await until(lambda: ("connected", None) in hub.links() and sim.subscribers)
        async with connect(sim.url) as stranger:
            await sim.wait_until(lambda: len(sim.connections) == 2)
            await sim.broadcast([{"type": "event", "n": 9}])
            await until(lambda: "9" in hub.ids())
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(stranger.recv(), 0.2)  # never authenticated: nothing
            await sim.broadcast([{"type": "event", "n": 10}], everyone=True)
            assert await asyncio.wait_for(stranger.recv(), 1) == '{"type": "event", "n": 10}'
        await link.close()
        await asyncio.wait_for(task, 2)


@pytest.fixture
async def sim():
    from tests.test_ws_link import EchoSimulator

    class Subscribing(EchoSimulator):
        async def session(self, ws) -> None:
            if ws.request.headers.get("Authorization", "").startswith("key-"):
                self.subscribe(ws)  # authenticated by its handshake
            await super().session(ws)

    async with Subscribing() as s:
        yield s
