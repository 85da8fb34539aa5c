"""Configuration plus plugins: everything validated before anything connects."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import Settings, find_config, load_settings
from bridge.plugins import ProviderInstance, installed_providers, resolve_instances


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration and its provider instances."""

    settings: Settings
    path: Path | None
    instances: list[ProviderInstance]

    def redacted(self) -> dict[str, Any]:
        """The configuration as JSON data with every secret masked."""
        data = self.settings.model_dump(mode="json", exclude={"providers"})
        data["providers"] = [
            {"type": i.type, "name": i.name, **i.settings.model_dump(mode="json")}
            for i in self.instances
        ]
        return data

    def plugin_versions(self) -> dict[str, str]:
        """Version of each configured provider type's distribution."""
        used = {i.type for i in self.instances}
        return {p.type: p.version for p in installed_providers() if p.type in used}


def load_config(explicit: Path | None) -> LoadedConfig:
    """Find, read and validate the configuration and its plugins (raises ConfigError)."""
    path = find_config(explicit)
    settings = load_settings(path)
    source = str(path) if path is not None else "configuration"
    instances = resolve_instances(settings, source)
    return LoadedConfig(settings, path, instances)
