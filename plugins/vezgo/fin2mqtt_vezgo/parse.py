"""Vezgo webhook bodies to events: pure functions, no I/O.

The bodies (Vezgo's webhook page, written there in JS notation)::

    {"hook": "SyncAccount", "user": {"id", "loginName"}, "account": {"id", "provider"}}
    {"hook": "SyncError", "user": {…}, "account": {…}, "error": "TemporaryFailureError"}
    {"hook": "newAccountEvent", "institution_id", "app_id", "websocket_id", "message": {…}}

A sync result becomes the retained account status ``sync`` (status, last success, last error,
consecutive failures, needs attention) and a ``notification`` event. The status builds on the
previous one (``ctx.status``), so the counter is a pure function of the hooks so far.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import JsonValue

from bridge.api import (
    AccountStatusEvent,
    AnyEvent,
    NotificationEvent,
    ParseContext,
    stable_id,
    to_json,
)

SYNC_ACCOUNT = "SyncAccount"
SYNC_ERROR = "SyncError"
NEW_ACCOUNT_EVENT = "newAccountEvent"
HOOKS = (SYNC_ACCOUNT, SYNC_ERROR, NEW_ACCOUNT_EVENT)
_HOOKS_BY_FOLDED = {h.casefold(): h for h in HOOKS}

SyncStatus = Literal[
    "ok", "retrying", "failing", "reconnect_required", "contact_vendor", "unknown_error"
]
SYNC_STATUSES: tuple[str, ...] = (
    "ok",
    "retrying",
    "failing",
    "reconnect_required",
    "contact_vendor",
    "unknown_error",
)
"""``ok``: synced. ``retrying``: a temporary failure Vezgo retries by itself. ``failing``: it
happened ``failure_threshold`` times in a row. ``reconnect_required``: the user must reconnect
the account (new credentials, security question, 2FA). ``contact_vendor``: ask Vezgo support,
with the account id. ``unknown_error``: an error name Vezgo did not document (kept verbatim)."""


@dataclass(frozen=True, slots=True)
class ErrorClass:
    """What one documented error name means for the user."""

    status: SyncStatus
    reason: str


ERRORS: Mapping[str, ErrorClass] = {
    "LoginFailedError": ErrorClass(
        "reconnect_required", "the account's credentials failed: reconnect the account"
    ),
    "SecurityQuestionError": ErrorClass(
        "reconnect_required", "the account needs user input (security question, 2FA): reconnect it"
    ),
    "TemporaryFailureError": ErrorClass("retrying", "a temporary failure; Vezgo retries by itself"),
    "UnhandledConnectorError": ErrorClass(
        "contact_vendor", "an unhandled connector failure: contact Vezgo with the account id"
    ),
    "UnknownConnectorError": ErrorClass(
        "contact_vendor", "an unknown connector failure: contact Vezgo with the account id"
    ),
}
REPEATED_TEMPORARY = "temporary failures keep happening: contact Vezgo with the account id"


def hook_name(body: Any) -> str | None:
    """The documented name of a body's hook (matched without regard to case), or None."""
    if not isinstance(body, dict):
        return None
    hook = body.get("hook")
    return _HOOKS_BY_FOLDED.get(hook.casefold()) if isinstance(hook, str) else None


def account_id(body: Mapping[str, Any]) -> str | None:
    """``account.id`` as a string (ids may come as numbers), or None when there is none."""
    account = body.get("account")
    value = account.get("id") if isinstance(account, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def refusal(body: Any) -> str | None:
    """Why the webhook server should refuse ``body`` (422), or None to accept it."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        return "body has no hook"
    name = hook_name(body)
    if name is None:
        return f"unknown hook {hook[:60]!r} (known: {', '.join(HOOKS)})"
    if name in (SYNC_ACCOUNT, SYNC_ERROR) and account_id(body) is None:
        return f"{name} without account.id"
    return None


def error_name(error: Any) -> str | None:
    """The error's name: the string itself, or an object's ``name`` / ``type`` / ``code``."""
    if isinstance(error, str):
        return error.strip() or None
    if isinstance(error, dict):
        for key in ("name", "type", "code", "error"):
            value = error.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return None


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def sync_events(
    body: Mapping[str, Any],
    ctx: ParseContext,
    alias: str,
    *,
    threshold: int,
    expose_ids: bool,
) -> Sequence[AnyEvent]:
    """The status and the event of one ``SyncAccount`` / ``SyncError``."""
    ctx = ctx.for_account(alias)
    previous = ctx.status("sync")
    before: Mapping[str, JsonValue] = previous.details if previous is not None else {}
    failures = before.get("consecutive_failures")
    failures = failures if isinstance(failures, int) else 0
    now = _iso(ctx.received_at)
    account = body.get("account")
    connector = account.get("provider") if isinstance(account, dict) else None
    details: dict[str, JsonValue] = {
        "last_success": before.get("last_success"),
        "last_error": before.get("last_error"),
        "last_error_at": before.get("last_error_at"),
        "consecutive_failures": failures,
        "connector": to_json(connector),
    }
    if expose_ids:
        details["account_id"] = account_id(body)
    hook = hook_name(body)
    status: SyncStatus
    name: str | None = None
    raw: JsonValue
    if hook == SYNC_ACCOUNT:
        status, reason, raw = "ok", "synced", SYNC_ACCOUNT
        details.update(last_success=now, consecutive_failures=0)
    else:
        raw = to_json(body.get("error"))
        name = error_name(body.get("error"))
        failures += 1
        known = ERRORS.get(name) if name else None
        if known is None:
            status = "unknown_error"
            reason = f"an error Vezgo does not document: {name or 'none given'}"
        else:
            status, reason = known.status, known.reason
            if status == "retrying" and failures >= threshold:
                status, reason = "failing", REPEATED_TEMPORARY
        details.update(last_error=name, last_error_at=now, consecutive_failures=failures)
    details["needs_attention"] = status not in ("ok", "retrying")
    details["reason"] = reason
    event_id = stable_id(ctx.provider, alias, hook, raw, now)
    state = ctx.event(
        AccountStatusEvent, id=event_id, topic="sync", status=status, raw=raw, details=details
    )
    severity: Literal["info", "warning", "error"] = (
        "info" if status == "ok" else "warning" if status == "retrying" else "error"
    )
    title = "Sync succeeded" if status == "ok" else f"Sync failed: {name or 'no error name'}"
    notice = ctx.event(
        NotificationEvent,
        id=event_id,
        category="sync",
        severity=severity,
        title=title,
        message=reason,
        details={"status": status, **details},
    )
    return [state, notice]
