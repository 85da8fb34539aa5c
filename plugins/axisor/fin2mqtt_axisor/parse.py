"""Axisor frames → normalized events. Pure: no I/O, no clock.

Every event is ``{"type", "channel", "data"}`` (the seed's ten types). Money comes as JSON
numbers: the link decodes them as ``Decimal`` and they stay exact. User ids never reach a
topic: the connected user is the ``account`` alias, other users (admin rooms) an alias from
``aliases`` or ``user-<hash>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bridge.api import (
    AccountStatusEvent,
    AnyEvent,
    MarketPriceEvent,
    NotificationEvent,
    ParseContext,
    PositionEvent,
    decimal,
    decimal_or_none,
    stable_id,
    to_json,
    utc_time,
)

CONTROL = frozenset(
    {"connection", "connection_established", "room_subscription", "room_list", "rooms", "pong"}
)
"""Frames the connection handles (``on_connect``, ``keepalive``); nothing to publish."""
HANDLED_ERRORS = frozenset({"AUTHENTICATION_FAILED", "INVALID_ROOM"})
"""Errors the connection reports itself (link state, room status)."""
RATE_LIMITED = "RATE_LIMIT_EXCEEDED"
_CODES_IN_TEXT = (
    ("rate limit", RATE_LIMITED),
    ("invalid room", "INVALID_ROOM"),
    ("authentication", "AUTHENTICATION_FAILED"),
    ("unauthorized", "AUTHENTICATION_FAILED"),
    ("invalid token", "AUTHENTICATION_FAILED"),
)
Severity = Literal["info", "warning", "error"]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def error_code(frame: Mapping[str, Any]) -> str | None:
    """The code of an ``error`` frame in either shape: ``{"code": "RATE_LIMIT_EXCEEDED",
    "message"}`` (the doc's codes) or ``{"error": "Rate limit exceeded"}`` (the server code)."""
    body = _obj(frame.get("data")) or frame
    code = body.get("code") or body.get("error_code")
    if isinstance(code, str) and code:
        return code.upper()
    text = f"{body.get('error') or ''} {body.get('message') or ''}".lower()
    return next((c for words, c in _CODES_IN_TEXT if words in text), None)


def error_text(frame: Mapping[str, Any]) -> str:
    """What an ``error`` frame says, for people."""
    body = _obj(frame.get("data")) or frame
    return str(body.get("message") or body.get("error") or "no reason given")


def _time(value: Any) -> str | None:
    """An upstream time as ISO 8601 UTC text (``…Z``), for ``details``."""
    when = utc_time(value)
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def position_key(symbol: str, position_id: str) -> str:
    """A position's name in topics: ``BTC_USD pos_123`` → ``position/btc_usd-pos_123``.

    Per position, not per symbol: a user can hold several positions in one market.
    """
    return f"{symbol} {position_id}"


@dataclass(frozen=True, slots=True)
class Naming:
    """Turns user ids of frames into account aliases."""

    account: str
    aliases: Mapping[str, str]
    own_user: Callable[[], str | None]
    """The connected user's id (from the connection reply), once known."""

    def alias(self, user_id: Any) -> str:
        """The connected user (or no user named) → ``account``; others → alias or hash."""
        if user_id is None or str(user_id) == self.own_user():
            return self.account
        text = str(user_id)
        return self.aliases.get(text) or f"user-{stable_id('axisor-user', text)[:8]}"


def parse_frame(naming: Naming, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
    """One frame → its events; None for a frame no model covers (published raw)."""
    if not isinstance(frame, dict):
        return None
    kind = frame.get("type")
    if kind in CONTROL:
        return []
    if kind == "error":
        return _error(frame, ctx)
    data = frame.get("data")
    handler = _HANDLERS.get(str(kind))
    if handler is None or not isinstance(data, dict):
        return None
    return handler(naming, data, ctx)


def _money(data: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """Decimal strings of the numeric fields present, under snake_case names."""
    return {
        name: to_json(value)
        for key, name in (k.split("=") if "=" in k else (k, k) for k in keys)
        if (value := decimal_or_none(data.get(key))) is not None
    }


def _market_data(_n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    symbol, price = str(d["symbol"]), decimal(d["price"])
    details = _money(
        d,
        "change=change_24h",
        "changePercent=change_percent_24h",
        "high24h=high_24h",
        "low24h=low_24h",
        "volume=volume_24h",
    )
    return [
        ctx.event(MarketPriceEvent, account=None, market=symbol, price=price,
                  id=stable_id("market", symbol, d.get("timestamp"), price),
                  source_time=utc_time(d.get("timestamp")), details=details)
    ]  # fmt: skip


def _historical(_n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    candles = [
        {"time": _time(c.get("time")),
         **_money(c, "open", "high", "low", "close", "volume")}
        for c in d.get("candles") or []
    ]  # fmt: skip
    body = {
        "symbol": d.get("symbol"),
        "timeframe": d.get("timeframe"),
        "candles": candles,
        "timestamp": _time(d.get("timestamp")),
    }
    span = [c["time"] for c in candles[:1] + candles[-1:]]
    key = stable_id("candles", d.get("symbol"), d.get("timeframe"), *span, d.get("timestamp"))
    return [ctx.for_account(None).raw("historical_data_update", body, id=key)]


def _price_alert(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    symbol, condition = d.get("symbol"), d.get("condition")
    details = {"alert_id": to_json(d.get("id")), "symbol": symbol, "condition": condition,
               **_money(d, "price", "currentPrice=current_price")}  # fmt: skip
    return [
        ctx.event(NotificationEvent, account=n.alias(d.get("userId")),
                  id=stable_id("price_alert", d.get("id"), d.get("triggeredAt")),
                  category="price_alert", severity="info",
                  title=f"{symbol} {condition} {details.get('price')}",
                  message=f"{symbol} at {details.get('current_price')}",
                  source_time=utc_time(d.get("triggeredAt")), details=details)
    ]  # fmt: skip


def _positions_at_risk(positions: Any) -> list[dict[str, Any]]:
    return [
        {"position_id": to_json(p.get("id")), "symbol": p.get("symbol"),
         **_money(p, "distanceToLiquidation=distance_to_liquidation"),
         "at_risk": bool(p.get("isAtRisk")), "recommended_action": p.get("recommendedAction")}
        for p in positions or [] if isinstance(p, dict)
    ]  # fmt: skip


def _margin_guard(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    summary = _obj(d.get("summary"))
    at_risk = int(summary.get("positionsAtRisk") or 0)
    checked = summary.get("positionsChecked")
    severity: Severity = "warning" if at_risk else "info"
    details = {"execution_id": to_json(d.get("executionId")), "action": d.get("action"),
               "positions": _positions_at_risk(d.get("positions")),
               "positions_checked": to_json(checked), "positions_at_risk": at_risk,
               "actions_executed": to_json(summary.get("actionsExecuted") or [])}  # fmt: skip
    return [
        ctx.event(NotificationEvent, account=n.alias(d.get("userId")),
                  id=f"margin-guard-{d['executionId']}", category="margin_guard",
                  severity=severity, title=f"Margin Guard: {d.get('action')}",
                  message=f"{at_risk} of {checked} positions at risk",
                  source_time=utc_time(d.get("executedAt")), details=details)
    ]  # fmt: skip


def _direction(side: Any, size: Any) -> Literal["long", "short", "closed"]:
    if decimal_or_none(size) == 0:
        return "closed"
    text = str(side or "").lower()
    if text in ("short", "sell", "s"):
        return "short"
    return "closed" if text == "closed" else "long"


def _position(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    p = d.get("position")
    if not isinstance(p, dict):
        return []
    distance = decimal_or_none(p.get("distanceToLiquidation"))
    details = {"position_id": to_json(p["id"]), "symbol": p.get("symbol"),
               **_money(p, "margin", "leverage", "pnl"),
               "distance_to_liquidation": to_json(distance),
               "at_risk": bool(p.get("isAtRisk"))}  # fmt: skip
    return [
        ctx.event(PositionEvent, account=n.alias(d.get("userId")),
                  id=stable_id("position", p["id"], p.get("updatedAt"), to_json(p)),
                  symbol=position_key(str(p.get("symbol")), str(p["id"])),
                  direction=_direction(p.get("side"), p.get("size")),
                  quantity=decimal_or_none(p.get("size")) or 0,
                  entry_price=decimal_or_none(p.get("entryPrice")),
                  mark_price=decimal_or_none(p.get("currentPrice")),
                  unrealized_pnl=decimal_or_none(p.get("pnl")),
                  source_time=utc_time(p.get("updatedAt")), details=details)
    ]  # fmt: skip


def _auto_close(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    p = _obj(d.get("position"))
    account, symbol = n.alias(d.get("userId")), str(p.get("symbol"))
    details = {"execution_id": to_json(d.get("executionId")), "position_id": to_json(p.get("id")),
               "symbol": symbol, "reason": p.get("reason"), **_money(p, "pnl"),
               "closed_at": _time(p.get("closedAt"))}  # fmt: skip
    events: list[AnyEvent] = [
        ctx.event(NotificationEvent, account=account, id=f"auto-close-{d['executionId']}",
                  category="auto_close", severity="warning", title=f"{symbol} position closed",
                  message=f"closed by Margin Guard ({p.get('reason')}), PnL {details.get('pnl')}",
                  source_time=utc_time(d.get("executedAt")), details=details)
    ]  # fmt: skip
    if p.get("id") is not None:  # the position is gone: its retained topic is cleared
        events.append(
            ctx.event(PositionEvent, account=account, id=stable_id("closed", p["id"]),
                      symbol=position_key(symbol, str(p["id"])), direction="closed",
                      quantity=0, source_time=utc_time(p.get("closedAt")))
        )  # fmt: skip
    return events


_SEVERITY: dict[str, Severity] = {"warning": "warning", "error": "error", "critical": "error"}


def _notification(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    details = {"notification_id": to_json(d.get("id")), "type": d.get("type"),
               "read": bool(d.get("read")), "data": to_json(d.get("data"))}  # fmt: skip
    return [
        ctx.event(NotificationEvent, account=n.alias(d.get("userId")),
                  id=f"notification-{d['id']}", category=str(d.get("category") or "notification"),
                  severity=_SEVERITY.get(str(d.get("type")).lower(), "info"),
                  title=d.get("title"), message=d.get("message"),
                  source_time=utc_time(d.get("createdAt")), details=details)
    ]  # fmt: skip


def _notification_status(n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    status, method = d.get("status"), d.get("deliveryMethod")
    details = {"notification_id": to_json(d.get("id")), "status": status,
               "delivery_method": method}  # fmt: skip
    via = f" by {method}" if method else ""
    return [
        ctx.event(NotificationEvent, account=n.alias(d.get("userId")),
                  id=stable_id("notification-status", d.get("id"), status, d.get("deliveredAt")),
                  category="notification_status", title=None,
                  message=f"notification {d.get('id')} {status}{via}",
                  source_time=utc_time(d.get("deliveredAt") or d.get("updatedAt")),
                  details=details)
    ]  # fmt: skip


def _maintenance(_n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    start, end = _time(d.get("startTime")), _time(d.get("endTime"))
    details = {"start_time": start, "end_time": end, "message": d.get("message")}
    return [
        ctx.event(AccountStatusEvent, account=None, topic="maintenance",
                  id=stable_id("maintenance", start, end, d.get("scheduled")),
                  status="scheduled" if d.get("scheduled") else "in_progress",
                  raw=to_json(d), details=details)
    ]  # fmt: skip


def _service(_n: Naming, d: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    service, status = str(d.get("service") or "platform"), d.get("status")
    details = {"service": service, "message": d.get("message"),
               "estimated_recovery": _time(d.get("estimatedRecovery"))}  # fmt: skip
    return [
        ctx.event(AccountStatusEvent, account=None, topic=f"service_{service}",
                  id=stable_id("service", service, status, d.get("updatedAt")),
                  status=str(status or "unknown").lower(), raw=to_json(status),
                  source_time=utc_time(d.get("updatedAt")), details=details)
    ]  # fmt: skip


def _error(frame: dict[str, Any], ctx: ParseContext) -> list[AnyEvent]:
    code, text = error_code(frame), error_text(frame)
    if code in HANDLED_ERRORS:
        return []
    severity: Severity = "error"
    if code == RATE_LIMITED:  # at most one notice per minute, whatever the server repeats
        minute = ctx.received_at.replace(second=0, microsecond=0).isoformat()
        key, severity = stable_id("rate-limited", minute), "warning"
    else:
        key = stable_id("error", code, text, ctx.received_at.isoformat())
    return [
        ctx.event(NotificationEvent, id=key, category="error", severity=severity,
                  title=code or "error", message=text)
    ]  # fmt: skip


_HANDLERS: dict[str, Callable[[Naming, dict[str, Any], ParseContext], list[AnyEvent]]] = {
    "market_data_update": _market_data,
    "historical_data_update": _historical,
    "price_alert": _price_alert,
    "margin_guard_execution": _margin_guard,
    "position_status_update": _position,
    "auto_close_execution": _auto_close,
    "in_app_notification": _notification,
    "notification_status_update": _notification_status,
    "server_maintenance": _maintenance,
    "service_status_update": _service,
}
