"""Daemon configuration: TOML file, ``FIN2MQTT_…`` environment overrides, secrets from files.

Sources, strongest first: environment, systemd credentials (``$CREDENTIALS_DIRECTORY``), the TOML
file, defaults. Provider tables keep their plugin's keys unvalidated here;
``bridge.runtime.plugin_loader`` validates them with the plugin's own model.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.config.credentials import CredentialFiles, credentials_dir, resolve_secret_files
from bridge.model.errors import ConfigError
from bridge.mqtt.topics import RESERVED_INSTANCES, RESERVED_NODES

ENV_PREFIX = "FIN2MQTT_"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
"""Lower-case letters, digits, ``_`` and ``-``: safe as one MQTT topic level."""

TopicPrefix = Annotated[str, StringConstraints(pattern=r"^[^#+/\s]+(/[^#+/\s]+)*$", max_length=128)]
"""One or more topic levels without wildcards or empty levels."""


def _not_reserved_node(node: str) -> str:
    if node in RESERVED_NODES:
        raise ValueError(f"'{node}' is reserved (<base>/bridge/{node} is a bridge topic)")
    return node


NodeId = Annotated[Slug, AfterValidator(_not_reserved_node)]
"""A topic level naming one daemon (not one of the bridge's own topic names)."""


class SecretFileModel(BaseModel):
    """A settings section whose secret fields may also be given as ``<name>_file``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        return resolve_secret_files(cls, data)


class TlsSettings(SecretFileModel):
    """TLS to the broker."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip the broker's host name check (testing only)."""


class MqttSettings(SecretFileModel):
    """The broker connection and how the bridge publishes."""

    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    base_topic: TopicPrefix = "fin2mqtt"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    keepalive: int = Field(default=60, ge=5, le=65535)
    tls: TlsSettings = TlsSettings()
    event_qos: Literal[0, 1] = 1
    """QoS of events (transactions, orders, …); retained state always uses QoS 1."""
    outbox_size: int = Field(default=100_000, ge=100)
    """Events kept while the broker is unreachable; past this the oldest are dropped, counted."""
    outbox_bytes: int = Field(default=64 * 2**20, ge=65_536)
    """Payload bytes kept while the broker is unreachable; past this the oldest are dropped."""
    cleanup_delay: float = Field(default=30.0, ge=0)
    """Seconds a link must be up before the retained topics (and Home Assistant entities) the
    previous run owned and the provider has not re-established are cleared."""
    max_payload: int = Field(default=65_536, ge=1024)
    """Largest event or state payload republished (bytes); a larger one (a 300 kB upstream
    frame) is replaced by a raw summary with its size, counted as ``oversized_events``."""
    max_inflight: int = Field(default=64, ge=1, le=1000)
    """Publishes awaiting the broker's acknowledgement at once."""
    reconnect_min: float = Field(default=0.5, gt=0)
    reconnect_max: float = Field(default=30.0, gt=0)


class HomeAssistantSettings(SecretFileModel):
    """Home Assistant MQTT discovery."""

    discovery: bool = True
    discovery_prefix: TopicPrefix = "homeassistant"


class WebhookSettings(SecretFileModel):
    """The one HTTP server receiving every provider's webhooks (started only when one needs it)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8787, ge=0, le=65535)
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    """Reverse proxies whose ``X-Forwarded-For`` is believed (e.g. ``["127.0.0.1/32"]``)."""
    max_body: int = Field(default=65_536, ge=1024)
    """Largest request body accepted, in bytes."""


class SupervisorSettings(SecretFileModel):
    """How provider instances are restarted and the daemon stops."""

    restart_min: float = Field(default=1.0, gt=0)
    restart_max: float = Field(default=300.0, gt=0)
    healthy_after: float = Field(default=60.0, gt=0)
    """A run that lasted this long resets the restart backoff."""
    stop_timeout: float = Field(default=4.0, gt=0, le=30)
    """Seconds from SIGTERM to exit: links get a clean stop, the outbox is flushed."""


class HealthSettings(SecretFileModel):
    """``<base>/bridge/health``: how often it is published."""

    interval: float = Field(default=30.0, gt=0)
    """Seconds between health publishes (also published within a second of a link change)."""


class MetricsSettings(SecretFileModel):
    """The Prometheus ``/metrics`` endpoint on the daemon's HTTP server (``[webhooks]``)."""

    enabled: bool = False
    account_labels: bool = False
    """Label per-connection metrics with the account (off: accounts are aggregated)."""


LogLevel = Literal["trace", "debug", "info", "warning", "error"]


class LoggingSettings(SecretFileModel):
    """Log format and per-component levels (the overall level is ``log_level``)."""

    format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message and fields)."""
    levels: dict[str, Literal["debug", "info", "warning", "error"]] = Field(default_factory=dict)
    """Logger name → level, e.g. ``{"fin2mqtt.provider.hib" = "debug"}``."""


Shard = Annotated[str, StringConstraints(pattern=r"^[0-9]+/[1-9][0-9]*$")]


def parse_shard(shard: str) -> tuple[int, int]:
    """``"1/3"`` → ``(1, 3)``."""
    index, count = shard.split("/")
    return int(index), int(count)


class ProviderEntry(BaseModel):
    """One ``[[providers]]`` table; keys other than type and name belong to the plugin."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Slug
    name: Slug

    def plugin_data(self) -> dict[str, Any]:
        """The table's keys that the plugin's settings model validates."""
        return dict(self.model_extra or {})


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else the XDG state directory."""
    if systemd_dir := os.environ.get("STATE_DIRECTORY"):
        return Path(systemd_dir.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "fin2mqtt"


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    toml_path: ClassVar[Path | None] = None

    mqtt: MqttSettings = MqttSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    webhooks: WebhookSettings = WebhookSettings()
    providers: list[ProviderEntry] = Field(default_factory=list)
    state_dir: Path = Field(default_factory=default_state_dir)
    health: HealthSettings = HealthSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    log_level: LogLevel = "info"
    """``trace`` adds the protocol libraries' debug output (still without secrets)."""
    node_id: NodeId | None = None
    """This daemon's name among several against one broker: its bridge topics become
    ``<base>/bridge/<node_id>/…`` and its default MQTT client id ``fin2mqtt-<node_id>``."""
    shard: Shard | None = None
    """``"i/n"``: run only the connections whose (instance, account) hash to slice ``i`` of
    ``n`` (see ``bridge.runtime.shard``)."""

    @model_validator(mode="after")
    def _valid_shard(self) -> Self:
        if self.shard is not None:
            index, count = parse_shard(self.shard)
            if index >= count:
                raise ValueError(f"shard: '{self.shard}': the index must be below the count")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.providers):
            if entry.name in RESERVED_INSTANCES:
                raise ValueError(
                    f"providers[{index}].name: '{entry.name}' is reserved (the bridge's own "
                    f"topics are <base>/{entry.name}/…); choose another instance name"
                )
            if entry.name in seen:
                raise ValueError(
                    f"providers[{index}].name: '{entry.name}' is already used by "
                    f"providers[{seen[entry.name]}]; instance names must be unique"
                )
            seen[entry.name] = index
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Credentials of secret fields, environment, other credentials, the TOML file.

        A secret's credential arrives as ``<name>_file``, which wins over the value however
        given (see ``CredentialFiles``).
        """
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        creds = credentials_dir()
        if creds is not None:
            sources.append(_CredentialFileSource(settings_cls, creds))
        sources.append(env_settings)
        if creds is not None:
            sources.append(
                NestedSecretsSettingsSource(
                    SecretsSettingsSource(settings_cls, secrets_dir=creds),
                    secrets_dir=creds,
                    secrets_dir_missing="ok",
                    secrets_prefix="",
                    secrets_nested_delimiter="__",
                )
            )
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


class _CredentialFileSource(PydanticBaseSettingsSource):
    """``CredentialFiles`` as a pydantic-settings source."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path) -> None:
        super().__init__(settings_cls)
        self._files = CredentialFiles(directory, settings_cls)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` gives the whole mapping."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The secret fields given as credentials, as ``<name>_file`` keys."""
        return self._files()


def search_path() -> list[Path]:
    """Where ``fin2mqtt`` looks for its configuration when ``--config`` is not given."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        Path("fin2mqtt.toml"),
        Path(xdg) / "fin2mqtt" / "config.toml",
        Path("/etc/fin2mqtt/config.toml"),
    ]


def find_config(explicit: Path | None) -> Path | None:
    """The configuration file to read: explicit, ``$FIN2MQTT_CONFIG``, or the first that exists."""
    if explicit is not None:
        return explicit
    if from_env := os.environ.get("FIN2MQTT_CONFIG"):
        return Path(from_env)
    return next((p for p in search_path() if p.is_file()), None)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('providers', 1, 'api_key')`` → ``providers[1].api_key``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "unknown key",
}


def describe_errors(
    errors: list[ErrorDetails], source: str, prefix: tuple[int | str, ...] = ()
) -> Iterator[str]:
    """One line per pydantic error: ``<source>: <key path>: <problem>``."""
    for err in errors:
        loc = format_loc(prefix + tuple(err["loc"]))
        msg = _MESSAGES.get(err["type"]) or err["msg"]
        msg = msg.removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        yield f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"


def load_settings(path: Path | None) -> Settings:
    """Read and validate the configuration, or raise ConfigError with one line per problem."""
    source = str(path) if path is not None else "configuration"
    if path is not None:
        if not path.is_file():
            raise ConfigError([f"{path}: configuration file not found"])
        try:
            with path.open("rb") as fh:
                tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: invalid TOML: {exc}"]) from exc
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    settings_cls = type("Settings", (Settings,), {"toml_path": path})
    try:
        settings: Settings = settings_cls()
    except ValidationError as exc:
        raise ConfigError(list(describe_errors(exc.errors(), source))) from exc
    return settings
