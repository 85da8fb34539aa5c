"""IBEX FI frames and HTTP bodies → normalized events. Pure: no I/O, no clock, no state.

Both generations are accepted: v1.1 event names (``user.iban.updated``) and payload shapes, and
the v1.2 ones (``user_iban_updated``, ``balance.tokens``, ``crypto.data``). The signal-only v1.2
updates (``{"iban": "changed"}``) yield nothing here: the provider re-reads the user over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import JsonValue

from bridge.api import (
    AccountStatusEvent,
    AnyEvent,
    BalanceEvent,
    NotificationEvent,
    RawEvent,
    SnapshotEvent,
    TransactionEvent,
    stable_id,
    to_json,
    utc_time,
)

KYC = {"0": "not_started", "1": "pending", "2": "verified"}
"""The raw ``ky`` values and their names; anything else is ``unknown`` (raw value kept)."""

IBAN_STATES = {"approved", "pending", "rejected"}

SIGNAL_ONLY = {"iban", "ky"}
"""Keys of the v1.2 updates that only say "changed"."""


@dataclass(frozen=True, slots=True)
class Naming:
    """What parsing needs from the settings: names and the default token."""

    instance: str
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Lower-case Safe address → alias."""
    default_asset: str = "EURe"
    default_decimals: int = 18
    publish_addresses: bool = False
    """Safes without an alias under their full address (else ``safe-<short hash>``)."""
    chains: dict[str, set[str]] = field(default_factory=dict)
    """Account → the chains its balances were seen on (learned; balances per chain once a
    Safe holds tokens on more than one)."""

    def safe(self, address: Any) -> str | None:
        """The topic name of a Safe: its alias, else a short stable hash of its address (the
        address itself only when ``publish_addresses``)."""
        if not isinstance(address, str) or not address:
            return None
        key = address.lower()
        if key in self.aliases:
            return self.aliases[key]
        return key if self.publish_addresses else f"safe-{stable_id('safe', key)[:8]}"

    def learn_chains(self, account: str, chains: Iterable[str]) -> bool:
        """Remember the chains of an account; True when it has more than one."""
        known = self.chains.setdefault(account, set())
        known.update(chains)
        return len(known) > 1


def is_signal_only(frame: Any) -> bool:
    """A v1.2 ``user_iban_updated`` / ``user_ky_updated`` that carries no state."""
    data = frame.get("data") if isinstance(frame, dict) else None
    return (
        isinstance(data, dict)
        and frame.get("type") in ("user_iban_updated", "user_ky_updated")
        and set(data) <= SIGNAL_ONLY
    )


def parse_frame(naming: Naming, frame: Any, received_at: datetime) -> list[AnyEvent]:
    """One WebSocket message ``{"type", "data", "timestamp"}`` → events."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("not an IBEX FI message (no type)")
    kind: str = frame["type"]
    data = frame.get("data")
    when = _time(frame.get("timestamp"))
    p = _Parser(naming, received_at, when)
    handler = _HANDLERS.get(kind)
    if handler is None:
        return [p.raw(kind, frame)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{kind}: data is {type(data).__name__}, not an object")
    return handler(p, data)


def parse_balances_response(naming: Naming, body: Any, received_at: datetime) -> list[AnyEvent]:
    """``GET /v1.2/users/me/balances``: one snapshot per Safe, every chain's tokens together."""
    if not isinstance(body, dict) or not isinstance(body.get("crypto"), dict):
        raise ValueError("balances response without a crypto object")
    p = _Parser(naming, received_at, _time(body.get("timestamp")))
    per_safe: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for chain, safes in body["crypto"].items():
        if not isinstance(safes, dict):
            raise ValueError(f"balances of chain {chain}: not an object")
        for address, holdings in safes.items():
            tokens = holdings.get("tokens") if isinstance(holdings, dict) else None
            if not isinstance(tokens, list):
                raise ValueError(f"balances of {address}: no tokens list")
            per_safe.setdefault(address, []).extend(
                (chain, {**token, "pending": holdings.get("pending") or []}) for token in tokens
            )
    return [p.token_snapshot(address, entries) for address, entries in per_safe.items()]


def parse_transactions_response(naming: Naming, body: Any, received_at: datetime) -> list[AnyEvent]:
    """``GET /v1.2/users/me/transactions``: a list, or an object holding one."""
    p = _Parser(naming, received_at, None)
    return list(p.transactions(_transaction_list(body), None))


def parse_user(naming: Naming, body: Any, received_at: datetime) -> list[AnyEvent]:
    """``GET /v1.2/users/me`` (the ``user_data`` payload, possibly wrapped in ``data``)."""
    if isinstance(body, dict) and isinstance(body.get("data"), dict) and "ky" not in body:
        body = body["data"]
    if not isinstance(body, dict):
        raise ValueError("user response is not an object")
    return _Parser(naming, received_at, None).user(body)


class _Parser:
    """Builds the events of one frame (the shared fields in one place)."""

    def __init__(self, naming: Naming, received_at: datetime, when: datetime | None) -> None:
        self.n = naming
        self.received_at = received_at
        self.when = when

    def _common(self, account: str | None, when: datetime | None = None) -> dict[str, Any]:
        return {
            "provider": self.n.instance,
            "account": account,
            "source_time": when or self.when,
            "received_at": self.received_at,
        }

    def raw(self, name: str, frame: Any) -> RawEvent:
        stamp = self.when or self.received_at
        return RawEvent(
            id=stable_id(self.n.instance, "raw", name, stamp.isoformat(), repr(frame)),
            name=name,
            data=to_json(frame),
            **self._common(None),
        )

    def status(
        self,
        account: str | None,
        topic: str,
        status: str,
        raw: JsonValue,
        details: dict[str, JsonValue] | None = None,
    ) -> AccountStatusEvent:
        return AccountStatusEvent(
            id=stable_id(self.n.instance, account, topic, status, self.when),
            topic=topic,
            status=status,
            raw=raw,
            details=details or {},
            **self._common(account),
        )

    # --- balances -------------------------------------------------------------------------

    def balance(
        self,
        account: str,
        asset: str,
        total: Decimal,
        when: datetime | None,
        details: dict[str, JsonValue],
    ) -> BalanceEvent:
        return BalanceEvent(
            id=stable_id(self.n.instance, account, asset, total, when),
            asset=asset,
            total=total,
            details=details,
            **self._common(account, when),
        )

    def token_snapshot(
        self, address: Any, entries: Iterable[tuple[Any, dict[str, Any]]]
    ) -> SnapshotEvent:
        """All tokens of one Safe (on one chain, or all): balances not in it any more are cleared.

        A snapshot of one chain covers that chain's balances only (``scope``). Once a Safe is
        seen on several chains its balances are per chain: asset ``EURe@100``, topic
        ``balance/eure-100``, so one chain's balance never overwrites another's.
        """
        account = self._account(address)
        entries = list(entries)
        chains = {str(chain) for chain, _ in entries if chain is not None}
        per_chain = self.n.learn_chains(account, chains)
        items = []
        for chain, token in entries:
            symbol = token.get("symbol")
            if not isinstance(symbol, str) or not symbol:
                raise ValueError(f"a token of {address} has no symbol")
            details: dict[str, JsonValue] = {
                k: to_json(token[k]) for k in ("decimals", "value_eur", "address") if k in token
            }
            if chain is not None:
                details["chain_id"] = str(chain)
            pending = [to_json(x) for x in token.get("pending") or [] if _same_token(x, symbol)]
            if pending:
                details["pending"] = pending
            total = _amount(token.get("balance"), f"{symbol} balance")
            asset = f"{symbol}@{chain}" if per_chain and chain is not None else symbol
            items.append(self.balance(account, asset, total, self.when, details))
        scope = {"chain_id": next(iter(chains))} if len(chains) == 1 else {}
        return SnapshotEvent(
            id=stable_id(self.n.instance, account, "balances", self.when, len(items), scope),
            covers=("balance",),
            scope=scope,
            items=tuple(items),
            **self._common(account),
        )

    def balances(
        self, address: Any, value: Any, *, base_units: bool, chain: Any = None
    ) -> list[AnyEvent]:
        """A balance in any of its shapes: a string, ``{tokens}``, ``{address, balance}``,
        ``{timestamp, balance: {…}}``. An integer string in an update is in base units."""
        when = self.when
        while isinstance(value, dict) and "tokens" not in value and "balance" in value:
            address = value.get("address") or value.get("safeAddress") or address
            when = _time(value.get("timestamp")) or when
            value = value["balance"]
        if isinstance(value, dict) and isinstance(value.get("tokens"), list):
            pending = value.get("pending") or []
            chain = value.get("blockchainId", chain)
            entries = [(chain, {**t, "pending": pending}) for t in value["tokens"]]
            return [self.token_snapshot(address, entries)]
        if not isinstance(value, str | int):
            raise ValueError(f"balance of {address} is neither an amount nor a token list")
        account = self._account(address)
        details: dict[str, JsonValue] = {}
        text = str(value)
        if base_units and text.isdigit():
            total = _plain(Decimal(text).scaleb(-self.n.default_decimals))
            details = {"raw_balance": text, "decimals": self.n.default_decimals}
        else:
            total = _amount(text, "balance")
        return [self.balance(account, self.n.default_asset, total, when, details)]

    # --- transactions ---------------------------------------------------------------------

    def transactions(self, items: Iterable[Any], safe: Any) -> Iterable[TransactionEvent]:
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("a transaction is not an object")
            yield self.transaction(item, safe)

    def transaction(self, tx: dict[str, Any], safe: Any) -> TransactionEvent:
        tx_hash = tx.get("hash") or tx.get("transactionHash")
        if not isinstance(tx_hash, str) or not tx_hash:
            raise ValueError("a transaction without a hash")
        raw_direction = str(tx.get("direction", "")).lower()
        direction = raw_direction if raw_direction in ("in", "out") else None
        address = safe or tx.get("safeAddress") or tx.get("address")
        if not address:
            address = tx.get("to") if direction == "in" else tx.get("from")
        account = self._account(address)
        if direction is None and isinstance(address, str):
            direction = "in" if str(tx.get("to", "")).lower() == address.lower() else "out"
        value = tx.get("value")
        details: dict[str, JsonValue] = {
            key: to_json(tx[name])
            for key, name in (
                ("block_number", "blockNumber"),
                ("from", "from"),
                ("to", "to"),
                ("token_address", "tokenAddress"),
                ("token_type", "tokenType"),
                ("log_index", "logIndex"),
            )
            if tx.get(name) is not None
        }
        return TransactionEvent(
            id=self.transaction_id(tx, tx_hash, address, direction),
            type="onchain",
            status="confirmed",
            direction=direction,
            asset=tx.get("tokenSymbol"),
            amount=_amount(value, "transaction value") if value is not None else None,
            tx_hash=tx_hash,
            details=details,
            **self._common(account, _time(tx.get("timestamp")) or self.when),
        )

    def transaction_id(self, tx: dict[str, Any], tx_hash: str, address: Any, direction: Any) -> str:
        """What tells one transfer from another: the transaction, the Safe and direction, and
        the log index when the upstream gives it; v1.2's ``newTransaction`` does not, so then
        the token symbol, the amount and the counterparties: two transfers of one multisend
        (even of different tokens) stay two events. v1.1 lists name no token: they are of the
        main token (``default_asset``, as v1.1 balances), so a replay in either shape keeps
        its id."""
        parts: list[object] = [tx_hash.lower(), str(address).lower(), direction]
        if tx.get("logIndex") is not None:
            parts.append(f"log:{tx['logIndex']}")
        else:
            token = tx.get("tokenSymbol") or self.n.default_asset
            value = tx.get("value")
            amount = _amount(value, "transaction value").normalize() if value is not None else ""
            parts += [
                str(token or "").lower(),
                amount,
                str(tx.get("from") or "").lower(),
                str(tx.get("to") or "").lower(),
            ]
        return stable_id(self.n.instance, "tx", *parts)

    # --- the user -------------------------------------------------------------------------

    def kyc(self, raw: Any, details: dict[str, JsonValue]) -> AccountStatusEvent:
        value = str(raw) if raw is not None else "UNKNOWN"
        return self.status(None, "kyc", KYC.get(value, "unknown"), value, details)

    def user(self, data: dict[str, Any]) -> list[AnyEvent]:
        """KYC (the user's) and the IBAN status of each of the user's Safes."""
        details: dict[str, JsonValue] = {"user_id": to_json(data["id"])} if "id" in data else {}
        events: list[AnyEvent] = [self.kyc(data.get("ky"), details)]
        for signer in data.get("signers") or []:
            for safe in signer.get("safes") or [] if isinstance(signer, dict) else []:
                iban = safe.get("iban") if isinstance(safe, dict) else None
                account = self._account(safe.get("address") if isinstance(safe, dict) else None)
                if isinstance(iban, dict):
                    # only the chain: the IBAN and BIC strings are never published
                    events.append(
                        self.status(account, "iban", "approved", {"chainId": iban.get("chainId")})
                    )
                else:
                    events.append(self.status(account, "iban", "not_approved", None))
        return events

    def _account(self, address: Any) -> str:
        account = self.n.safe(address)
        if account is None:
            raise ValueError("no Safe address")
        return account


def _user_data(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    return p.user(data)


def _balance_data(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    address, chain = data.get("safeAddress"), data.get("blockchainId")
    return p.balances(address, data.get("balance"), base_units=False, chain=chain)


def _balance_update(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    p.when = _time(data.get("updated_at")) or p.when
    address = data.get("address") or data.get("safeAddress")
    return p.balances(address, data.get("balance"), base_units=True)


def _transaction_data(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    holder = data.get("crypto") or data.get("transactions") or {}
    items = holder.get("data") if isinstance(holder, dict) else holder
    if not isinstance(items, list):
        raise ValueError("transaction_data without a transaction list")
    return list(p.transactions(items, data.get("safeAddress")))


def _new_transaction(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    safe = data.get("address") or data.get("safeAddress")
    new = data.get("newTransaction")
    if not isinstance(new, dict):
        raise ValueError("new_transaction without newTransaction")
    recent = [tx for tx in data.get("recentTransactions") or [] if tx != new]
    return [p.transaction(new, safe), *p.transactions(recent, safe)]


def _iban_updated(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    if set(data) <= SIGNAL_ONLY:
        return []  # the provider re-reads the user over HTTP
    state = str(data.get("newState", "")).lower()
    account = p._account(data.get("safeAddress"))
    details: dict[str, JsonValue] = {"previous": to_json(data.get("previousState"))}
    p.when = _time(data.get("updatedAt")) or p.when
    status = state if state in IBAN_STATES else "unknown"
    return [p.status(account, "iban", status, to_json(data.get("newState")), details)]


def _kyc_updated(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    if set(data) <= SIGNAL_ONLY:
        return []  # the provider re-reads the user over HTTP
    p.when = _time(data.get("updatedAt")) or p.when
    return [p.kyc(data.get("newKyc"), {"previous": to_json(data.get("previousKyc"))})]


def _chain_data(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    default = data.get("defaultChainId")
    return [p.status(None, "chain", str(default), to_json(data))]


def _recovery_data(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    account = p._account(data.get("safeAddress"))
    if data.get("pendingRecovery"):
        status = "pending"
    elif data.get("recoveryEnabled"):
        status = "enabled"
    else:
        status = "disabled"
    raw = {k: to_json(v) for k, v in data.items() if k != "safeAddress"}
    return [p.status(account, "recovery", status, raw)]


def _connected(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    return []  # the link state says it (``connected``)


def _error(p: _Parser, data: dict[str, Any]) -> list[AnyEvent]:
    code = data.get("error_code")
    message = data.get("message")
    stamp = p.when or p.received_at
    return [
        NotificationEvent(
            id=stable_id(p.n.instance, "error", stamp.isoformat(), code, message),
            category=str(data.get("context") or "error"),
            severity="error",
            title=str(code) if code is not None else None,
            message=str(message) if message is not None else None,
            details={k: to_json(v) for k, v in data.items()},
            **p._common(None),
        )
    ]


_HANDLERS = {
    "auth_success": _connected,
    "connection_success": _connected,
    "auth_error": _error,
    "error": _error,
    "user_data": _user_data,
    "balance_data": _balance_data,
    "balance_update": _balance_update,
    "transaction_data": _transaction_data,
    "new_transaction": _new_transaction,
    "user.iban.updated": _iban_updated,
    "user_iban_updated": _iban_updated,
    "user.ky.updated": _kyc_updated,
    "user_ky_updated": _kyc_updated,
    "chainid_data": _chain_data,
    "recovery_data": _recovery_data,
}


def _transaction_list(body: Any) -> list[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("data", "transactions", "crypto"):
            inner = body.get(key)
            if isinstance(inner, list):
                return inner
            if isinstance(inner, dict):
                return _transaction_list(inner)
    raise ValueError("transactions response without a transaction list")


def _plain(amount: Decimal) -> Decimal:
    """Without the trailing zeros base units leave (``150.250000000000000000`` → ``150.25``)."""
    normal = amount.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal


def _same_token(pending: Any, symbol: str) -> bool:
    return isinstance(pending, dict) and pending.get("symbol") == symbol


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{what} is not a number: {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{what} is not a number: {value!r}")
    return amount


def _time(value: Any) -> datetime | None:
    """Aware UTC (ISO 8601, epoch s or ms); None when absent or unreadable."""
    try:
        return utc_time(value)
    except ValueError:
        return None
