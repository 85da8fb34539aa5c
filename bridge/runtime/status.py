"""``fin2mqtt status``: every daemon's ``bridge/health`` from the broker, judged and summarised.

Reads the retained ``<base>/bridge/health`` and ``<base>/bridge/state`` of the single-node
layout and ``<base>/bridge/<node_id>/…`` of every node, with the broker settings of the
configuration. Exit code: 0 every daemon healthy, 1 something unhealthy or no daemon found,
3 the broker unreachable.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt
from pydantic import ValidationError

from bridge.config.settings import MqttSettings
from bridge.mqtt.topics import RESERVED_NODES
from bridge.runtime.health import HealthPayload, problems

EXIT_UNHEALTHY = 1
EXIT_UNREACHABLE = 3


@dataclass
class Node:
    """What the broker holds of one daemon."""

    name: str
    online: bool | None = None
    health: HealthPayload | None = None
    invalid: str | None = None
    problems: list[str] = field(default_factory=list)


def _node_of(base: str, topic: str) -> tuple[str, str] | None:
    """``(node, leaf)`` of a bridge topic; the node of the single-node layout is ``""``."""
    levels = topic.removeprefix(f"{base}/bridge/").split("/")
    if len(levels) == 1:
        return "", levels[0]
    if len(levels) == 2 and levels[0] not in RESERVED_NODES:
        return levels[0], levels[1]
    return None


async def collect(mqtt: MqttSettings, quiet: float = 0.5, timeout: float = 5.0) -> dict[str, Node]:
    """The retained bridge state and health of every daemon under the base topic."""
    base = mqtt.base_topic
    tls = None
    if mqtt.tls.enabled:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(mqtt.tls.ca_file) if mqtt.tls.ca_file else None,
            certfile=str(mqtt.tls.cert_file) if mqtt.tls.cert_file else None,
            keyfile=str(mqtt.tls.key_file) if mqtt.tls.key_file else None,
        )
    nodes: dict[str, Node] = {}
    async with aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        tls_params=tls,
        tls_insecure=mqtt.tls.insecure if mqtt.tls.enabled else None,
    ) as client:
        for leaf in ("state", "health"):
            await client.subscribe(f"{base}/bridge/{leaf}", qos=1)
            await client.subscribe(f"{base}/bridge/+/{leaf}", qos=1)
        deadline = time.monotonic() + timeout
        messages = aiter(client.messages)
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), min(quiet, left))
            except TimeoutError:
                break
            where = _node_of(base, str(message.topic))
            if where is None or not message.retain:
                continue
            name, leaf = where
            node = nodes.setdefault(name, Node(name))
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if leaf == "state":
                try:
                    node.online = json.loads(payload).get("state") == "online"
                except (ValueError, AttributeError):
                    node.online = None
            else:
                try:
                    node.health = HealthPayload.model_validate_json(payload)
                except ValidationError as exc:
                    node.invalid = f"{exc.error_count()} problem(s) in its health payload"
    return nodes


def judge(nodes: dict[str, Node], grace: float, now: datetime | None = None) -> bool:
    """Fill in every node's problems; True when all are healthy."""
    now = now or datetime.now(UTC)
    for node in nodes.values():
        if node.health is None:
            node.problems = ["bridge offline"] if node.online is False else []
            node.problems.append(node.invalid or "no health report (an older fin2mqtt?)")
        else:
            node.problems = problems(node.health, online=node.online, now=now, grace=grace)
    return bool(nodes) and all(not n.problems for n in nodes.values())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.0f} TiB"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def render(nodes: dict[str, Node], base: str, now: datetime | None = None) -> str:
    """The readable summary."""
    now = now or datetime.now(UTC)
    if not nodes:
        return f"no fin2mqtt daemon found under {base}/bridge (none ever connected?)"
    lines: list[str] = []
    for name in sorted(nodes):
        node = nodes[name]
        label = f"node '{name}'" if name else "fin2mqtt"
        state = {True: "online", False: "OFFLINE", None: "state unknown"}[node.online]
        h = node.health
        verdict = "healthy" if not node.problems else "UNHEALTHY"
        if h is None:
            lines.append(f"{label}: {state}, {verdict}")
        else:
            shard = f", shard {h.shard}" if h.shard else ""
            age = (now - h.time).total_seconds()
            lines.append(
                f"{label}: {state}, {verdict} (fin2mqtt {h.version}{shard}, up "
                f"{_duration(h.uptime_s)}, report {age:.0f} s old)"
            )
            o = h.outbox
            state_file = (
                "state file failing"
                if h.state_file.failing
                else ("state file ok" if h.state_file.persistent else "no state file")
            )
            lines.append(
                f"  broker {'connected' if h.broker.connected else 'DISCONNECTED'}, outbox "
                f"{o.events} event(s), {o.dropped} dropped, {state_file}, loop lag "
                f"{h.loop_lag_s * 1000:.0f} ms, memory {_size(h.memory_rss_bytes)}"
            )
            for instance, ih in sorted(h.providers.items()):
                lines.append(
                    f"  {instance} ({ih.type}): {ih.events_in} event(s) in, {ih.events_out} out, "
                    f"{ih.parse_errors} parse error(s)"
                )
                if not ih.connections:
                    lines.append("    no connection on this node")
                for conn in ih.connections:
                    since = (
                        f" for {_duration((now - conn.since).total_seconds())}"
                        if conn.since
                        else ""
                    )
                    last = (
                        f", last event {_duration((now - conn.last_event).total_seconds())} ago"
                        if conn.last_event
                        else ""
                    )
                    error = f" ({conn.error})" if conn.error and conn.state != "connected" else ""
                    lines.append(
                        f"    {conn.account or '(instance)'}: {conn.state or 'not started'}"
                        f"{since}{error}, {conn.events_in} in, {conn.reconnects} reconnect(s)"
                        f"{last}"
                    )
        lines.extend(f"  problem: {p}" for p in node.problems)
    return "\n".join(lines)


async def status(mqtt: MqttSettings, grace: float, wait: float) -> tuple[int, str]:
    """The exit code and the summary."""
    try:
        nodes = await collect(mqtt, quiet=wait)
    except aiomqtt.MqttError as exc:
        return EXIT_UNREACHABLE, f"MQTT broker {mqtt.host}:{mqtt.port} unreachable: {exc}"
    healthy = judge(nodes, grace)
    return (0 if healthy else EXIT_UNHEALTHY), render(nodes, mqtt.base_topic)
