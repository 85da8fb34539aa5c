"""systemd's notification protocol (``sd_notify``): READY, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; does nothing when it is unset."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls) -> Notifier:
        """A notifier for the socket systemd gave this process, if any."""
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self.address is not None

    def notify(self, message: str) -> None:
        """Send one datagram such as ``READY=1``; failures are logged, never raised."""
        if self.address is None:
            return
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), target)
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", message.split("=", 1)[0], exc)

    def ready(self, status: str) -> None:
        """Startup is complete."""
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """A one-line status shown by ``systemctl status``."""
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.notify("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        """Tell the watchdog we are alive."""
        self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds systemd set for this process, if any."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
