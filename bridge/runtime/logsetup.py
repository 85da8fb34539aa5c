"""Logging to stderr: journald-friendly under systemd, timestamped otherwise."""

from __future__ import annotations

import logging
import os
import sys

from bridge.model.redaction import SECRETS

TRACE = "trace"
"""The most verbose level: ``debug`` plus the protocol libraries' own debug output."""

PROTOCOL_LOGGERS = (
    "websockets",
    "aiomqtt",
    "paho",
    "fin2mqtt.mqtt",
    "engineio",
    "socketio",
    "aiohttp",
)
"""Third-party loggers that write handshake headers and frames (``Authorization: …``, the auth
message) at DEBUG: kept at INFO unless ``trace`` is asked for."""

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


class RedactSecrets(logging.Filter):
    """Replaces every known secret value in a record (message, arguments, traceback) by a mask.

    Installed on the handler, so it sees the records of every logger, ours or a library's.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        message = record.getMessage()
        scrubbed = SECRETS.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SECRETS.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = SECRETS.scrub(record.stack_info)
        return True


def setup_logging(level: str) -> None:
    """Configure the root logger once for the whole process.

    ``trace`` is ``debug`` with the protocol libraries' debug output; below it they stay at INFO.
    Every record passes the secret filter, whatever logger wrote it.
    """
    trace = level.lower() == TRACE
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if trace else level.upper())
    for name in PROTOCOL_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if trace else max(root.level, logging.INFO))
