"""IBEX FI frames and HTTP bodies → events, both generations (v1.1 and v1.2) of every message."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fin2mqtt_ibex.parse import (
    Naming,
    is_signal_only,
    parse_balances_response,
    parse_frame,
    parse_transactions_response,
    parse_user,
)

from bridge.api import (
    AccountStatusEvent,
    BalanceEvent,
    NotificationEvent,
    RawEvent,
    SnapshotEvent,
    TransactionEvent,
)

MAIN = "0x" + "a1" * 20
OTHER = "0x" + "c3" * 20
NAMES = Naming("ibex", {MAIN: "main"})
OTHER_NAME = NAMES.safe(OTHER)
"""A Safe without an alias: a short stable hash, not its address."""
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
STAMP = "2026-11-21T11:59:59.500Z"
TX = {
    "hash": "0x" + "ab" * 32,
    "blockNumber": 123,
    "timestamp": "2026-11-21T11:00:00Z",
    "from": OTHER,
    "to": MAIN,
    "tokenAddress": "0x" + "e0" * 20,
    "tokenType": "ERC20",
    "tokenSymbol": "EURe",
    "value": "100.0",
    "direction": "IN",
}
TX_V11 = {
    "transactionHash": TX["hash"],
    "blockNumber": 123,
    "timestamp": "2026-11-21T11:00:00Z",
    "from": OTHER,
    "to": MAIN,
    "value": "100.0",
    "direction": "IN",
}


@pytest.fixture(autouse=True)
def _fresh_chains():
    """The chains a Safe was seen on are learned: each test starts without."""
    NAMES.chains.clear()


def frame(kind: str, data: object) -> dict[str, object]:
    return {"type": kind, "data": data, "timestamp": STAMP}


def parse(kind: str, data: object) -> list:
    return parse_frame(NAMES, frame(kind, data), NOW)


@pytest.mark.parametrize("kind", ["auth_success", "connection_success"])
def test_connected_messages_are_the_link_state_not_events(kind):
    assert parse(kind, {"safeAddress": MAIN, "message": "Connected to real-time updates"}) == []


def test_user_data_gives_kyc_and_the_iban_status_of_each_safe_without_iban_strings():
    events = parse(
        "user_data",
        {
            "id": "u1",
            "ky": "2",
            "signers": [
                {
                    "id": "s1",
                    "safes": [
                        # a server that leaks more than the chain: only the chain is kept
                        {
                            "address": MAIN,
                            "iban": {"chainId": 100, "iban": "DE89370400440532013000", "bic": "X"},
                        },
                        {"address": OTHER.upper().replace("0X", "0x"), "threshold": 1},
                    ],
                }
            ],
        },
    )
    kyc, iban_main, iban_other = events
    assert isinstance(kyc, AccountStatusEvent)
    assert (kyc.account, kyc.topic, kyc.status, kyc.raw) == (None, "kyc", "verified", "2")
    assert kyc.details == {"user_id": "u1"}
    assert (iban_main.account, iban_main.topic, iban_main.status) == ("main", "iban", "approved")
    assert iban_main.raw == {"chainId": 100}
    assert "DE89" not in iban_main.model_dump_json()
    assert (iban_other.account, iban_other.status, iban_other.raw) == (
        OTHER_NAME,
        "not_approved",
        None,
    )


@pytest.mark.parametrize(
    ("ky", "status"),
    [
        ("0", "not_started"),
        ("1", "pending"),
        ("2", "verified"),
        (1, "pending"),
        ("UNKNOWN", "unknown"),
        (None, "unknown"),
    ],
)
def test_kyc_values_are_named_and_the_raw_value_is_kept(ky, status):
    [kyc] = parse("user_data", {"id": "u1", "ky": ky, "signers": []})
    assert (kyc.status, kyc.raw) == (status, "UNKNOWN" if ky is None else str(ky))


def test_balance_data_v11_is_one_balance_of_the_main_token():
    [balance] = parse(
        "balance_data",
        {
            "safeAddress": MAIN,
            "balance": {
                "timestamp": "2026-11-21T11:58:00Z",
                "balance": {"address": MAIN, "balance": "25.000"},
            },
        },
    )
    assert isinstance(balance, BalanceEvent)
    assert (balance.account, balance.asset, balance.total) == ("main", "EURe", Decimal("25.000"))
    assert balance.source_time == datetime(2026, 11, 21, 11, 58, tzinfo=UTC)
    assert balance.model_dump(mode="json")["total"] == "25.000"


def test_balance_data_v12_is_a_snapshot_of_every_token():
    [snapshot] = parse(
        "balance_data",
        {
            "mode": "initial",
            "safeAddress": MAIN,
            "balance": {
                "tokens": [
                    {"symbol": "EURe", "balance": "100", "decimals": 18, "value_eur": "100.00"},
                    {"symbol": "USDC", "balance": "0.5", "decimals": 6},
                ],
                "pending": [{"symbol": "EURe", "amount": "5"}],
            },
            "blockchainId": "421614",
        },
    )
    assert isinstance(snapshot, SnapshotEvent)
    assert (snapshot.account, snapshot.covers) == ("main", ("balance",))
    eure, usdc = snapshot.items
    assert (eure.asset, eure.total, usdc.asset, usdc.total) == (
        "EURe",
        Decimal(100),
        "USDC",
        Decimal("0.5"),
    )
    assert eure.details == {
        "decimals": 18,
        "value_eur": "100.00",
        "chain_id": "421614",
        "pending": [{"symbol": "EURe", "amount": "5"}],
    }
    assert "pending" not in usdc.details


def test_transaction_data_in_both_shapes_gives_the_same_transaction():
    [v11] = parse("transaction_data", {"safeAddress": MAIN, "transactions": {"data": [TX_V11]}})
    [v12] = parse(
        "transaction_data",
        {
            "mode": "initial",
            "safeAddress": MAIN,
            "crypto": {
                "blockchainId": 100,
                "total": 1,
                "page": 1,
                "limit": 50,
                "totalPages": 1,
                "data": [TX],
            },
        },
    )
    for tx in (v11, v12):
        assert isinstance(tx, TransactionEvent)
        assert (tx.account, tx.type, tx.direction, tx.amount, tx.tx_hash) == (
            "main",
            "onchain",
            "in",
            Decimal("100.0"),
            TX["hash"],
        )
        assert tx.source_time == datetime(2026, 11, 21, 11, tzinfo=UTC)
    assert v11.id == v12.id  # replayed in another shape: deduplicated
    assert (v11.asset, v12.asset) == (None, "EURe")
    assert v12.details["token_address"] == TX["tokenAddress"]


def test_balance_update_with_a_wei_string_and_address():
    [balance] = parse(
        "balance_update",
        {"address": MAIN, "balance": "1250000000000000000", "updated_at": "2026-11-21T11:59:00Z"},
    )
    assert (balance.account, balance.asset, balance.total) == ("main", "EURe", Decimal("1.25"))
    assert balance.details == {"raw_balance": "1250000000000000000", "decimals": 18}
    assert balance.source_time == datetime(2026, 11, 21, 11, 59, tzinfo=UTC)


def test_balance_update_with_a_decimal_string_and_safe_address():
    [balance] = parse("balance_update", {"safeAddress": MAIN, "balance": "25.50"})
    assert (balance.total, balance.details) == (Decimal("25.50"), {})


def test_balance_update_with_an_object_balance():
    [single] = parse(
        "balance_update", {"address": MAIN, "balance": {"address": MAIN, "balance": "3.0"}}
    )
    assert (single.asset, single.total) == ("EURe", Decimal("3.0"))
    [snapshot] = parse(
        "balance_update",
        {
            "safeAddress": MAIN,
            "balance": {"tokens": [{"symbol": "EURe", "balance": "7"}], "pending": []},
        },
    )
    assert isinstance(snapshot, SnapshotEvent)
    assert [(i.asset, i.total) for i in snapshot.items] == [("EURe", Decimal(7))]


def test_new_transaction_publishes_the_new_one_and_catches_up_with_the_recent_ones():
    older = {
        **TX,
        "hash": "0x" + "cd" * 32,
        "direction": "OUT",
        "from": MAIN,
        "to": OTHER,
        "value": "1",
    }
    events = parse(
        "new_transaction",
        {
            "address": MAIN,
            "newTransaction": TX,
            "recentTransactions": [TX, older],
            "transactionCount": 2,
            "historyLimit": 5,
        },
    )
    assert [(e.tx_hash, e.direction) for e in events] == [
        (TX["hash"], "in"),
        (older["hash"], "out"),
    ]
    [from_burst] = parse(
        "transaction_data", {"safeAddress": MAIN, "transactions": {"data": [TX_V11]}}
    )
    assert events[0].id == from_burst.id


@pytest.mark.parametrize("kind", ["user.iban.updated", "user_iban_updated"])
def test_iban_update_with_state(kind):
    [iban] = parse(
        kind,
        {
            "safeAddress": MAIN,
            "previousState": "UNKNOWN",
            "newState": "approved",
            "updatedAt": "2026-11-21T10:00:00Z",
        },
    )
    assert (iban.account, iban.topic, iban.status, iban.raw) == (
        "main",
        "iban",
        "approved",
        "approved",
    )
    assert iban.details == {"previous": "UNKNOWN"}
    assert iban.source_time == datetime(2026, 11, 21, 10, tzinfo=UTC)


@pytest.mark.parametrize("kind", ["user.ky.updated", "user_ky_updated"])
def test_kyc_update_with_values(kind):
    [kyc] = parse(
        kind, {"safeAddress": MAIN, "previousKyc": "1", "newKyc": "2", "updatedAt": STAMP}
    )
    assert (kyc.account, kyc.topic, kyc.status, kyc.raw, kyc.details) == (
        None,
        "kyc",
        "verified",
        "2",
        {"previous": "1"},
    )


@pytest.mark.parametrize(
    ("kind", "data"),
    [("user_iban_updated", {"iban": "changed"}), ("user_ky_updated", {"ky": "changed"})],
)
def test_signal_only_updates_yield_nothing_and_are_recognized(kind, data):
    assert parse(kind, data) == []
    assert is_signal_only(frame(kind, data))
    assert not is_signal_only(frame("user.ky.updated", {"newKyc": "2", "safeAddress": MAIN}))


def test_chainid_data():
    [chain] = parse("chainid_data", {"defaultChainId": 100, "supportedChainIds": [100]})
    assert (chain.account, chain.topic, chain.status) == (None, "chain", "100")
    assert chain.raw == {"defaultChainId": 100, "supportedChainIds": [100]}


@pytest.mark.parametrize(
    ("enabled", "pending", "status"),
    [(False, False, "disabled"), (True, False, "enabled"), (True, True, "pending")],
)
def test_recovery_data(enabled, pending, status):
    data = {
        "safeAddress": MAIN,
        "recoveryEnabled": enabled,
        "recoveryAddress": None,
        "delay": None,
        "pendingRecovery": pending,
        "canExecute": False,
        "executeAfter": None,
    }
    [recovery] = parse("recovery_data", data)
    assert (recovery.account, recovery.topic, recovery.status) == ("main", "recovery", status)
    assert recovery.raw["pendingRecovery"] is pending


def test_error_reply_is_a_notification():
    [note] = parse(
        "error",
        {"message": "Unknown request", "context": "get_balance", "error_code": "BAD_REQUEST"},
    )
    assert isinstance(note, NotificationEvent)
    assert (note.category, note.severity, note.title, note.message) == (
        "get_balance",
        "error",
        "BAD_REQUEST",
        "Unknown request",
    )


def test_unknown_type_is_published_raw():
    [raw] = parse("points_update", {"points": 5})
    assert isinstance(raw, RawEvent)
    assert (raw.name, raw.data) == ("points_update", frame("points_update", {"points": 5}))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"data": {}}, "not an IBEX FI message (no type)"),
        (frame("balance_data", [1]), "balance_data: data is list, not an object"),
        (
            frame("balance_update", {"address": MAIN, "balance": "lots"}),
            "balance is not a number: 'lots'",
        ),
        (frame("balance_update", {"balance": "1"}), "no Safe address"),
        (
            frame("transaction_data", {"safeAddress": MAIN, "crypto": {}}),
            "transaction_data without a transaction list",
        ),
        (
            frame("new_transaction", {"address": MAIN, "newTransaction": {"value": "1"}}),
            "a transaction without a hash",
        ),
    ],
)
def test_malformed_frames_raise_a_clear_error(bad, message):
    with pytest.raises(
        ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        parse_frame(NAMES, bad, NOW)


def test_http_balances_are_one_snapshot_per_safe():
    body = {
        "timestamp": STAMP,
        "crypto": {
            "100": {
                MAIN: {
                    "tokens": [
                        {"symbol": "EURe", "decimals": 18, "balance": "2.0", "value_eur": "2.00"}
                    ],
                    "pending": [],
                },
                OTHER: {"tokens": [], "pending": []},
            }
        },
        "fiat": {},
        "totals": {},
    }
    main, other = parse_balances_response(NAMES, body, NOW)
    assert (main.account, [(i.asset, i.total) for i in main.items]) == (
        "main",
        [("EURe", Decimal("2.0"))],
    )
    assert main.items[0].details == {"decimals": 18, "value_eur": "2.00", "chain_id": "100"}
    assert (other.account, other.items) == (OTHER_NAME, ())  # no tokens: its balances are cleared


def test_http_transactions_in_any_wrapping_match_the_websocket_ids():
    [ws] = parse("new_transaction", {"address": MAIN, "newTransaction": TX})
    for body in (
        [TX],
        {"data": [{**TX, "safeAddress": MAIN}]},
        {"transactions": [TX]},
        {"crypto": {"data": [TX]}},
    ):
        [tx] = parse_transactions_response(NAMES, body, NOW)
        assert (tx.id, tx.account) == (ws.id, "main")


def test_http_user_plain_or_wrapped():
    body = {"id": "u1", "ky": "0", "signers": []}
    assert parse_user(NAMES, body, NOW)[0].status == "not_started"
    assert parse_user(NAMES, {"data": body}, NOW)[0].status == "not_started"


def test_two_transfers_of_one_multisend_are_two_events():
    """v1.2 ``newTransaction`` carries no logIndex: the token and amount tell transfers apart."""
    second_token = {**TX, "tokenAddress": "0x" + "e1" * 20, "tokenSymbol": "USDC"}  # same value
    a = parse("new_transaction", {"address": MAIN, "newTransaction": TX})
    b = parse("new_transaction", {"address": MAIN, "newTransaction": second_token})
    c = parse("new_transaction", {"address": MAIN, "newTransaction": {**TX, "value": "7"}})
    assert len({a[0].id, b[0].id, c[0].id}) == 3
    assert {a[0].tx_hash, b[0].tx_hash, c[0].tx_hash} == {TX["hash"]}
    # with a log index, that alone tells them apart (and a replay keeps its id)
    logged = parse("new_transaction", {"address": MAIN, "newTransaction": {**TX, "logIndex": 4}})
    again = parse("new_transaction", {"address": MAIN, "newTransaction": {**TX, "logIndex": 4}})
    assert logged[0].id == again[0].id != a[0].id


def test_safe_without_alias_is_a_short_hash_unless_opted_in():
    [balance] = parse("balance_update", {"address": OTHER, "balance": "5"})
    assert balance.account == OTHER_NAME
    assert OTHER_NAME.startswith("safe-") and len(OTHER_NAME) == 13
    assert OTHER[2:].lower() not in balance.model_dump_json()
    opted = Naming("ibex", {}, publish_addresses=True)
    [balance] = parse_frame(opted, frame("balance_update", {"address": OTHER, "balance": "5"}), NOW)
    assert balance.account == OTHER.lower()


def test_uint256_base_units_stay_exact():
    wei = "123456789012345678901234567890123"  # 33 digits: beyond Decimal's default 28
    [balance] = parse("balance_update", {"address": MAIN, "balance": wei})
    assert format(balance.total, "f") == "123456789012345.678901234567890123"
    big = str(2**256 - 1)
    [balance] = parse("balance_update", {"address": MAIN, "balance": big})
    assert format(balance.total, "f").replace(".", "") == big
    [balance] = parse("balance_update", {"address": MAIN, "balance": "1" + "0" * 30})
    assert format(balance.total, "f") == "1000000000000"


def test_one_chain_snapshot_leaves_the_other_chains_balances():
    def chain(number, amount):
        return parse(
            "balance_data",
            {"safeAddress": MAIN, "blockchainId": number,
             "balance": {"tokens": [{"symbol": "EURe", "balance": amount}], "pending": []}},
        )[0]  # fmt: skip

    first = chain("100", "1")
    assert (first.scope, [i.asset for i in first.items]) == ({"chain_id": "100"}, ["EURe"])
    second = chain("421614", "2")  # the Safe is on two chains: one balance per chain
    assert (second.scope, [i.asset for i in second.items]) == (
        {"chain_id": "421614"},
        ["EURe@421614"],
    )
    assert [i.asset for i in chain("100", "1").items] == ["EURe@100"]
