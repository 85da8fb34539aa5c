"""Finding and loading provider plugins (stevedore, entry-point group ``fin2mqtt.providers``)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from stevedore import NamedExtensionManager

from bridge.config.credentials import credentials_dir, read_secret_file, secret_fields
from bridge.config.settings import ProviderEntry, describe_errors
from bridge.model.errors import ConfigError
from bridge.plugin.provider import Provider, ProviderSettings

GROUP = "fin2mqtt.providers"


@dataclass(frozen=True, slots=True)
class InstalledProvider:
    """A provider type as installed: its entry point and distribution."""

    type: str
    target: str
    distribution: str
    version: str


def installed_providers() -> list[InstalledProvider]:
    """Every provider type installed in this environment, without importing any plugin."""
    found = []
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist
        found.append(
            InstalledProvider(
                type=ep.name,
                target=ep.value,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
            )
        )
    return sorted(found, key=lambda p: p.type)


def _installed_names() -> str:
    names = [p.type for p in installed_providers()]
    return ", ".join(names) if names else "none"


def load_provider_classes(
    types: list[str],
) -> tuple[dict[str, type[Provider[Any]]], dict[str, str]]:
    """Import only the configured provider types; return the classes and, per type, its problem."""
    if not types:
        return {}, {}
    problems: dict[str, str] = {}

    def on_failure(_manager: object, entrypoint: Any, exc: BaseException) -> None:
        problems[entrypoint.name] = (
            f"provider type '{entrypoint.name}' failed to load: {type(exc).__name__}: {exc}"
        )

    def on_missing(names: Iterable[str]) -> None:
        # stevedore also counts a plugin that failed to import as missing: keep the import error
        for name in names:
            problems.setdefault(
                name, f"unknown provider type '{name}' (installed: {_installed_names()})"
            )

    manager: NamedExtensionManager[type[Provider[Any]]] = NamedExtensionManager(
        GROUP,
        names=sorted(set(types)),
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
        on_missing_entrypoints_callback=on_missing,
    )
    classes: dict[str, type[Provider[Any]]] = {}
    for ext in manager:
        plugin = ext.plugin
        if isinstance(plugin, type) and issubclass(plugin, Provider):
            classes[ext.name] = plugin
        else:
            problems[ext.name] = (
                f"provider type '{ext.name}': {ext.entry_point.value} is not a "
                "bridge.api.Provider subclass"
            )
    return classes, problems


@dataclass(frozen=True, slots=True)
class ProviderInstance:
    """One configured, validated provider instance, ready to be built."""

    index: int
    name: str
    provider_type: str
    cls: type[Provider[Any]]
    settings: ProviderSettings

    def build(self) -> Provider[Any]:
        """Construct the provider object (stores settings; no I/O)."""
        return self.cls(self.name, self.settings)


def _with_credentials(name: str, model: type[ProviderSettings], data: dict[str, Any]) -> None:
    """Fill secrets from systemd credentials named ``provider__<instance>__<field>``.

    A credential wins over the same secret in the table (as a value or a ``_file``).

    Not ``providers__…``: pydantic-settings' nested secrets source would claim those names for
    the ``providers`` list and fail.
    """
    creds = credentials_dir()
    if creds is None:
        return
    for field in secret_fields(model):
        candidate = creds / f"provider__{name}__{field}"
        if not candidate.is_file():
            continue
        data.pop(field, None)
        if f"{field}_file" in model.model_fields:  # a token file the plugin re-reads itself
            data[f"{field}_file"] = None
            data[field] = read_secret_file(candidate)
        else:
            data[f"{field}_file"] = str(candidate)


def resolve_instances(
    entries: list[tuple[int, ProviderEntry]], source: str
) -> list[ProviderInstance]:
    """Load the configured plugins and validate every instance's table with its plugin's model.

    ``entries`` pairs each table with its index in the file, for error messages.
    """
    classes, load_problems = load_provider_classes([entry.type for _, entry in entries])
    problems: list[str] = []
    instances: list[ProviderInstance] = []
    for index, entry in entries:
        if entry.type in load_problems:
            problems.append(f"{source}: providers[{index}].type: {load_problems[entry.type]}")
            continue
        cls = classes[entry.type]
        data = entry.plugin_data()
        _with_credentials(entry.name, cls.settings_model, data)
        try:
            plugin_settings = cls.settings_model.model_validate(data)
        except ValidationError as exc:
            problems.extend(describe_errors(exc.errors(), source, ("providers", index)))
            continue
        instances.append(ProviderInstance(index, entry.name, entry.type, cls, plugin_settings))
    if problems:
        raise ConfigError(problems)
    return instances
