"""From one frame to events, the way the core does it for every frame (and the kit for tests).

What leaves as a raw event is made safe here, whatever the plugin built: values under sensitive
keys (the core's and the plugin's ``sensitive_keys``) and known secret values are masked, bytes
that are not UTF-8 are kept as ``base64:…``, and the event stays under the connection's account.
"""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from bridge.model.events import AnyEvent, RawEvent, stable_id
from bridge.model.redaction import MASK, SECRETS
from bridge.plugin.helpers import MAX_DEPTH, ParseContext, Unhandled, shallow, to_json
from bridge.plugin.provider import Provider

NAME_KEYS = ("type", "event", "topic", "op", "channel", "method")
"""Fields whose text names an unhandled frame's raw event (else it is ``unhandled``)."""

SENSITIVE_KEYS = frozenset({
    "token", "accesstoken", "refreshtoken", "idtoken", "jwt", "apikey", "apisecret", "secret",
    "clientsecret", "password", "passwd", "authorization", "listenkey", "sessionkey", "signature",
    "privatekey", "cookie",
})  # fmt: skip
"""Keys whose values never leave in a raw event, for every provider (compared lower-case,
without ``_`` and ``-``); a plugin adds its own with ``Provider.sensitive_keys``."""


def raw_name(frame: Any) -> str:
    """What to call a frame no model covers: its ``type`` (or ``event`` …), else ``unhandled``."""
    if isinstance(frame, dict):
        for key in NAME_KEYS:
            value = frame.get(key)
            if isinstance(value, str) and value:
                return value
    return "unhandled"


def frame_events(provider: Provider[Any], frame: Any, ctx: ParseContext) -> list[AnyEvent]:
    """``provider.parse``; a frame it leaves unhandled (None, ``Unhandled``) becomes a RawEvent.

    Any other exception is the caller's (the core publishes the frame as ``unparsed``, see
    ``unparsed_event``). Raw events are redacted (see the module docstring).
    """
    try:
        events = provider.parse(frame, ctx)
    except Unhandled as exc:
        events = [ctx.raw(raw_name(frame), frame, error=str(exc) or None)]
    if events is None:
        events = [ctx.raw(raw_name(frame), frame)]
    for event in events:
        if isinstance(event, RawEvent):
            break
    else:
        return list(events)  # nothing raw: nothing to redact (the common case, no generator)
    keys = sensitive_keys(provider)
    return [safe_raw(e, keys, ctx.account) if isinstance(e, RawEvent) else e for e in events]


def unparsed_event(
    provider: Provider[Any], frame: Any, ctx: ParseContext, exc: Exception
) -> RawEvent:
    """The raw ``unparsed`` event of a frame ``parse`` failed on, under the connection's account."""
    data = shallow(_frame_data(frame))
    event = RawEvent(
        provider=ctx.provider,
        account=ctx.account,
        id=stable_id(ctx.provider, "unparsed", ctx.received_at.isoformat(), repr(data)),
        received_at=ctx.received_at,
        name="unparsed",
        data=data,
        error=f"{type(exc).__name__}: {exc}",
    )
    return safe_raw(event, sensitive_keys(provider), ctx.account)


def sensitive_keys(provider: Provider[Any]) -> frozenset[str]:
    """The core's sensitive keys and the provider's, normalized."""
    extra = getattr(provider, "sensitive_keys", ())
    return SENSITIVE_KEYS | {_norm(k) for k in extra}


def safe_raw(event: RawEvent, keys: frozenset[str], account: str | None) -> RawEvent:
    """The raw event with sensitive values masked, kept under an account when it lost its own."""
    data = SECRETS.scrub_json(redact(event.data, keys))
    error = SECRETS.scrub(event.error) if event.error is not None else None
    update: dict[str, Any] = {}
    if data != event.data:
        update["data"] = data
    if error != event.error:
        update["error"] = error
    if event.account is None and account is not None:
        update["account"] = account
    return event.model_copy(update=update) if update else event


def redact(data: JsonValue, keys: frozenset[str], depth: int = 0) -> JsonValue:
    """JSON data with the values under ``keys`` (at any depth) replaced by ``MASK``, and what
    is nested deeper than ``MAX_DEPTH`` levels replaced by a note."""
    if isinstance(data, dict | list) and depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH} levels>"
    if isinstance(data, dict):
        return {
            k: (MASK if v is not None else None) if _norm(k) in keys else redact(v, keys, depth + 1)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact(v, keys, depth + 1) for v in data]
    return data


def _norm(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _frame_data(frame: Any) -> JsonValue:
    """A frame as JSON data: bytes decoded when UTF-8 (JSON when JSON), else ``base64:…``."""
    if isinstance(frame, bytes | bytearray):
        return to_json(frame)
    if isinstance(frame, str):
        return frame
    return to_json(frame)
