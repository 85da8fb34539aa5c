"""Logging to stderr: journald-friendly under systemd, timestamped otherwise."""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def stderr_is_journal() -> bool:
    """True when stderr is connected to journald (``$JOURNAL_STREAM`` names it)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        device, inode = (int(part) for part in stream.split(":", 1))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``; journald adds the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        """Prefix the syslog priority so journald keeps the level."""
        prio = _PRIORITY.get(record.levelno, 6)
        return f"<{prio}>{super().format(record)}"


def setup_logging(level: str) -> None:
    """Configure the root logger once for the whole process."""
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho logs every packet at debug level; keep it quiet unless asked for.
    logging.getLogger("fin2mqtt.mqtt").setLevel(max(root.level, logging.INFO))
    # websockets writes every handshake header (Authorization: the API key) and every frame at
    # debug level: secrets are never logged, so it stays at INFO whatever the daemon's level.
    logging.getLogger("websockets").setLevel(max(root.level, logging.INFO))
