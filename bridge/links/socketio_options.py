"""What a plugin says about a Socket.IO connection (kept apart: importing python-socketio costs
a quarter of a second, paid only when a Socket.IO connection is actually run)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class SocketIOEndpoint:
    """Where and how to connect, computed for every attempt."""

    url: str
    namespace: str = "/"
    auth: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    socketio_path: str = "socket.io"


OverflowPolicy = Literal["reconnect", "drop_oldest"]


@dataclass(frozen=True, slots=True)
class SocketIOOptions:
    """Tuning of a Socket.IO link."""

    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    queue_size: int = 10_000
    """Frames waiting for ``parse``. python-socketio cannot be slowed down (it reads on and runs
    each message in a task of its own), so a full queue applies ``overflow``."""
    overflow: OverflowPolicy = "reconnect"
    """``reconnect`` (default): end the connection, so the new one's snapshot closes the gap;
    ``drop_oldest``: drop the oldest waiting frame and count it (for ticker-like streams)."""
    stop_timeout: float = 2.0
