"""Home Assistant MQTT discovery configs, generated from entity specs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.model.entities import EntitySpec
from bridge.model.events import AnyEvent
from bridge.mqtt.topics import TopicMap, slug
from bridge.plugin.actions import Action

PROJECT_URL = "https://github.com/fin2mqtt/fin2mqtt"


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What discovery needs to know about one provider instance."""

    name: str
    type: str
    entities: Sequence[EntitySpec]
    actions: Sequence[Action] = ()


class Discovery:
    """Builds the retained discovery configs for the entities a state topic yields."""

    def __init__(self, prefix: str, topics: TopicMap, version: str) -> None:
        self.prefix = prefix
        self.topics = topics
        self.version = version
        self._providers: dict[str, ProviderInfo] = {}

    def register(self, info: ProviderInfo) -> None:
        """Declare a provider instance and the entities it offers."""
        self._providers[info.name] = info

    def action_configs(self, instance: str) -> list[tuple[str, bytes, str | None]]:
        """``(config topic, payload, account)`` of a button per action (and account) of
        ``instance``: pressing it publishes the action request to ``bridge/request/action``."""
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
                    "has_entity_name": True,
                    "command_topic": self.topics.request("action"),
                    "payload_press": json.dumps(press, separators=(",", ":")),
                    "qos": 1,
                    "retain": False,
                    "availability": [self._bridge_availability()],
                    "device": self._device(info, account),
                    "origin": self._origin(),
                    "unique_id": f"{node}_{object_id}",
                    "object_id": f"{node}_{object_id}",
                }
                if action.icon is not None:
                    config["icon"] = action.icon
                topic = f"{self.prefix}/button/{node}/{object_id}/config"
                out.append((topic, json.dumps(config, separators=(",", ":")).encode(), account))
        return out

    def _bridge_availability(self) -> dict[str, str]:
        return {
            "topic": self.topics.bridge_state,
            "value_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
        }

    def _device(self, info: ProviderInfo, account: str | None) -> dict[str, Any]:
        """The Home Assistant device of an instance (``account`` None) or of one account."""
        parts = ("fin2mqtt", self.topics.base, info.name, account)
        device_name = " ".join(p for p in (info.name, account) if p)
        return {
            "identifiers": ["_".join(slug(p) for p in parts if p)],
            "name": f"{info.type} {device_name}",
            "manufacturer": "fin2mqtt",
            "model": info.type,
            "sw_version": self.version,
        }

    def _origin(self) -> dict[str, str]:
        return {"name": "fin2mqtt", "sw_version": self.version, "support_url": PROJECT_URL}

    def configs(
        self, event: AnyEvent, state_topic: str, link_topic: str | None
    ) -> list[tuple[str, bytes]]:
        """``(config topic, payload)`` for every entity of ``event``'s kind."""
        info = self._providers.get(event.provider)
        if info is None:
            return []
        fields = event.model_dump()
        node = slug(f"{self.topics.base}_{event.provider}")
        relative = state_topic.removeprefix(f"{self.topics.base}/{event.provider}/")
        out = []
        for spec in info.entities:
            if spec.kind != event.kind or any(fields.get(k) != v for k, v in spec.match):
                continue
            object_id = slug(f"{relative}_{spec.key}".replace("/", "_"))
            config = self._config(spec, event, info, fields, state_topic, link_topic)
            config["unique_id"] = f"{node}_{object_id}"
            config["object_id"] = f"{node}_{object_id}"
            topic = f"{self.prefix}/{spec.component}/{node}/{object_id}/config"
            out.append((topic, json.dumps(config, separators=(",", ":")).encode()))
        return out

    def _config(
        self,
        spec: EntitySpec,
        event: AnyEvent,
        info: ProviderInfo,
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
        config: dict[str, Any] = {
            "name": spec.name.format_map(_Fields(fields)),
            "has_entity_name": True,
            "state_topic": state_topic,
            "value_template": spec.value_template,
            "availability": availability,
            "availability_mode": "all",
            "device": self._device(info, event.account),
            "origin": self._origin(),
        }
        optional = {
            "device_class": spec.device_class,
            "state_class": spec.state_class,
            "icon": spec.icon,
            "entity_category": spec.entity_category,
            "unit_of_measurement": spec.unit.format_map(_Fields(fields)) if spec.unit else None,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        if spec.options:
            config["options"] = list(spec.options)
        return config


class _Fields(dict[str, Any]):
    """Format-map that leaves unknown names visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
