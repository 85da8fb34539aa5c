"""Recorded frames through a provider's ``parse`` exactly as the core runs it (no daemon)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bridge.api import AnyEvent, ParseContext, Provider
from bridge.plugin.parsing import frame_events


def parse_frames(
    provider: Provider[Any],
    frames: Iterable[Any],
    received_at: datetime,
    account: str | None = None,
) -> list[AnyEvent]:
    """The events the core would publish for ``frames`` of the connection of ``account``.

    Frames ``parse`` leaves unhandled become raw events, as in the daemon; an exception is raised
    (the daemon would publish the frame as ``unparsed``).
    """
    ctx = ParseContext(provider.name, account, received_at)
    return [event for frame in frames for event in frame_events(provider, frame, ctx)]
