"""Fuzzed parsers (hypothesis): every plugin's ``parse`` as the core runs it, and MQTT requests.

Generated frames (any JSON, huge numbers, deep nesting, invalid UTF-8, very large frames) and
mutations of recorded ones (a field's value replaced, a field removed). Properties: nothing
escapes the core's delivery, everything published is a valid event of its model, a known event
never comes out half empty, and each kind of rejection is counted and logged once.

Budgets: the ``ci`` profile (conftest.py) is small and derandomized; ``HYPOTHESIS_PROFILE=long``
searches longer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fin2mqtt_example import ExampleProvider, ExampleSettings
from fin2mqtt_hibachi import HibachiProvider, HibachiSettings
from fin2mqtt_hibachi.simulator import SEED_EVENTS
from fin2mqtt_ibex import IbexProvider, IbexSettings
from fin2mqtt_ibex.simulator import IbexSimulator
from fin2mqtt_vezta import VeztaProvider, VeztaSettings
from hypothesis import given
from hypothesis import strategies as st

from bridge.api import OrderEvent, Provider, TradeEvent
from bridge.model.events import Event
from bridge.mqtt.bridge_requests import RequestHandler
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.context import InstanceContext
from bridge.pipeline.hub import Hub, payload_of
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.retained_state import RetainedState
from bridge.pipeline.seen_ids import SeenIds

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.decimals()  # NaN and infinities too: Decimal is how the links decode floats
    | st.text(max_size=30)
    | st.sampled_from(["", "0", "-1", "1e30", "NaN", "Long", "BID", "0x" + "ab" * 20, "2026-01-01"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)  # fmt: skip


def deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"data": value}
    return value


def mutations(recorded: list[Any]) -> st.SearchStrategy[Any]:
    """A recorded frame with one field (at any depth) replaced by any value, or removed."""

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        frame = json.loads(json.dumps(draw(st.sampled_from(recorded)), default=str))
        paths: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key in node:
                    paths.append((node, key))
                    walk(node[key])
            elif isinstance(node, list):
                for index in range(len(node)):
                    paths.append((node, index))
                    walk(node[index])

        walk(frame)
        for _ in range(draw(st.integers(1, 3))):
            if not paths:
                break
            parent, key = draw(st.sampled_from(paths))
            if isinstance(parent, dict) and draw(st.booleans()):
                parent.pop(key, None)
            else:
                with contextlib.suppress(IndexError, KeyError):
                    parent[key] = draw(json_values)
        return frame

    return mutate()


def frames(recorded: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        mutations(recorded),
        json_values,
        st.binary(max_size=64),  # invalid UTF-8, binary frames
        st.builds(lambda n: {"event": "order_update", "data": {"blob": "x" * n}},
                  st.integers(70_000, 300_000)),  # very large frames
        st.integers(50, 400).map(deep),  # deep nesting
    )  # fmt: skip


class Recorded:
    """The frames each plugin's tests and simulators use."""

    hibachi: ClassVar[list[Any]] = [
        *json.loads(SEED_EVENTS.read_text()),
        json.loads((ROOT / "plugins/hibachi/tests/snapshot_frame.json").read_text()),
    ]
    example = json.loads((ROOT / "plugins/example/tests/frames.json").read_text())
    ibex = IbexSimulator().burst()
    vezta: ClassVar[list[Any]] = [
        {"event": "data", "data": {"channel": "market:prices", "data": {
            "marketId": "m-1", "slug": "btc", "yesPrice": "0.53", "noPrice": "0.47",
            "updatedAt": "2026-01-01T00:00:00Z"}}},
        {"event": "data", "data": {"channel": "user:orders", "data": {
            "orderId": "o-1", "marketId": "m-1", "side": "buy", "type": "limit",
            "status": "OPEN", "price": "0.5", "quantity": "10", "filledQuantity": "0",
            "updatedAt": "2026-01-01T00:00:00Z"}}},
        {"event": "data", "data": {"channel": "user:portfolio", "data": {
            "totalValue": "10", "positions": [{"marketId": "m-1", "side": "yes", "shares": "3",
                                                "entryPrice": "0.4", "currentPrice": "0.5"}],
            "updatedAt": "2026-01-01T00:00:00Z"}}},
        {"event": "data", "data": {"channel": "market:orderbook", "data": {
            "marketId": "m-1", "bids": [{"price": "0.5", "size": "1"}], "asks": [[0.6, 2]]}}},
        {"event": "data", "data": {"channel": "monitor:signals", "data": {
            "id": "s1", "type": "whale_trade", "severity": "high", "headline": "h"}}},
    ]  # fmt: skip


def providers() -> dict[str, tuple[Provider[Any], str | None, list[Any]]]:
    return {
        "hibachi": (
            HibachiProvider("hib", HibachiSettings(api_key="k", accounts=[{"id": 128, "alias": "main"}])),
            "main",
            Recorded.hibachi,
        ),
        "example": (ExampleProvider("ex", ExampleSettings(api_key="k")), None, Recorded.example),
        "ibex": (IbexProvider("ibex", IbexSettings(token_file="/nonexistent")), None, Recorded.ibex),
        "vezta": (VeztaProvider("vz", VeztaSettings(token="t")), "main", Recorded.vezta),
    }  # fmt: skip


def make_context(provider: Provider[Any]) -> tuple[InstanceContext, Outbox]:
    outbox = Outbox(100_000, max_bytes=2**30, retained=RetainedState(), seen=SeenIds(100_000))
    hub = Hub(TopicMap("f"), outbox, None, 1, max_payload=65_536)
    return InstanceContext(provider, hub, clock=lambda: NOW), outbox


def check_published(outbox: Outbox) -> None:
    """Every payload is a valid event of its kind (and within the size limit)."""
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(Event)
    for message in [*outbox._events]:
        assert len(message.payload) <= 65_536
        event = adapter.validate_json(message.payload)
        if isinstance(event, TradeEvent) and event.status == "filled":
            assert event.quantity is not None, message.payload
        if isinstance(event, OrderEvent):
            assert event.order_id != "unknown", message.payload
        if event.source_time is not None:
            assert event.source_time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert payload_of(event)


@pytest.mark.parametrize("name", ["hibachi", "example", "ibex", "vezta"])
def test_no_frame_breaks_delivery_and_nothing_invalid_is_published(name: str):
    provider, account, recorded = providers()[name]

    @given(frame=frames(recorded))
    def check(frame: Any) -> None:
        ctx, outbox = make_context(provider)
        ctx.deliver(frame, account=account)  # must never raise
        check_published(outbox)

    check()


def test_each_kind_of_parse_failure_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture):
    provider, account, _ = providers()["example"]
    ctx, outbox = make_context(provider)
    bad_fills = [{"type": "fill", "fill_id": n, "order_id": 1} for n in range(5)]  # no symbol
    bad_prices = [{"type": "price", "ts": n} for n in range(3)]
    with caplog.at_level(logging.WARNING, logger="fin2mqtt.provider.ex"):
        for frame in [*bad_fills, *bad_prices]:
            ctx.deliver(frame, account=account)
    assert ctx.parse_errors == 8
    warnings = [r for r in caplog.records if "could not parse" in r.getMessage()]
    assert len(warnings) == 2  # one per kind: (KeyError, fill) and (KeyError, price)
    raws = [json.loads(m.payload) for m in outbox._events]
    assert [r["name"] for r in raws] == ["unparsed"] * 8


@given(payload=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v, default=str).encode()),
       op=st.sampled_from(["info", "stats", "nope", ""]))  # fmt: skip
def test_any_mqtt_request_gets_an_answer(payload: bytes, op: str):
    outbox = Outbox(1000, retained=RetainedState(), seen=SeenIds(1000))
    handler = RequestHandler(TopicMap("f"), outbox, {"info": lambda r: {"ok": True},
                                                      "stats": lambda r: r})  # fmt: skip
    handler.handle(op, payload)
    [answer] = [json.loads(m.payload) for m in outbox._events]
    assert answer["status"] in ("ok", "error")
    assert set(answer) == {"schema", "status", "data", "error", "transaction"}


def test_recorded_frames_still_parse_to_normalized_events():
    """The fuzzing's seeds are valid: mutations start from frames that parse."""
    for name, (provider, account, recorded) in providers().items():
        ctx, outbox = make_context(provider)
        for frame in recorded:
            ctx.deliver(frame, account=account)
        assert ctx.parse_errors == 0, name
        kinds = {json.loads(m.payload)["kind"] for m in outbox._events}
        assert kinds - {"raw"} or name != "hibachi", kinds
