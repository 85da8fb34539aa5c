"""What every plugin's ``parse`` needs: the event factory, JSON data, UTC times, Decimals."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel, JsonValue

from bridge.model.events import AccountStatusEvent, BaseEvent, RawEvent, stable_id

E = TypeVar("E", bound=BaseEvent)


class Unhandled(Exception):
    """Raised by ``parse`` for a frame no event model covers: the core publishes it raw."""


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What ``parse`` knows besides the frame: whose it is and when it arrived.

    ``ctx.event(BalanceEvent, id=…, asset=…, total=…)`` fills ``provider``, ``account`` and
    ``received_at``; pass ``account=None`` for facts of no account (market prices).
    """

    provider: str
    account: str | None
    received_at: datetime
    statuses: Mapping[tuple[str | None, str], AccountStatusEvent] = field(default_factory=dict)
    """The instance's account statuses published so far in this run, by (account, topic)."""

    def status(self, topic: str, account: str | None = None) -> AccountStatusEvent | None:
        """The account status ``topic`` of ``account`` (default: the context's) as last
        published in this run, for a parse whose result builds on it (a failure counter).

        None before the first one, and after a restart of the daemon.
        """
        return self.statuses.get((self.account if account is None else account, topic))

    @property
    def common(self) -> dict[str, Any]:
        """``provider``, ``account`` and ``received_at``, for building events by hand."""
        return {"provider": self.provider, "account": self.account, "received_at": self.received_at}

    def for_account(self, account: str | None) -> ParseContext:
        """The same context for another account (e.g. one named in the frame)."""
        return replace(self, account=account)

    def event(self, model: type[E], **fields: Any) -> E:
        """Build one event of ``model``; ``fields`` may override the common ones."""
        return model(**{**self.common, **fields})

    def raw(
        self, name: str, data: Any, *, error: str | None = None, id: str | None = None
    ) -> RawEvent:
        """A frame no model covers, published as it came (as JSON data, nesting capped)."""
        body = shallow(to_json(data))
        return self.event(
            RawEvent,
            id=id or stable_id(self.provider, name, self.received_at.isoformat(), _dumps(body)),
            name=name,
            data=body,
            error=error,
        )


MAX_DEPTH = 32
"""Nesting kept in raw data; deeper levels are summarised (many JSON parsers refuse ~100)."""


def shallow(data: JsonValue, depth: int = 0) -> JsonValue:
    """JSON data with what is nested deeper than ``MAX_DEPTH`` levels replaced by a note."""
    if isinstance(data, dict | list) and depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(data, dict):
        return {k: shallow(v, depth + 1) for k, v in data.items()}
    if isinstance(data, list):
        return [shallow(v, depth + 1) for v in data]
    return data


def _dumps(body: JsonValue) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def to_json(value: Any) -> JsonValue:
    """Any frame as JSON data, all the way down: Decimal → plain string, datetime → ISO 8601,
    bytes → text (``base64:…`` when not UTF-8), models → their JSON form, containers → lists
    and objects, anything else → its ``str``."""
    match value:
        case None | bool() | int() | str():
            return value
        case float():
            return value if math.isfinite(value) else str(value)
        case Decimal():
            return format(value, "f") if value.is_finite() else str(value)
        case datetime() | date():
            return value.isoformat()
        case bytes() | bytearray():
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return "base64:" + base64.b64encode(value).decode("ascii")
        case Enum():
            return to_json(value.value)
        case BaseModel():
            return to_json(value.model_dump(mode="json"))
        case dict():
            return {str(k): to_json(v) for k, v in value.items()}
        case list() | tuple() | set() | frozenset():
            return [to_json(v) for v in value]
    return str(value)


def decimal(value: Any) -> Decimal:
    """A finite Decimal from a number or numeric string (a float keeps its shortest digits)."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    try:
        result = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def decimal_or_none(value: Any) -> Decimal | None:
    """``decimal(value)``, or None for None, "" and what is not a number."""
    if value is None or value == "":
        return None
    try:
        return decimal(value)
    except ValueError:
        return None


EPOCH_MS_ABOVE = 10**11
"""Epoch numbers above this are milliseconds (10^11 s is the year 5138)."""


def utc_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (with or without offset; none means UTC), epoch
    seconds or milliseconds (int, float, Decimal or numeric string), or a datetime.

    None and "" give None; anything else unreadable raises ValueError.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        when = value
    elif type(value) is int:  # the common case, exact without a Decimal
        when = _from_epoch(value)
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        when = _from_epoch(decimal(value))
    elif isinstance(value, str):
        text = value.strip()
        number = decimal_or_none(text)
        when = _from_epoch(number) if number is not None else _from_iso(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when if when.tzinfo is UTC else when.astimezone(UTC)


def _from_epoch(number: int | Decimal) -> datetime:
    ms = number > EPOCH_MS_ABOVE or number < -EPOCH_MS_ABOVE
    seconds: float | Decimal = number / 1000 if ms else number
    return datetime.fromtimestamp(float(seconds), UTC)


def _from_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"not a time: {text!r}") from None
