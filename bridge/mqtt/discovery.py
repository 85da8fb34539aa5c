"""Home Assistant MQTT discovery configs, generated from entity specs.

Devices: one "bridge" device (``fin2mqtt bridge``: connectivity, version, counters, a restart
button) and one device per provider account (or instance, for data of no account), named from the
provider's display name and the alias ("Hibachi main"), each ``via_device`` the bridge. Entity ids
follow from device and entity name (``sensor.hibachi_main_usd_balance``); ``default_entity_id``
says the same for Home Assistant 2025.10+, where ``object_id`` is deprecated. ``unique_id``s and
config topics are stable across releases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge.model.entities import EntitySpec, human
from bridge.model.events import AnyEvent
from bridge.mqtt.topics import TopicMap, slug
from bridge.plugin.actions import Action

PROJECT_URL = "https://github.com/fin2mqtt/fin2mqtt"
MAX_PRECISION = 10

_NOT_ID = re.compile(r"[^a-z0-9]+")
_PERPETUAL = re.compile(r"[-_ ](perp|perpetual|p|swap)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What discovery needs to know about one provider instance."""

    name: str
    type: str
    entities: Sequence[EntitySpec]
    actions: Sequence[Action] = ()
    title: str = ""
    """The provider's display name ("Hibachi"); the type, capitalized, when empty."""


@dataclass(frozen=True, slots=True)
class Config:
    """One discovery config: where it goes and what it says."""

    topic: str
    payload: dict[str, Any]

    def encode(self) -> bytes:
        """The retained payload."""
        return json.dumps(self.payload, separators=(",", ":")).encode()


def entity_id_part(text: str) -> str:
    """What Home Assistant makes of a name in an entity id: ``Hibachi main`` → ``hibachi_main``."""
    return _NOT_ID.sub("_", text.lower()).strip("_")


def unique_words(*parts: str | None) -> str:
    """The parts joined by spaces, each word once (case-insensitive): no "hibachi hibachi"."""
    seen: set[str] = set()
    words: list[str] = []
    for part in parts:
        for word in (part or "").split():
            if word.lower() not in seen:
                seen.add(word.lower())
                words.append(word)
    return " ".join(words)


def split_pair(symbol: str) -> tuple[str, str] | None:
    """Base and quote asset of a pair: ``ETH/USDT-P`` → ``("ETH", "USDT")``; None when unclear."""
    pair = _PERPETUAL.sub("", symbol) if "/" in symbol or symbol.count("-") > 1 else symbol
    for separator in ("/", "-", "_"):
        parts = pair.split(separator)
        if len(parts) == 2 and all(p.isalpha() and len(p) <= 10 for p in parts):
            return parts[0], parts[1]
    return None


class Discovery:
    """Builds the retained discovery configs for the bridge, its providers and their topics."""

    def __init__(self, prefix: str, topics: TopicMap, version: str) -> None:
        self.prefix = prefix
        self.topics = topics
        self.version = version
        self._providers: dict[str, ProviderInfo] = {}
        base = slug(topics.base)
        self._id_root = "fin2mqtt" if base == "fin2mqtt" else f"fin2mqtt_{base}"
        self.bridge_name = unique_words("fin2mqtt", topics.base, "bridge")

    def register(self, info: ProviderInfo) -> None:
        """Declare a provider instance and the entities it offers."""
        self._providers[info.name] = info

    def has_events(self, provider: str, kind: str) -> bool:
        """True when ``provider`` declares an ``event`` entity for ``kind``."""
        info = self._providers.get(provider)
        return info is not None and any(
            s.component == "event" and s.kind == kind for s in info.entities
        )

    # devices

    def bridge_device(self) -> dict[str, Any]:
        """The bridge's own device, which every account device is ``via_device`` of."""
        return {
            "identifiers": [f"{self._id_root}_bridge"],
            "name": self.bridge_name,
            "manufacturer": "fin2mqtt",
            "model": "Bridge",
            "sw_version": self.version,
        }

    def device_name(self, info: ProviderInfo, account: str | None) -> str:
        """ "Hibachi main": display name, instance (unless it only repeats the type), account."""
        title = info.title or info.type.capitalize()
        instance = None if slug(info.name) == slug(info.type) else info.name
        return unique_words(title, instance, account)

    def _device(self, info: ProviderInfo, account: str | None) -> dict[str, Any]:
        """The Home Assistant device of an instance (``account`` None) or of one account."""
        parts = [self._id_root, slug(info.name)]
        if account is not None:
            parts.append(slug(account))
        return {
            "identifiers": ["_".join(parts)],
            "name": self.device_name(info, account),
            "manufacturer": "fin2mqtt",
            "model": info.title or info.type.capitalize(),
            "sw_version": self.version,
            "via_device": f"{self._id_root}_bridge",
        }

    def _origin(self) -> dict[str, str]:
        return {"name": "fin2mqtt", "sw_version": self.version, "support_url": PROJECT_URL}

    def _bridge_availability(self) -> dict[str, str]:
        return {
            "topic": self.topics.bridge_state,
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    def _named(
        self,
        config: dict[str, Any],
        component: str,
        device: dict[str, Any],
        node: str,
        object_id: str,
    ) -> Config:
        """Add device, origin, ids; the config topic. (Every MQTT entity is named after its
        device since Home Assistant 2023.8: ``has_entity_name`` is no discovery key.)"""
        config["device"] = device
        config["origin"] = self._origin()
        config["unique_id"] = f"{node}_{object_id}"
        entity = entity_id_part(f"{device['name']} {config['name']}")
        config["default_entity_id"] = f"{component}.{entity}"
        return Config(f"{self.prefix}/{component}/{node}/{object_id}/config", config)

    # the bridge

    def bridge_configs(self) -> list[Config]:
        """The bridge device's entities: connection state, version, counters, restart."""
        device = self.bridge_device()
        node = slug(f"{self.topics.base}_bridge")
        stats = self.topics.bridge_stats
        online = [self._bridge_availability()]
        out = [
            self._named(
                {
                    "name": "Connection state",
                    "state_topic": self.topics.bridge_state,
                    "value_template": "{{ value_json.state }}",
                    "payload_on": "online",
                    "payload_off": "offline",
                    "device_class": "connectivity",
                    "entity_category": "diagnostic",
                },
                "binary_sensor",
                device,
                node,
                "connection_state",
            ),
            self._named(
                {
                    "name": "Version",
                    "state_topic": self.topics.bridge_info,
                    "value_template": "{{ value_json.version }}",
                    "json_attributes_topic": self.topics.bridge_info,
                    "json_attributes_template": "{{ {'plugins': value_json.plugins} | tojson }}",
                    "availability": online,
                    "icon": "mdi:information-outline",
                    "entity_category": "diagnostic",
                },
                "sensor",
                device,
                node,
                "version",
            ),
        ]
        counters = (
            ("published", "Events published", "published", "messages", "mdi:upload"),
            ("dropped", "Events dropped", "dropped_events", "events", "mdi:delete-alert"),
            ("restarts", "Restarts", "restarts", "restarts", "mdi:restart-alert"),
            ("parse_errors", "Parse errors", "parse_errors", "errors", "mdi:alert-circle-outline"),
        )
        for key, name, field, unit, icon in counters:
            out.append(
                self._named(
                    {
                        "name": name,
                        "state_topic": stats,
                        "value_template": f"{{{{ value_json.{field} }}}}",
                        "state_class": "total_increasing",
                        "unit_of_measurement": unit,
                        "availability": online,
                        "icon": icon,
                        "entity_category": "diagnostic",
                    },
                    "sensor",
                    device,
                    node,
                    key,
                )
            )
        out.append(
            self._named(
                {
                    "name": "Restart",
                    "command_topic": self.topics.request("restart"),
                    "payload_press": "{}",
                    "qos": 1,
                    "retain": False,
                    "availability": online,
                    "device_class": "restart",
                    "entity_category": "config",
                },
                "button",
                device,
                node,
                "restart",
            )
        )
        return out

    # provider actions

    def action_configs(self, instance: str) -> list[tuple[Config, str | None]]:
        """A button per action (and account) of ``instance`` with its account: pressing it
        publishes the action request to ``bridge/request/action``."""
        info = self._providers.get(instance)
        if info is None:
            return []
        node = slug(f"{self.topics.base}_{instance}")
        out = []
        for action in info.actions:
            for account in action.accounts if action.per_account else (None,):
                object_id = slug("_".join(p for p in (account, "action", action.name) if p))
                press: dict[str, str] = {"instance": instance, "action": action.name}
                if account is not None:
                    press["account"] = account
                config: dict[str, Any] = {
                    "name": action.title,
                    "command_topic": self.topics.request("action"),
                    "payload_press": json.dumps(press, separators=(",", ":")),
                    "qos": 1,
                    "retain": False,
                    "availability": [self._bridge_availability()],
                }
                if action.icon is not None:
                    config["icon"] = action.icon
                device = self._device(info, account)
                out.append((self._named(config, "button", device, node, object_id), account))
        return out

    # provider topics

    def event_configs(self, provider: str, account: str | None, kind: str) -> list[Config]:
        """The ``event`` entities of ``kind`` events of one account (or of no account)."""
        info = self._providers.get(provider)
        if info is None:
            return []
        topic = f"{self.topics.owner(provider, account)}/{kind}"
        node = slug(f"{self.topics.base}_{provider}")
        relative = topic.removeprefix(f"{self.topics.base}/{provider}/")
        out = []
        for spec in info.entities:
            if spec.component != "event" or spec.kind != kind:
                continue
            config: dict[str, Any] = {
                "name": spec.name,
                "state_topic": topic,
                "event_types": list(spec.event_types),
                "availability": [self._bridge_availability()],
            }
            if spec.icon:
                config["icon"] = spec.icon
            object_id = slug(f"{relative}_{spec.key}".replace("/", "_"))
            device = self._device(info, account)
            out.append(self._named(config, "event", device, node, object_id))
        return out

    def configs(self, event: AnyEvent, state_topic: str, link_topic: str | None) -> list[Config]:
        """The configs of every entity a retained topic of ``event``'s kind yields."""
        info = self._providers.get(event.provider)
        if info is None:
            return []
        fields = event.model_dump()
        node = slug(f"{self.topics.base}_{event.provider}")
        relative = state_topic.removeprefix(f"{self.topics.base}/{event.provider}/")
        out = []
        for spec in info.entities:
            if spec.component == "event" or spec.kind != event.kind:
                continue
            if any(fields.get(k) != v for k, v in spec.match):
                continue
            object_id = slug(f"{relative}_{spec.key}".replace("/", "_"))
            config = self._config(spec, fields, state_topic, link_topic)
            device = self._device(info, event.account)
            out.append(self._named(config, spec.component, device, node, object_id))
        return out

    def _config(
        self,
        spec: EntitySpec,
        fields: dict[str, Any],
        state_topic: str,
        link_topic: str | None,
    ) -> dict[str, Any]:
        availability: list[dict[str, str]] = [self._bridge_availability()]
        if link_topic is not None and spec.kind != "link":
            availability.append(
                {
                    "topic": link_topic,
                    "value_template": (
                        "{{ 'online' if value_json.state in ('connected', 'fallback')"
                        " else 'offline' }}"
                    ),
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            )
        known = _Fields(fields)
        config: dict[str, Any] = {
            "name": spec.name.format_map(known),
            "state_topic": state_topic,
            "value_template": spec.value_template,
            "availability": availability,
            "availability_mode": "all",
        }
        unit = spec.unit.format_map(known) if spec.unit else None
        optional = {
            "device_class": spec.device_class,
            "state_class": spec.state_class,
            "icon": spec.icon,
            "entity_category": spec.entity_category,
            "unit_of_measurement": unit if unit and "{" not in unit else None,
            "suggested_display_precision": _places(fields, spec.precision_from),
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        if spec.options:
            config["options"] = list(spec.options)
        if spec.attributes:
            config["json_attributes_topic"] = state_topic
            config["json_attributes_template"] = _attributes_template(spec.attributes)
        return config


def _places(fields: dict[str, Any], name: str | None) -> int | None:
    """The decimal places of a field as the upstream padded it (``"910.997790"`` → 6)."""
    value = fields.get(name) if name else None
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    return min(max(-exponent, 0), MAX_PRECISION)


def _attributes_template(attributes: Sequence[str]) -> str:
    """A template picking ``attributes`` (dotted: nested) out of the payload, as JSON."""
    items = []
    for path in attributes:
        *parents, leaf = path.split(".")
        source = "value_json"
        for parent in parents:
            source = f"({source}.get('{parent}') or {{}})"
        items.append(f"'{leaf}': {source}.get('{leaf}')")
    return "{{ {" + ", ".join(items) + "} | tojson }}"


class _Fields(dict[str, Any]):
    """Format-map over an event's fields, with derived names; unknown names stay visible."""

    def __missing__(self, key: str) -> str:
        if key.endswith("_human") and isinstance(self.get(key[: -len("_human")]), str):
            return human(self[key[: -len("_human")]])
        if key in ("base", "quote"):
            for field in ("symbol", "market"):
                pair = split_pair(self[field]) if isinstance(self.get(field), str) else None
                if pair is not None:
                    return pair[0] if key == "base" else pair[1]
        return "{" + key + "}"
