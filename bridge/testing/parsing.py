"""Recorded frames through a provider's ``parse`` exactly as the core runs it (no daemon)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bridge.api import AccountStatusEvent, AnyEvent, ParseContext, Provider
from bridge.pipeline.context import remember_statuses
from bridge.plugin.parsing import frame_events


def parse_frames(
    provider: Provider[Any],
    frames: Iterable[Any],
    received_at: datetime,
    account: str | None = None,
) -> list[AnyEvent]:
    """The events the core would publish for ``frames`` of the connection of ``account``.

    ``ctx.status`` sees the account statuses of the frames before, as in the daemon. Frames
    ``parse`` leaves unhandled become raw events, as in the daemon; an exception is raised
    (the daemon would publish the frame as ``unparsed``).
    """
    statuses: dict[tuple[str | None, str], AccountStatusEvent] = {}
    ctx = ParseContext(provider.name, account, received_at, statuses)
    out: list[AnyEvent] = []
    for frame in frames:
        events = frame_events(provider, frame, ctx)
        remember_statuses(statuses, events)  # what ``ctx.status`` reads for the next frame
        out.extend(events)
    return out
