"""Logging to stderr: journald-friendly under systemd, timestamped otherwise."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

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


_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, any ``extra=``
    fields of the call, and ``exception`` (the scrubbed traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (after the secret filter rewrote it)."""
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = SECRETS.scrub(value) if isinstance(value, str) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = SECRETS.scrub(self.formatException(record.exc_info))
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


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


def setup_logging(level: str, fmt: str = "text", levels: Mapping[str, str] | None = None) -> None:
    """Configure the root logger once for the whole process.

    ``trace`` is ``debug`` with the protocol libraries' debug output; below it they stay at INFO.
    ``fmt`` is ``text`` or ``json``; ``levels`` sets single loggers' levels (after ``level``).
    Every record passes the secret filter, whatever logger wrote it.
    """
    trace = level.lower() == TRACE
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if trace else level.upper())
    for name in PROTOCOL_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if trace else max(root.level, logging.INFO))
    # a record passes the root's handler whatever the root's level (propagation checks only the
    # level of the logger that wrote it): a more verbose logger needs nothing else
    for name, name_level in (levels or {}).items():
        logging.getLogger(name).setLevel(name_level.upper())
