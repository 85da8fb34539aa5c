"""The MQTT contract as data: every topic, the JSON Schema of every payload, an AsyncAPI document.

``fin2mqtt topics`` prints the topic table (the README holds exactly it, checked by a test) and
what the installed plugins add; ``fin2mqtt schemas DIR`` writes the JSON Schemas and the AsyncAPI
document (the repository's ``schemas/`` is that output, checked by a test).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from bridge import __version__
from bridge.model.events import AnyEvent, SnapshotEvent


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)
    schema_: Literal[1] = Field(default=1, alias="schema")
    """Version of the payload schema."""


class BridgeState(_Payload):
    """``<base>/bridge/state``: the bridge's availability (``offline`` is the last will)."""

    state: Literal["online", "offline"]


class BridgeInfo(_Payload):
    """``<base>/bridge/info``: version, plugins, provider instances, configuration."""

    version: str
    plugins: dict[str, str]
    """Provider type → version of its distribution."""
    providers: list[dict[str, str]]
    """``{"name", "type"}`` of each configured instance."""
    config: dict[str, JsonValue]
    """The configuration with secrets masked."""


class BridgeStats(_Payload):
    """``<base>/bridge/stats``: counters, every 30 s (``data`` of the ``stats`` response too)."""

    uptime_s: float
    published: int
    dropped_events: int
    duplicate_events: int
    restarts: int
    parse_errors: int
    providers: dict[str, dict[str, JsonValue]]
    """Per instance: ``restarts``, ``parse_errors``, ``link`` (overall), ``links`` (by account)."""


class Response(_Payload):
    """``<base>/bridge/response/<op>``: the answer to one request."""

    status: Literal["ok", "error"]
    data: JsonValue = None
    error: str | None = None
    transaction: JsonValue = None
    """The request's ``transaction``, as sent."""


class Removed(_Payload):
    """Published (not retained) on a state topic just before its retained clear."""

    state: Literal["removed"]
    reason: Literal["closed", "gone", "stale", "instance_removed", "removed"]
    """``closed`` (a position), ``gone`` (no longer in a snapshot), ``stale`` (not re-established
    after a restart), ``instance_removed`` (its instance left the configuration), ``removed``."""
    removed_at: datetime
    kind: str | None = None
    provider: str | None = None
    account: str | None = None


BRIDGE_PAYLOADS: dict[str, type[BaseModel]] = {
    "bridge_state": BridgeState,
    "bridge_info": BridgeInfo,
    "bridge_stats": BridgeStats,
    "response": Response,
    "removed": Removed,
}


def payload_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every payload kind: the events by ``kind``, then the bridge's."""
    out: dict[str, dict[str, Any]] = {}
    for model in get_args(AnyEvent):
        if model is SnapshotEvent:
            continue  # never published itself
        kind = model.model_fields["kind"].default
        out[kind] = model.model_json_schema(by_alias=True, mode="serialization")
    for name, bridge_model in BRIDGE_PAYLOADS.items():
        out[name] = bridge_model.model_json_schema(by_alias=True, mode="serialization")
    from bridge.runtime.health import health_schema  # the daemon's own report

    out["bridge_health"] = health_schema()
    return out


@dataclass(frozen=True, slots=True)
class TopicDoc:
    """One row of the topic reference."""

    topic: str
    retained: str
    qos: str
    schemas: tuple[str, ...]
    """Payload kinds (keys of ``payload_schemas``); empty for what clients publish."""
    payload: str


_STATE = ("removed",)
"""Every state topic may carry a removal notice just before its clear."""

TOPICS: tuple[TopicDoc, ...] = (
    TopicDoc("`<base>/bridge/state`", "yes", "1", ("bridge_state",),
             '`{"schema":1,"state":"online"}`; the broker publishes '
             '`{"schema":1,"state":"offline"}` '
             "(last will) when the bridge dies, and the bridge publishes it on a clean stop"),
    TopicDoc("`<base>/bridge/info`", "yes", "1", ("bridge_info",),
             "`version`, `plugins` (type → version), `providers`, `config` (secrets masked)"),
    TopicDoc("`<base>/bridge/stats`", "yes", "1", ("bridge_stats",),
             "counters, every 30 s: `published`, `outbox_events`, `outbox_bytes`, "
             "`dropped_events`, "
             "`duplicate_events`, `retained_topics`, `state_writes_failing` (why the state file "
             "cannot be written, or null), `mqtt_connects`, `restarts`, `parse_errors`, "
             "per provider `restarts`, `parse_errors`, `link` (the instance's link, else the worst "
             "of its accounts'), `links` (by account)"),
    TopicDoc("`<base>/bridge/health`", "yes", "1", ("bridge_health",),
             "the daemon's health (see [Is it working?](#is-it-working-health-metrics-status-logs)"
             "), every `health.interval` s and after link changes"),
    TopicDoc("`<base>/bridge/<node_id>/…`", "yes", "1",
             ("bridge_state", "bridge_info", "bridge_stats", "bridge_health", "response"),
             "with `node_id` set (several daemons): `state`, `info`, `stats`, `health`, "
             "`request/<op>`, `response/<op>` of that daemon, instead of `<base>/bridge/…`"),
    TopicDoc("`<base>/bridge/request/<op>`", "—", "—", (),
             'you publish a JSON object (`{}` or empty will do), optionally with `"transaction"`; '
             "ops: `health`, `info`, `stats`, `resync`, `restart`, `discovery/refresh`, `action`"),
    TopicDoc("`<base>/bridge/request/resync`", "—", "—", (),
             '`{"instance": "<instance>"}`: that instance\'s links reconnect now (and take their '
             "snapshot again); `restart` does it for every instance (the bridge's Restart button)"),
    TopicDoc("`<base>/bridge/request/action`", "—", "—", (),
             '`{"instance": "<instance>", "action": "<name>", "account": "<account>", '
             '"params": {…}, "transaction": any}` to run a provider action (`account` only for '
             "per-account actions, `params` and `transaction` optional); Home Assistant's action "
             "buttons publish exactly this"),
    TopicDoc("`<base>/bridge/response/<op>`", "no", "1", ("response",),
             '`{"schema":1,"status":"ok"\\|"error","data":…,"error":…,"transaction":…}`; '
             "`health` data: `healthy`, `problems`, `links`, `report` (the `bridge/health` "
             "payload); `resync`: `instance`, "
             "`connections`; an unknown op, a payload that is not JSON or an unknown instance is "
             "an `error` answer"),
    TopicDoc("`<base>/bridge/response/action`", "no", "1", ("response",),
             'the same envelope; `data`: `{"instance","action","account","result"}` with what the '
             "action returned; `error`: why it was not run or failed (unknown instance, action or "
             "account, not valid JSON, already running, timed out, the upstream's refusal)"),
    TopicDoc("`<base>/<instance>/link`", "yes", "1", ("link", *_STATE),
             "`state`: `connecting` / `connected` / `fallback` / `auth_failed` / `disconnected`, "
             "`since`, `error`, `details`; `fallback`: the live link is down (`error` says why) "
             "but a fallback (HTTP polling) keeps the data fresh"),
    TopicDoc("`<base>/<instance>/<account>/link`", "yes", "1", ("link", *_STATE),
             "same, for providers with one link per account"),
    TopicDoc("`<base>/<instance>/<account>/balance/<asset>`", "yes", "1", ("balance", *_STATE),
             "`asset`, `total`, `available`, `locked`"),
    TopicDoc("`<base>/<instance>/<account>/position/<symbol>`", "yes", "1",
             ("position", *_STATE),
             "`symbol`, `direction` (`long`/`short`), `quantity` (the size, never negative), "
             "`entry_price`, `mark_price`, `notional`, `unrealized_pnl`; when the position closes: "
             '`{"schema":1,"state":"removed","reason":"closed",…}` (not retained), then the '
             "retained clear (an empty message); Axisor keys it per position "
             "(`<symbol>-<position id>`, risk in `details`)"),
    TopicDoc("`<base>/<instance>/<account>/status/<topic>`", "yes", "1",
             ("account_status", *_STATE),
             "`topic` (`kyc`, `iban`, `sync`, …), `status` (normalized), `raw` (as sent "
             "upstream); Vezgo's `sync`: `ok` / `retrying` / `failing` / `reconnect_required` / "
             "`contact_vendor` / `unknown_error` with `details.last_success`, `last_error`, "
             "`consecutive_failures`, `needs_attention`"),
    TopicDoc("`<base>/<instance>/status/<topic>`", "yes", "1", ("account_status", *_STATE),
             "the same for a platform rather than an account, e.g. Axisor `maintenance`, "
             "`service_<service>`, `rooms`"),
    TopicDoc("`<base>/<instance>/market/<market>/price`", "yes", "1",
             ("market_price", *_STATE), "`market`, `price`, `bid`, `ask`"),
    TopicDoc("`<base>/<instance>/market/<market>/orderbook`", "yes", "1",
             ("order_book", *_STATE), '`market`, `bids`, `asks` (`[{"price","size"}]`)'),
    TopicDoc("`<base>/<instance>/<account>/transaction`", "no", "1¹", ("transaction",),
             "`type` (deposit, withdrawal, transfer, funding, …), `status`, `direction`, `asset`, "
             "`amount`, `tx_hash`, `event_type`"),
    TopicDoc("`<base>/<instance>/<account>/order`", "no", "1¹", ("order",),
             "`order_id`, `status`, `symbol`, `side`, `order_type`, `price`, `quantity`, "
             "`filled_quantity`, `remaining_quantity`, `event_type`"),
    TopicDoc("`<base>/<instance>/<account>/trade`", "no", "1¹", ("trade",),
             "`status` (`filled`/`rejected`), `order_id`, `trade_id`, `symbol`, `side`, `price`, "
             "`quantity`, `fee`, `realized_pnl`, `event_type`"),
    TopicDoc("`<base>/<instance>/<account>/notification`", "no", "1¹", ("notification",),
             "`category`, `severity`, `title`, `message`, `event_type` (the severity)"),
    TopicDoc("`<base>/<instance>/<account>/status/open_orders`", "yes", "1",
             ("account_status", *_STATE),
             "`status`: how many orders are open, `raw`: them (`order_id`, `status`, `market`, "
             "`side`, `price`, `quantity`, `filled_quantity`) — Vezta"),
    TopicDoc("`<base>/<instance>/trade`, `<base>/<instance>/notification`", "no", "1¹",
             ("trade", "notification"),
             "events of no account: a market's public trades, market-wide signals (Vezta "
             "`market:trades`, `monitor:signals`)"),
    TopicDoc("`<base>/<instance>/<account>/raw`", "no", "1¹", ("raw",),
             "`name`, `data`, `error`: an upstream frame no model covers (or that failed to "
             "parse), passed through rather than dropped"),
)  # fmt: skip

START = "<!-- topic-reference: generated by `fin2mqtt topics --table`, do not edit -->"
END = "<!-- topic-reference: end -->"


def topics_table() -> str:
    """The README's topic table, between its markers."""
    lines = [
        START,
        "",
        "| topic | retained | QoS | schema | payload |",
        "|---|---|---|---|---|",
    ]
    for row in TOPICS:
        schemas = ", ".join(f"`{s}`" for s in row.schemas) or "—"
        lines.append(f"| {row.topic} | {row.retained} | {row.qos} | {schemas} | {row.payload} |")
    return "\n".join([*lines, "", END])


def asyncapi() -> dict[str, Any]:
    """An AsyncAPI 2.6 document of the topic tree (``<base>`` = ``fin2mqtt``)."""
    channels: dict[str, Any] = {}
    for row in TOPICS:
        for topic in (t.strip().strip("`") for t in row.topic.split(",")):
            name = topic.replace("<base>", "fin2mqtt").replace("<", "{").replace(">", "}")
            params = {p.split("}")[0]: {"schema": {"type": "string"}} for p in name.split("{")[1:]}
            operation = "publish" if not row.schemas else "subscribe"
            messages = [{"$ref": f"#/components/messages/{s}"} for s in row.schemas]
            message: dict[str, Any] = {"payload": {"type": "object"}}
            if len(messages) == 1:
                message = messages[0]
            elif messages:
                message = {"oneOf": messages}
            channel: dict[str, Any] = {
                "description": row.payload,
                operation: {
                    "message": message,
                    "bindings": {
                        "mqtt": {"qos": 1, "retain": row.retained == "yes"},
                    },
                },
            }
            if params:
                channel["parameters"] = params
            channels[name] = channel
    schemas = payload_schemas()
    return {
        "asyncapi": "2.6.0",
        "info": {
            "title": "fin2mqtt",
            "version": __version__,
            "description": "Finance platforms on MQTT: retained state, events, requests.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "components": {
            "messages": {
                name: {"name": name, "payload": {"$ref": f"#/components/schemas/{name}"}}
                for name in schemas
            },
            "schemas": schemas,
        },
    }


def write_schemas(directory: Path) -> list[Path]:
    """Write ``<kind>.schema.json`` for every payload kind and ``asyncapi.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    documents = {f"{k}.schema.json": v for k, v in payload_schemas().items()}
    documents["asyncapi.json"] = asyncapi()
    for name, document in documents.items():
        path = directory / name
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        written.append(path)
    return written
