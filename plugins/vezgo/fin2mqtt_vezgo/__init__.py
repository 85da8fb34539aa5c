"""Vezgo: account-sync webhooks, per-account sync status, and "Sync now".

Vezgo aggregates a user's exchange and wallet accounts. It posts ``SyncAccount`` / ``SyncError``
(and the opt-in ``newAccountEvent``) to one URL, from four fixed addresses, with the header
``x-client-id``; it signs nothing, so the allowlist and the client id are the authentication.
It never redelivers: the daemon answers 2xx only once the events are durable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from bridge.api import (
    LINK,
    NOTIFICATIONS,
    Action,
    AnyEvent,
    ConnectionSpec,
    EntitySpec,
    ParseContext,
    Provider,
    ProviderContext,
    WebhookRoute,
    WebhookSpec,
    enum_sensor,
    human,
)
from fin2mqtt_vezgo.parse import (
    NEW_ACCOUNT_EVENT,
    SYNC_STATUSES,
    account_id,
    hook_name,
    refusal,
    sync_events,
)
from fin2mqtt_vezgo.settings import VezgoAccount, VezgoSettings
from fin2mqtt_vezgo.sync import SyncNow

_SYNC = (("topic", "sync"),)

SYNC_STATUS = enum_sensor(
    "account_status",
    "sync_status",
    "Sync status",
    "status",
    {status: human(status) for status in SYNC_STATUSES},
    icon="mdi:sync",
    attributes=("details.last_error",),
    match=_SYNC,
)
NEEDS_ATTENTION = EntitySpec(
    kind="account_status",
    key="needs_attention",
    name="Needs attention",
    component="binary_sensor",
    value_template="{{ 'ON' if value_json.details.needs_attention else 'OFF' }}",
    device_class="problem",
    match=_SYNC,
)
LAST_SUCCESS = EntitySpec(
    kind="account_status",
    key="last_success",
    name="Last successful sync",
    value_template="{{ value_json.details.last_success }}",
    device_class="timestamp",
    match=_SYNC,
)
CONSECUTIVE_FAILURES = EntitySpec(
    kind="account_status",
    key="consecutive_failures",
    name="Consecutive sync failures",
    value_template="{{ value_json.details.consecutive_failures }}",
    state_class="measurement",
    unit="failures",
    icon="mdi:sync-alert",
    entity_category="diagnostic",
    match=_SYNC,
)


class VezgoProvider(Provider[VezgoSettings]):
    """One Vezgo client app: a webhook route, and "Sync now" per configured account."""

    settings_model = VezgoSettings
    display_name: ClassVar[str] = "Vezgo"
    entities: ClassVar[Sequence[EntitySpec]] = (
        LINK,
        SYNC_STATUS,
        NEEDS_ATTENTION,
        LAST_SUCCESS,
        CONSECUTIVE_FAILURES,
        NOTIFICATIONS,
    )
    restores_state: ClassVar[bool] = False
    """Vezgo pushes a sync result once: after a restart the last one per account is kept."""

    def connections(self, ctx: ProviderContext) -> Sequence[ConnectionSpec]:
        """The webhook route (the instance's link topic is ``connected`` while it listens)."""
        s = self.settings
        route = WebhookRoute(
            s.webhook_path,
            allow=tuple(s.allowed_sources),
            required_headers={"x-client-id": s.expected_client_id},
            trusted_proxies=tuple(s.trusted_proxies),
            check=refusal,
        )
        return [WebhookSpec(route=route)]

    def actions(self) -> Sequence[Action]:
        """ "Sync now" for every account with a login name (when a secret is configured)."""
        sync = SyncNow(self.settings)
        if not sync.accounts:
            return ()
        return [
            Action(
                name="sync",
                title="Sync now",
                run=sync,
                per_account=True,
                accounts=tuple(sync.accounts),
                timeout=2 * self.settings.http_timeout + 5,
                icon="mdi:cloud-sync",
            )
        ]

    def parse(self, frame: Any, ctx: ParseContext) -> Sequence[AnyEvent] | None:
        """A checked webhook body (see ``parse.refusal``) to events."""
        hook = hook_name(frame)
        if hook == NEW_ACCOUNT_EVENT:
            return [ctx.raw(NEW_ACCOUNT_EVENT, frame)]
        the_id = account_id(frame) if hook is not None else None
        if the_id is None:
            return None  # the route refuses these; published raw if one ever gets here
        s = self.settings
        return sync_events(
            frame,
            ctx,
            s.alias(the_id),
            threshold=s.failure_threshold,
            expose_ids=s.expose_ids,
        )


__all__ = ["VezgoAccount", "VezgoProvider", "VezgoSettings"]
