"""Configuration plus plugins: everything validated before anything connects."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridge.config.public import public_view, register_raw_secrets, register_secrets
from bridge.config.settings import (
    ENV_PREFIX,
    ProviderEntry,
    Settings,
    find_config,
    load_settings,
)
from bridge.model.errors import ConfigError
from bridge.model.redaction import SECRETS
from bridge.runtime.plugin_loader import ProviderInstance, installed_providers, resolve_instances


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration and its provider instances."""

    settings: Settings
    path: Path | None
    instances: list[ProviderInstance]

    def redacted(self) -> dict[str, Any]:
        """The configuration as it may be published: secrets and commands masked, URLs without
        credentials or query, addresses shortened (``bridge.config.public``)."""
        data: dict[str, Any] = public_view(self.settings)
        data["providers"] = [
            {"type": i.provider_type, "name": i.name, **public_view(i.settings)}
            for i in self.instances
        ]
        return data

    def plugin_versions(self) -> dict[str, str]:
        """Version of each configured provider type's distribution."""
        used = {i.provider_type for i in self.instances}
        return {p.type: p.version for p in installed_providers() if p.type in used}


def load_config(explicit: Path | None) -> LoadedConfig:
    """Find, read and validate the configuration and its plugins (raises ConfigError)."""
    path = find_config(explicit)
    source = str(path) if path is not None else "configuration"
    _register_raw_secrets(path)
    problems: list[str] = []
    try:
        settings: Settings | None = load_settings(path)
    except ConfigError as exc:
        # Still validate the provider tables, so one run reports every problem.
        settings = None
        problems.extend(exc.problems)
    entries = list(enumerate(settings.providers)) if settings else _raw_entries(path)
    try:
        instances = resolve_instances(entries, source)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or settings is None:
        raise ConfigError([SECRETS.scrub(p) for p in problems])
    register_secrets(settings)
    for instance in instances:
        register_secrets(instance.settings)
    return LoadedConfig(settings, path, instances)


def _register_raw_secrets(path: Path | None) -> None:
    """Secret-looking values of the file and the environment, before anything validates them."""
    register_raw_secrets({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)})
    if path is None:
        return
    try:
        with path.open("rb") as fh:
            register_raw_secrets(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError):
        return


def _raw_entries(path: Path | None) -> list[tuple[int, ProviderEntry]]:
    """The provider tables of a file whose other settings are invalid (the valid ones only)."""
    if path is None:
        return []
    try:
        with path.open("rb") as fh:
            tables = tomllib.load(fh).get("providers", [])
    except (OSError, tomllib.TOMLDecodeError):
        return []
    entries = []
    for index, table in enumerate(tables if isinstance(tables, list) else []):
        try:
            entries.append((index, ProviderEntry.model_validate(table)))
        except ValidationError:
            continue  # already reported by the settings validation
    return entries
