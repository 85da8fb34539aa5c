"""From one frame to events, the way the core does it for every frame (and the kit for tests)."""

from __future__ import annotations

from typing import Any

from bridge.model.events import AnyEvent
from bridge.plugin.helpers import ParseContext, Unhandled
from bridge.plugin.provider import Provider

NAME_KEYS = ("type", "event", "topic", "op", "channel", "method")
"""Fields whose text names an unhandled frame's raw event (else it is ``unhandled``)."""


def raw_name(frame: Any) -> str:
    """What to call a frame no model covers: its ``type`` (or ``event`` …), else ``unhandled``."""
    if isinstance(frame, dict):
        for key in NAME_KEYS:
            value = frame.get(key)
            if isinstance(value, str) and value:
                return value
    return "unhandled"


def frame_events(provider: Provider[Any], frame: Any, ctx: ParseContext) -> list[AnyEvent]:
    """``provider.parse``; a frame it leaves unhandled (None, ``Unhandled``) becomes a RawEvent.

    Any other exception is the caller's (the core publishes the frame as ``unparsed``).
    """
    try:
        events = provider.parse(frame, ctx)
    except Unhandled as exc:
        return [ctx.raw(raw_name(frame), frame, error=str(exc) or None)]
    if events is None:
        return [ctx.raw(raw_name(frame), frame)]
    return list(events)
