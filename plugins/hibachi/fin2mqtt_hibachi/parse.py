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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

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
    stable_id,
)

COLLATERAL = "USDT"
"""Hibachi accounts hold USDT collateral; balances and cash movements are in it."""

ALIASES = {
    "ORDER_CREATED": "order_creation",
    "ORDER_UPDATED": "order_update",
    "ORDER_CANCELED": "order_cancellation",
    "ORDER_CANCELLED": "order_cancellation",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """What every event shares: who it is for and when it was received."""

    provider: str
    account: str
    raw_account: str
    received_at: datetime
    name: str
    data: dict[str, Any]

    def common(self) -> dict[str, Any]:
        """The fields every normalized event of this frame carries."""
        return {"provider": self.provider, "account": self.account, "received_at": self.received_at}

    def source_time(self) -> datetime | None:
        """The frame's own time (seconds since the epoch), when it has one."""
        ts = self.data.get("timestamp")
        if isinstance(ts, int) and ts > 0:
            return datetime.fromtimestamp(ts, UTC)
        return None

    def event_id(self, *parts: object) -> str:
        """A stable id: the parts that identify the fact, or its whole content plus arrival time.

        Hibachi sends no event ids; frames without a timestamp (a deposit of 123) are told apart
        by their arrival, since the stream never replays them.
        """
        if parts:
            return stable_id(self.raw_account, self.name, *parts)
        content = json.dumps(self.data, sort_keys=True, default=str)
        return stable_id(self.raw_account, self.name, content, self.received_at.isoformat())


def _side(value: Any) -> str | None:
    text = str(value or "").upper()
    if text in ("BID", "BUY", "LONG"):
        return "buy"
    if text in ("ASK", "SELL", "SHORT"):
        return "sell"
    return None


def _status(value: Any) -> str | None:
    return str(value).lower() if value is not None else None


def _details(data: Mapping[str, Any], *used: str) -> dict[str, Any]:
    """The frame's fields not mapped to a normalized field, JSON-safe (ints stay exact)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in used:
            continue
        out[key] = str(value) if isinstance(value, Decimal | float) else value
    return out


def snapshot(
    provider: str, alias: Callable[[str], str], reply: dict[str, Any], received_at: datetime
) -> list[AnyEvent]:
    """``stream.start``'s snapshot: the balance and every open position, replacing older ones."""
    snap = reply["result"]["accountSnapshot"]
    raw_account = str(snap["account_id"])
    common = {"provider": provider, "account": alias(raw_account), "received_at": received_at}
    key = reply["result"].get("listenKey", "")
    items: list[BalanceEvent | PositionEvent] = [
        BalanceEvent(
            id=stable_id(raw_account, "snapshot", key, "balance"),
            asset=COLLATERAL,
            total=snap["balance"],
            **common,
        )
    ]
    for pos in snap.get("positions", []):
        direction = str(pos.get("direction", "")).lower()
        if direction not in ("long", "short"):
            continue
        funding = Decimal(str(pos.get("unrealizedFundingPnl", "0")))
        trading = Decimal(str(pos.get("unrealizedTradingPnl", "0")))
        items.append(
            PositionEvent(
                id=stable_id(raw_account, "snapshot", key, pos["symbol"]),
                symbol=pos["symbol"],
                direction=direction,
                quantity=pos["quantity"],
                entry_price=pos.get("openPrice"),
                mark_price=pos.get("markPrice"),
                notional=pos.get("notionalValue"),
                unrealized_pnl=funding + trading,
                details=_details(
                    pos,
                    "symbol",
                    "direction",
                    "quantity",
                    "openPrice",
                    "markPrice",
                    "notionalValue",
                ),
                **common,
            )
        )
    return [
        SnapshotEvent(
            id=stable_id(raw_account, "snapshot", key),
            covers=("balance", "position"),
            items=tuple(items),
            **common,
        )
    ]


def _order(f: Frame, status: str) -> list[AnyEvent]:
    d = f.data
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
            order_id=d.get("orderId", "unknown"),
            status=status,
            symbol=d.get("symbol"),
            side=_side(d.get("side")),
            order_type=d.get("orderType"),
            price=d.get("price"),
            quantity=d.get("quantity"),
            filled_quantity=d.get("executed_quantity", d.get("matchedQuantity")),
            remaining_quantity=d.get("remainingQuantity"),
            source_time=f.source_time(),
            details=_details(
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
                total=d["updatedCollateralBalance"],
                **f.common(),
            )
        ]
    if "depositQuantity" in d:
        kind, direction, amount = "deposit", "in", d["depositQuantity"]
    elif "withdrawQuantity" in d:
        kind, direction, amount = "withdrawal", "out", d["withdrawQuantity"]
    else:
        return _raw(f)
    return [
        TransactionEvent(
            id=f.event_id(),
            type=kind,
            status="credited" if kind == "deposit" else "debited",
            direction=direction,
            asset=COLLATERAL,
            amount=amount,
            **f.common(),
        )
    ]


def _trade(f: Frame, status: str) -> list[AnyEvent]:
    d = f.data
    return [
        TradeEvent(
            id=f.event_id(
                d.get("orderId"), status, d.get("timestamp"), d.get("quantity"), d.get("price")
            ),
            status=status,
            order_id=d.get("orderId"),
            symbol=d.get("symbol"),
            side=_side(d.get("side")),
            price=d.get("price"),
            quantity=d.get("quantity"),
            realized_pnl=d.get("realizedPnl"),
            source_time=f.source_time(),
            details=_details(
                d, "orderId", "symbol", "side", "price", "quantity", "realizedPnl", "timestamp"
            ),
            **f.common(),
        )
    ]


def _position(f: Frame) -> list[AnyEvent]:
    d = f.data
    pos = d.get("updatedPosition") or {}
    direction = str(pos.get("direction", "")).lower()
    if direction not in ("long", "short", "closed"):
        return _raw(f)
    return [
        PositionEvent(
            id=f.event_id(),
            symbol=d["symbol"],
            direction=direction,
            quantity=pos.get("quantity", "0"),
            notional=pos.get("entryNotional"),
            details=_details(pos, "direction", "quantity", "entryNotional"),
            **f.common(),
        )
    ]


def _cash(f: Frame, kind: str, amount_key: str, *, status: str | None = None) -> list[AnyEvent]:
    d = f.data
    return [
        TransactionEvent(
            id=f.event_id(),
            type=kind,
            status=status or _status(d.get("status")),
            direction="in" if kind == "deposit" else "out" if kind == "withdrawal" else None,
            asset=COLLATERAL,
            amount=d.get(amount_key),
            tx_hash=d.get("depositTxnHash"),
            source_time=f.source_time(),
            details=_details(d, amount_key, "status", "depositTxnHash", "timestamp"),
            **f.common(),
        )
    ]


def _funding(f: Frame) -> list[AnyEvent]:
    d = f.data
    return [
        TransactionEvent(
            id=f.event_id(d.get("symbol"), d.get("timestamp")),
            type="funding",
            status="settled",
            asset=COLLATERAL,
            amount=d.get("settledAmount"),
            source_time=f.source_time(),
            details=_details(d, "settledAmount", "timestamp"),
            **f.common(),
        )
    ]


def _account_created(f: Frame) -> list[AnyEvent]:
    return [
        NotificationEvent(
            id=f.event_id(f.data.get("ledgerAccountId")),
            category="account_created",
            title="Account created",
            message=f"ledger account {f.data.get('ledgerAccountId')}",
            details=_details(f.data),
            **f.common(),
        )
    ]


def _raw(f: Frame) -> list[AnyEvent]:
    return [RawEvent(id=f.event_id(), name=f.name, data=_details(f.data), **f.common())]


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
    provider: str, alias: Callable[[str], str], frame: Any, received_at: datetime
) -> list[AnyEvent]:
    """One frame of the account stream to events."""
    if not isinstance(frame, dict):
        raise ValueError("not a JSON object")
    if isinstance(frame.get("result"), dict) and "accountSnapshot" in frame["result"]:
        return snapshot(provider, alias, frame, received_at)
    raw_account = str(frame.get("account", frame.get("sourceAccountId", "unknown")))
    data = frame.get("data", frame.get("params"))
    f = Frame(
        provider=provider,
        account=alias(raw_account),
        raw_account=raw_account,
        received_at=received_at,
        name=event_name(frame),
        data=data if isinstance(data, dict) else {"value": data},
    )
    handler = HANDLERS.get(f.name, _raw)
    return handler(f)
