"""The provider plugin base and what its hooks see; re-exported by ``bridge.api``."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import JsonValue

from bridge.config.settings import SecretFileModel
from bridge.model.entities import STANDARD_ENTITIES, EntitySpec
from bridge.model.errors import LinkFailure
from bridge.model.events import AnyEvent

if TYPE_CHECKING:
    from bridge.plugin.actions import Action
    from bridge.plugin.connections import ConnectionSpec
    from bridge.plugin.helpers import ParseContext


class ProviderSettings(SecretFileModel):
    """Base of every plugin's settings model.

    Unknown keys are errors; ``SecretStr`` fields may also be given as ``<name>_file`` or as the
    systemd credential ``provider__<instance>__<name>``.
    """


SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


class ProviderContext(Protocol):
    """What the core hands a provider instance when it asks for its connections."""

    @property
    def instance(self) -> str:
        """The instance name (``name`` of the ``[[providers]]`` table)."""
        ...

    @property
    def logger(self) -> logging.Logger:
        """Logger named after the instance."""
        ...

    def now(self) -> datetime:
        """The current time (UTC, aware); tests may replace the clock."""
        ...

    def emit(self, events: Iterable[AnyEvent]) -> None:
        """Publish events built outside ``parse`` (e.g. by a fallback poller)."""
        ...


class Connection(Protocol):
    """An open upstream connection, as the provider's hooks see it."""

    account: str | None
    """The account of the connection's ``ConnectionSpec``."""
    data: dict[str, Any]
    """Per-connection state of the hooks (e.g. a listen key); empty on every new connection."""

    async def send(self, message: JsonValue) -> None:
        """Send one JSON message."""
        ...

    async def request(
        self,
        message: dict[str, JsonValue],
        *,
        timeout: float | None = None,
        deliver_reply: bool = False,
    ) -> Any:
        """Send a request and wait for the reply the link matches to it by id.

        ``deliver_reply`` also hands the reply to ``parse`` (a snapshot), in order with other
        frames. No reply in time is a ``TransportFailure``.
        """
        ...

    async def expect(
        self, match: Callable[[Any], bool], *, timeout: float, what: str = "reply"
    ) -> Any:
        """Wait for the first incoming frame ``match`` accepts (e.g. an ``auth_success``).

        For answers that carry no request id. The frame still goes to ``parse``. None in time is
        a ``TransportFailure`` ("no <what> within <timeout> s").
        """
        ...


class Link(ABC):
    """A transport the core runs for one connection (WebSocket, Socket.IO, webhook, custom).

    ``run`` returns after ``close``, or raises a bug; the core restarts it with backoff.
    """

    @abstractmethod
    async def run(self) -> None:
        """Connect, authenticate, receive frames for ``parse``."""

    async def close(self) -> None:  # noqa: B027 - optional hook with nothing to do by default
        """Stop cleanly; the default has nothing to say to the upstream."""


class Provider(ABC, Generic[SettingsT]):
    """Base of every provider plugin; one object per configured instance.

    Subclasses set ``settings_model`` and implement ``connections`` and ``parse``.
    """

    settings_model: ClassVar[type[ProviderSettings]]
    """The pydantic model validating the instance's table (minus ``type`` and ``name``)."""
    display_name: ClassVar[str] = ""
    """How people write the provider's name ("IBEX", "Hibachi"): Home Assistant device names
    start with it. Empty: the entry-point name, capitalized."""
    entities: ClassVar[Sequence[EntitySpec]] = STANDARD_ENTITIES
    """Home Assistant entities this provider's retained topics become."""
    keepalive_interval: ClassVar[float | None] = None
    """Seconds between ``keepalive`` calls while connected; None when the protocol needs none."""
    close_codes: ClassVar[Mapping[int, type[LinkFailure]]] = {}
    """WebSocket close codes that mean more than "retry" (e.g. ``{4003: DoNotReconnect}``)."""
    sensitive_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys of upstream frames whose values never leave in a raw event (listen keys, user ids,
    addresses): the core masks them at any depth, in addition to its own (``token``,
    ``password``, ``listenKey``, ``apiKey``, …). Case, ``_`` and ``-`` do not matter."""
    restores_state: ClassVar[bool] = True
    """True when a connection re-establishes all the retained state it owns soon after it is up
    (a snapshot or burst): after a restart, what it no longer publishes is then cleared
    (``mqtt.cleanup_delay`` after its link is up). False for pushes that repeat nothing (webhooks):
    the previous run's retained topics are kept until the provider changes or clears them."""

    def __init__(self, name: str, settings: SettingsT) -> None:
        self.name = name
        self.settings = settings

    @abstractmethod
    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """The upstream connections of this instance, as data; the core runs each one.

        Called once per start of the instance. Each connection has its own account (``None``
        for the instance's own link topic); accounts must be unique within the instance.
        """

    @abstractmethod
    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
        """Turn one upstream frame into events. Pure: no I/O, no clock, no state changes.

        ``ctx.event(Model, …)`` fills ``provider``, ``account`` (the connection's) and
        ``received_at``. Return None (or raise ``Unhandled``) for a frame no model covers: the
        core publishes it as a ``raw`` event. Any other exception publishes it as ``unparsed``.
        """

    async def on_connect(self, conn: Connection) -> None:
        """Called once the link is open: authenticate, subscribe, request a snapshot.

        Raise ``AuthFailure`` (with the upstream's reason) when the upstream refuses the
        credentials in-band; the core reports ``auth_failed`` and retries slowly.
        """

    async def keepalive(self, conn: Connection) -> None:
        """Called every ``keepalive_interval`` seconds while connected (app-level ping)."""

    async def on_stop(self, conn: Connection) -> None:
        """Called on a clean shutdown while still connected (e.g. ``stream.stop``)."""

    def actions(self) -> Sequence[Action]:
        """What users may ask this instance to do (MQTT requests, Home Assistant buttons).

        Called once when the instance is built; none by default.
        """
        return ()

    def control(self, frame: Any) -> None:
        """Called for every frame before it is queued; raise a LinkFailure to end the connection.

        For frames that change the connection rather than the data (``stream_expired``,
        a late ``auth_error``). Must be quick and must not block.
        """
