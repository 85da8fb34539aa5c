"""Vezgo bodies → events, without a daemon: every hook, every error class, every variant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fin2mqtt_vezgo import VezgoProvider, VezgoSettings
from fin2mqtt_vezgo.parse import refusal
from fin2mqtt_vezgo.simulator import new_account_event, sync_account, sync_error
from pydantic import ValidationError

from bridge.api import AccountStatusEvent, NotificationEvent, RawEvent, stable_id
from bridge.testing.parsing import parse_frames

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ISO = "2024-05-01T12:00:00Z"
ACCOUNTS = [{"id": "acc-1001", "alias": "main", "login_name": "alice"}]


def provider(**settings) -> VezgoProvider:
    merged = {"client_id": "app-1", "accounts": ACCOUNTS, **settings}
    return VezgoProvider("vezgo", VezgoSettings.model_validate(merged))


def statuses(frames, **settings) -> list[AccountStatusEvent]:
    events = parse_frames(provider(**settings), frames, NOW)
    return [e for e in events if isinstance(e, AccountStatusEvent)]


def test_sync_account_is_status_ok_and_an_info_event():
    state, notice = parse_frames(provider(), [sync_account("acc-1001")], NOW)
    assert isinstance(state, AccountStatusEvent)
    assert state.account == "main"
    assert (state.topic, state.status, state.raw) == ("sync", "ok", "SyncAccount")
    assert state.details == {
        "last_success": ISO,
        "last_error": None,
        "last_error_at": None,
        "consecutive_failures": 0,
        "connector": "binance",
        "needs_attention": False,
        "reason": "synced",
    }
    assert isinstance(notice, NotificationEvent)
    assert (notice.account, notice.category, notice.severity) == ("main", "sync", "info")
    assert notice.title == "Sync succeeded"
    assert notice.details == {"status": "ok", **state.details}
    assert notice.retained is False and state.retained is True


@pytest.mark.parametrize(
    ("error", "status", "attention", "severity", "reason"),
    [
        (
            "LoginFailedError",
            "reconnect_required",
            True,
            "error",
            "the account's credentials failed: reconnect the account",
        ),
        (
            "SecurityQuestionError",
            "reconnect_required",
            True,
            "error",
            "the account needs user input (security question, 2FA): reconnect it",
        ),
        (
            "TemporaryFailureError",
            "retrying",
            False,
            "warning",
            "a temporary failure; Vezgo retries by itself",
        ),
        (
            "UnhandledConnectorError",
            "contact_vendor",
            True,
            "error",
            "an unhandled connector failure: contact Vezgo with the account id",
        ),
        (
            "UnknownConnectorError",
            "contact_vendor",
            True,
            "error",
            "an unknown connector failure: contact Vezgo with the account id",
        ),
        (
            "RateLimitedByExchangeError",
            "unknown_error",
            True,
            "error",
            "an error Vezgo does not document: RateLimitedByExchangeError",
        ),
    ],
)
def test_every_error_class(error, status, attention, severity, reason):
    state, notice = parse_frames(provider(), [sync_error("acc-1001", error)], NOW)
    assert (state.status, state.raw) == (status, error)
    assert state.details == {
        "last_success": None,
        "last_error": error,  # an unknown name is kept verbatim
        "last_error_at": ISO,
        "consecutive_failures": 1,
        "connector": "binance",
        "needs_attention": attention,
        "reason": reason,
    }
    assert (notice.severity, notice.title, notice.message) == (
        severity,
        f"Sync failed: {error}",
        reason,
    )


def test_temporary_failures_escalate_exactly_at_the_threshold_and_a_success_resets():
    temporary = sync_error("acc-1001", "TemporaryFailureError")
    frames = [temporary, temporary, temporary, temporary, sync_account("acc-1001"), temporary]
    got = statuses(frames, failure_threshold=3)
    assert [(s.status, s.details["consecutive_failures"]) for s in got] == [
        ("retrying", 1),
        ("retrying", 2),
        ("failing", 3),
        ("failing", 4),
        ("ok", 0),
        ("retrying", 1),
    ]
    assert [s.details["needs_attention"] for s in got] == [False, False, True, True, False, False]
    assert got[2].details["reason"] == (
        "temporary failures keep happening: contact Vezgo with the account id"
    )
    # the success keeps the last error for the record; the next failure keeps the last success
    assert got[4].details["last_error"] == "TemporaryFailureError"
    assert got[5].details["last_success"] == ISO


def test_any_failure_counts_towards_the_threshold_and_accounts_count_separately():
    frames = [
        sync_error("acc-1001", "LoginFailedError"),
        sync_error("acc-2002", "TemporaryFailureError"),
        sync_error("acc-1001", "TemporaryFailureError"),
    ]
    got = statuses(frames, failure_threshold=2)
    assert [(s.account, s.status, s.details["consecutive_failures"]) for s in got] == [
        ("main", "reconnect_required", 1),
        ("acct-" + stable_id("vezgo-account", "acc-2002")[:8], "retrying", 1),
        ("main", "failing", 2),
    ]


def test_threshold_one_makes_the_first_temporary_failure_a_problem():
    (got,) = statuses([sync_error("acc-1001", "TemporaryFailureError")], failure_threshold=1)
    assert (got.status, got.details["needs_attention"]) == ("failing", True)


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (
            {"name": "LoginFailedError", "message": "bad key"},
            "reconnect_required",
            "LoginFailedError",
        ),
        ({"type": "TemporaryFailureError"}, "retrying", "TemporaryFailureError"),
        (None, "unknown_error", None),
        ("", "unknown_error", None),
        ({"message": "no name"}, "unknown_error", None),
    ],
)
def test_error_variants(error, status, name):
    (got,) = statuses([sync_error("acc-1001", error)])
    assert got.status == status
    assert got.details["last_error"] == name
    assert got.raw == (error if error != "" else "")  # the upstream value as sent


def test_missing_error_key_is_an_unknown_error():
    body = sync_account("acc-1001") | {"hook": "SyncError"}
    (got,) = statuses([body])
    assert (got.status, got.raw, got.details["reason"]) == (
        "unknown_error",
        None,
        "an error Vezgo does not document: none given",
    )


def test_account_names_hide_ids_unless_opted_in():
    numeric = sync_account(77)  # ids may arrive as numbers
    (hashed,) = statuses([numeric])
    assert hashed.account == "acct-" + stable_id("vezgo-account", "77")[:8]
    assert "account_id" not in hashed.details
    assert "alice" not in hashed.model_dump_json()  # the login name is never published
    (exposed,) = statuses([numeric], expose_ids=True)
    assert exposed.account == "77"
    assert exposed.details["account_id"] == "77"
    (configured,) = statuses([sync_account("acc-1001")], expose_ids=True)
    assert configured.account == "main"


def test_hook_names_match_regardless_of_case():
    (got,) = statuses([sync_account("acc-1001") | {"hook": "syncaccount"}])
    assert got.status == "ok"


def test_new_account_event_passes_through_raw():
    body = new_account_event({"type": "balance", "amount": "1.5"})
    (event,) = parse_frames(provider(), [body], NOW)
    assert isinstance(event, RawEvent)
    assert (event.name, event.account, event.data) == ("newAccountEvent", None, body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([1, 2], "body must be a JSON object"),
        ({"account": {"id": "a"}}, "body has no hook"),
        ({"hook": 5}, "body has no hook"),
        (
            {"hook": "AccountDeleted"},
            "unknown hook 'AccountDeleted' (known: SyncAccount, SyncError, newAccountEvent)",
        ),
        ({"hook": "SyncAccount", "user": {}}, "SyncAccount without account.id"),
        ({"hook": "SyncError", "account": {"id": ""}}, "SyncError without account.id"),
        ({"hook": "SyncError", "account": {"id": True}}, "SyncError without account.id"),
        ({"hook": "SyncAccount", "account": "acc-1"}, "SyncAccount without account.id"),
    ],
)
def test_refused_bodies(body, reason):
    assert refusal(body) == reason


@pytest.mark.parametrize(
    "body",
    [
        sync_account("a"),
        sync_account(12),
        sync_error("a", "X"),
        {"hook": "SyncError", "account": {"id": "a"}},
        new_account_event({}),
    ],
)
def test_accepted_bodies(body):
    assert refusal(body) is None


def test_settings_defaults_and_errors():
    s = VezgoSettings(client_id="app-1")
    assert [str(n) for n in s.allowed_sources] == [
        "52.60.234.183/32",
        "52.60.240.87/32",
        "52.60.241.79/32",
        "52.60.242.161/32",
    ]
    assert (s.webhook_path, s.api_url, s.failure_threshold) == (
        "/hooks/vezgo",
        "https://api.vezgo.com",
        3,
    )
    assert s.expected_client_id == "app-1"
    assert s.syncable() == {}  # no secret: no "Sync now"
    with_secret = VezgoSettings.model_validate(
        {
            "client_id": "app-1",
            "secret": "x",
            "login_name": "bob",
            "accounts": [{"id": 1, "alias": "a"}, {"id": "2", "alias": "b", "login_name": "eve"}],
        }
    )
    assert with_secret.syncable() == {"a": ("1", "bob"), "b": ("2", "eve")}
    for bad, where in [
        ({"webhook_path": "hooks"}, "webhook_path"),
        ({"api_url": "ftp://x"}, "api_url"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"accounts": [{"id": "1", "alias": "a"}, {"id": "2", "alias": "a"}]}, "aliases"),
        ({"allowed_sources": ["not-an-ip"]}, "allowed_sources"),
    ]:
        with pytest.raises(ValidationError, match=where):
            VezgoSettings.model_validate({"client_id": "app-1", **bad})
