"""Hibachi frames to normalized events: pure functions, tested on the seed's examples.

Frames (``wss://api.hibachi.xyz/ws/account?accountId=…``)::

    {"id": 1, "result": {"accountSnapshot": {"account_id": 128, "balance": "910.997790",
     "positions": [{"direction": "Long", "quantity": "0.002552700", "symbol": "ETH/USDT-P", …}]},
     "listenKey": "128-…"}, "status": 200}
    {"event": "order_creation", "account": "128", "data": {"orderId": 578745035695106058, …}}

Events key on ``event``, else ``topic`` (the SDK's field); the prose's upper-case names
(``ORDER_CREATED`` …) are accepted too. Unknown events pass through as raw events.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from bridge.api import (
    AnyEvent,
    BalanceEvent,
    NotificationEvent,
    OrderEvent,
    PositionEvent,
    RawEvent,
    SnapshotEvent,
    TradeEvent,
    TransactionEvent,
    decimal,
    decimal_or_none,
    stable_id,
    to_json,
    utc_time,
)

COLLATERAL = "USDT"
"""Hibachi accounts hold USDT collateral; balances and cash movements are in it."""

ALIASES = {
    "ORDER_CREATED": "order_creation",
    "ORDER_UPDATED": "order_update",
    "ORDER_CANCELED": "order_cancellation",
    "ORDER_CANCELLED": "order_cancellation",
}


@dataclass(slots=True)
class Frame:
    """What every event shares: who it is for and when it was received (not ``frozen``: one
    is made per frame, and that makes it four times slower to make)."""

    provider: str
    account: str
    raw_account: str
    received_at: datetime
    name: str
    data: dict[str, Any]
    foreign: bool = False
    """The frame names another account than the connection's (kept in ``details``)."""

    def common(self) -> dict[str, Any]:
        """The fields every normalized event of this frame carries."""
        return {"provider": self.provider, "account": self.account, "received_at": self.received_at}

    def source_time(self) -> datetime | None:
        """The frame's own time (epoch seconds or ms, as int, str or Decimal), when it has one."""
        try:
            return utc_time(self.data.get("timestamp"))
        except (ValueError, OverflowError, OSError):
            return None

    def details(self, data: Mapping[str, Any], *used: str) -> dict[str, Any]:
        """``_details`` plus the upstream's account id when it is not the connection's."""
        out = _details(data, *used)
        if self.foreign:
            out["upstream_account"] = self.raw_account
        return out

    def event_id(self, *parts: object) -> str:
        """A stable id: the parts that identify the fact, or its whole content plus arrival time.

        Hibachi sends no event ids; frames without a timestamp (a deposit of 123) are told apart
        by their arrival, since the stream never replays them.
        """
        if parts:
            return stable_id(self.raw_account, self.name, *parts)
        content = json.dumps(self.data, sort_keys=True, default=str)
        return stable_id(self.raw_account, self.name, content, self.arrival())

    def arrival(self) -> int:
        """When the frame arrived, in µs since the epoch: a part of ids that tells equal frames
        apart (a quarter of the cost of ``isoformat``; rounded, so distinct µs stay distinct)."""
        return round(self.received_at.timestamp() * 1_000_000)


def _side(value: Any) -> str | None:
    text = str(value or "").upper()
    if text in ("BID", "BUY", "LONG"):
        return "buy"
    if text in ("ASK", "SELL", "SHORT"):
        return "sell"
    return None


def _status(value: Any) -> str | None:
    return str(value).lower() if value is not None else None


_INEXACT = (Decimal, float)


def _details(data: Mapping[str, Any], *used: str) -> dict[str, Any]:
    """The frame's fields not mapped to a normalized field, JSON-safe (ints stay exact)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in used:
            continue
        out[key] = str(value) if isinstance(value, _INEXACT) else value
    return out


def snapshot(
    provider: str, account: str, reply: dict[str, Any], received_at: datetime
) -> list[AnyEvent]:
    """``stream.start``'s snapshot: the balance and every open position, replacing older ones.

    A bad item (a null quantity, a position that is not an object) costs that item: it is
    published raw with the reason, the rest of the snapshot stands.
    """
    result = reply["result"]
    snap = result["accountSnapshot"]
    if not isinstance(snap, dict):
        raise TypeError("accountSnapshot is not an object")
    raw_account = str(snap.get("account_id"))
    common = {"provider": provider, "account": account, "received_at": received_at}
    key = str(result.get("listenKey", ""))
    items: list[BalanceEvent | PositionEvent] = []
    bad: list[AnyEvent] = []

    def reject(what: str, item: Any, exc: Exception) -> None:
        bad.append(
            RawEvent(
                id=stable_id(raw_account, "snapshot", key, what, repr(item)),
                name=f"accountSnapshot.{what}",
                data=to_json(item),
                error=f"{type(exc).__name__}: {exc}",
                **common,
            )
        )

    covers: tuple[Literal["balance", "position"], ...] = ("balance", "position")
    try:
        items.append(
            BalanceEvent(
                id=stable_id(raw_account, "snapshot", key, "balance"),
                asset=COLLATERAL,
                total=decimal(snap.get("balance")),
                **common,
            )
        )
    except ValueError as exc:
        covers = ("position",)  # the retained balance stays as it was
        reject("balance", snap.get("balance"), exc)
    positions = snap.get("positions") or []
    for pos in positions if isinstance(positions, list) else [positions]:
        try:
            position = _snapshot_position(pos, raw_account, key, common)
        except (ValueError, TypeError, KeyError) as exc:
            reject("position", pos, exc)
            continue
        if position is not None:
            items.append(position)
    return [
        SnapshotEvent(
            id=stable_id(raw_account, "snapshot", key),
            covers=covers,
            items=tuple(items),
            **common,
        ),
        *bad,
    ]


def _snapshot_position(
    pos: Any, raw_account: str, key: str, common: dict[str, Any]
) -> PositionEvent | None:
    """One position of a snapshot; None for one that is not open."""
    if not isinstance(pos, dict):
        raise TypeError("a position is not an object")
    direction = str(pos.get("direction", "")).lower()
    if direction not in ("long", "short"):
        return None
    funding = decimal_or_none(pos.get("unrealizedFundingPnl")) or Decimal(0)
    trading = decimal_or_none(pos.get("unrealizedTradingPnl")) or Decimal(0)
    return PositionEvent(
        id=stable_id(raw_account, "snapshot", key, pos["symbol"]),
        symbol=str(pos["symbol"]),
        direction=direction,
        quantity=decimal(pos["quantity"]),
        entry_price=decimal_or_none(pos.get("openPrice")),
        mark_price=decimal_or_none(pos.get("markPrice")),
        notional=decimal_or_none(pos.get("notionalValue")),
        unrealized_pnl=funding + trading,
        details=_details(
            pos, "symbol", "direction", "quantity", "openPrice", "markPrice", "notionalValue"
        ),
        **common,
    )


class Malformed(ValueError):
    """A known event whose body lacks what its normalized event needs: published raw."""


def _require(data: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if data.get(key) is None:
            missing = [k for k in keys if data.get(k) is None]
            raise Malformed(f"no {', '.join(missing)}")


def _order(f: Frame, status: str) -> list[AnyEvent]:
    d = f.data
    _require(d, "orderId")
    return [
        OrderEvent(
            id=f.event_id(
                d.get("orderId"),
                status,
                d.get("timestamp"),
                d.get("nonce"),
                d.get("executed_quantity"),
                d.get("matchedQuantity"),
                d.get("error"),
            ),
            order_id=d["orderId"],
            status=status,
            symbol=d.get("symbol"),
            side=_side(d.get("side")),
            order_type=d.get("orderType"),
            price=d.get("price"),
            quantity=d.get("quantity"),
            filled_quantity=d.get("executed_quantity", d.get("matchedQuantity")),
            remaining_quantity=d.get("remainingQuantity"),
            source_time=f.source_time(),
            details=f.details(
                d,
                "orderId",
                "symbol",
                "side",
                "orderType",
                "price",
                "quantity",
                "executed_quantity",
                "matchedQuantity",
                "remainingQuantity",
                "timestamp",
            ),
            **f.common(),
        )
    ]


def _balance_update(f: Frame) -> list[AnyEvent]:
    d = f.data
    if "updatedCollateralBalance" in d:
        return [
            BalanceEvent(
                id=f.event_id(),
                asset=COLLATERAL,
                total=decimal(d["updatedCollateralBalance"]),
                details=f.details({}),
                **f.common(),
            )
        ]
    if "depositQuantity" in d:
        kind, direction, amount = "deposit", "in", d["depositQuantity"]
    elif "withdrawQuantity" in d:
        kind, direction, amount = "withdrawal", "out", d["withdrawQuantity"]
    else:
        raise Malformed("none of depositQuantity, withdrawQuantity, updatedCollateralBalance")
    return [
        TransactionEvent(
            id=f.event_id(),
            type=kind,
            status="credited" if kind == "deposit" else "debited",
            direction=direction,
            asset=COLLATERAL,
            amount=decimal(amount),
            details=f.details({}),
            **f.common(),
        )
    ]


def _trade(f: Frame, status: str) -> list[AnyEvent]:
    """A fill or a rejected trade.

    Hibachi gives a trade no id of its own, and two fills of one order at the same price and
    quantity within one second carry identical bodies. The account stream never replays an
    event (reconnects replay state only, in the ``stream.start`` snapshot), so the arrival time
    is part of a trade's id: two equal fills stay two events.
    """
    d = f.data
    _require(d, "symbol", "quantity", *(("price",) if status == "filled" else ()))
    return [
        TradeEvent(
            id=f.event_id(
                d.get("orderId"),
                status,
                d.get("timestamp"),
                d.get("quantity"),
                d.get("price"),
                f.arrival(),
            ),
            status=status,
            order_id=d.get("orderId"),
            symbol=d.get("symbol"),
            side=_side(d.get("side")),
            price=d.get("price"),
            quantity=d.get("quantity"),
            realized_pnl=d.get("realizedPnl"),
            source_time=f.source_time(),
            details=f.details(
                d, "orderId", "symbol", "side", "price", "quantity", "realizedPnl", "timestamp"
            ),
            **f.common(),
        )
    ]


def _position(f: Frame) -> list[AnyEvent]:
    """A partial update: quantity and direction only; the hub keeps the rest of the position.

    ``entryNotional`` is the notional at entry, not the snapshot's current ``notionalValue``:
    it goes to ``details.entry_notional``, and ``notional``, the PnL, the mark and entry prices
    keep the values the last snapshot gave (``partial``).
    """
    d = f.data
    pos = d.get("updatedPosition")
    if not isinstance(pos, dict):
        raise Malformed("no updatedPosition")
    _require(d, "symbol")
    _require(pos, "direction", "quantity")
    direction = str(pos["direction"]).lower()
    if direction not in ("long", "short", "closed"):
        raise Malformed(f"unknown direction {pos['direction']!r}")
    details = f.details(pos, "direction", "quantity", "entryNotional")
    if pos.get("entryNotional") is not None:
        details["entry_notional"] = str(decimal(pos["entryNotional"]))
    return [
        PositionEvent(
            id=f.event_id(),
            symbol=str(d["symbol"]),
            direction=direction,
            quantity=decimal(pos["quantity"]),
            details=details,
            partial=True,
            **f.common(),
        )
    ]


def _cash(f: Frame, kind: str, amount_key: str, *, status: str | None = None) -> list[AnyEvent]:
    d = f.data
    _require(d, amount_key)
    return [
        TransactionEvent(
            id=f.event_id(),
            type=kind,
            status=status or _status(d.get("status")),
            direction="in" if kind == "deposit" else "out" if kind == "withdrawal" else None,
            asset=COLLATERAL,
            amount=decimal(d[amount_key]),
            tx_hash=d.get("depositTxnHash"),
            source_time=f.source_time(),
            details=f.details(d, amount_key, "status", "depositTxnHash", "timestamp"),
            **f.common(),
        )
    ]


def _funding(f: Frame) -> list[AnyEvent]:
    d = f.data
    _require(d, "settledAmount")
    return [
        TransactionEvent(
            id=f.event_id(d.get("symbol"), d.get("timestamp")),
            type="funding",
            status="settled",
            asset=COLLATERAL,
            amount=decimal(d["settledAmount"]),
            source_time=f.source_time(),
            details=f.details(d, "settledAmount", "timestamp"),
            **f.common(),
        )
    ]


def _account_created(f: Frame) -> list[AnyEvent]:
    _require(f.data, "ledgerAccountId")
    return [
        NotificationEvent(
            id=f.event_id(f.data.get("ledgerAccountId")),
            category="account_created",
            title="Account created",
            message=f"ledger account {f.data.get('ledgerAccountId')}",
            details=f.details(f.data),
            **f.common(),
        )
    ]


def _raw(f: Frame, error: str | None = None, data: Any = None) -> list[AnyEvent]:
    body = f.details(f.data) if data is None else data
    return [RawEvent(id=f.event_id(), name=f.name, data=to_json(body), error=error, **f.common())]


HANDLERS: dict[str, Callable[[Frame], list[AnyEvent]]] = {
    "order_creation": lambda f: _order(f, "created"),
    "order_update": lambda f: _order(f, "updated"),
    "order_cancellation": lambda f: _order(f, "cancelled"),
    "order_matched": lambda f: _order(f, "matched"),
    "order_not_fully_matched": lambda f: _order(f, "partially_matched"),
    "order_request_rejected": lambda f: _order(f, "rejected"),
    "balance_update": _balance_update,
    "trade_update": lambda f: _trade(f, "filled"),
    "trade_rejected": lambda f: _trade(f, "rejected"),
    "position_update": _position,
    "funding_settlement": _funding,
    "deposit_status_update": lambda f: _cash(f, "deposit", "depositQuantity"),
    "withdraw_status_update": lambda f: _cash(f, "withdrawal", "withdrawQuantity"),
    "withdraw_rejection": lambda f: _cash(f, "withdrawal", "withdraw_quantity", status="rejected"),
    "transfer_status_update": lambda f: _cash(f, "transfer", "transferQuantity"),
    "account_created": _account_created,
}


def event_name(frame: Mapping[str, Any]) -> str:
    """The event's name: ``event``, else ``topic``; upper-case prose names mapped."""
    name = str(frame.get("event") or frame.get("topic") or "unknown")
    return ALIASES.get(name, name)


def parse_frame(
    provider: str,
    alias: Callable[[str], str],
    frame: Any,
    received_at: datetime,
    account: str | None = None,
) -> list[AnyEvent]:
    """One frame of the account stream to events, under ``account`` (the connection's).

    Without a connection account (a frame parsed on its own) the frame's account names it. A
    known event whose body cannot make its normalized event is published raw with the reason,
    never as a half-empty event.
    """
    if not isinstance(frame, dict):
        raise ValueError("not a JSON object")
    result = frame.get("result")
    if isinstance(result, dict) and "accountSnapshot" in result:
        snap = result["accountSnapshot"]
        upstream = str(snap.get("account_id")) if isinstance(snap, dict) else "unknown"
        return snapshot(provider, account or alias(upstream), frame, received_at)
    raw = frame["account"] if "account" in frame else frame.get("sourceAccountId", "unknown")
    raw_account = str(raw)
    data = frame["data"] if "data" in frame else frame.get("params")
    named = alias(raw_account)
    f = Frame(
        provider,
        account or named,
        raw_account,
        received_at,
        event_name(frame),
        data if isinstance(data, dict) else {"value": data},
        account is not None and named != account,
    )
    handler = HANDLERS.get(f.name)
    if handler is None:
        return _raw(f)
    if not isinstance(data, dict):
        return _raw(f, "no data object", data=frame)
    try:
        return handler(f)
    except (ValueError, TypeError, ArithmeticError) as exc:  # ValidationError is a ValueError
        return _raw(f, f"{type(exc).__name__}: {exc}", data=frame)
