"""The state directory's database: waiting events, delivered event ids, owned retained topics.

One SQLite file in WAL mode. The event loop never touches it while running: the parts collect
what changed into a ``Batch`` and ``Journal.write`` commits it in a worker thread, in one
transaction (puts before deletes, so an event written and delivered in the same batch is gone).
The waiting events' rows are kept by ``journal_events.WaitingEvents``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from bridge.pipeline.journal_events import SCHEMA as EVENTS_SCHEMA
from bridge.pipeline.journal_events import EventRow, WaitingEvents

log = logging.getLogger(__name__)

FILE_NAME = "state.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (seq INTEGER PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS delivered_runs (
    seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, keys TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, instance TEXT NOT NULL, account TEXT, payload BLOB);
"""
"""Delivered ids are written one row per write (``delivered_runs``: a JSON array of the keys
acknowledged since the last write, in order), not one row per id: under load a write carries
hundreds. The oldest runs are deleted while the newer ones hold ``delivered_capacity`` keys.
``delivered`` (one key per row) is what earlier versions wrote: read, older than every run,
and forgotten the same way; nothing is added to it."""

OwnerRow = tuple[str, str, str | None, bytes | None]
"""topic, provider instance, account, and the payload where it is kept (providers that do not
restore their state after a restart, e.g. webhooks)."""


@dataclass(slots=True)
class Batch:
    """What changed since the last write."""

    events: list[EventRow] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    """Sequence numbers of written events since delivered or dropped."""
    delivered: list[str] = field(default_factory=list)
    owned: list[OwnerRow] = field(default_factory=list)
    disowned: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.gone or self.delivered or self.owned or self.disowned)

    def merge(self, later: Batch) -> Batch:
        """This batch followed by ``later`` (for a retry after a failed write)."""
        return Batch(
            self.events + later.events,
            self.gone + later.gone,
            self.delivered + later.delivered,
            self.owned + later.owned,
            self.disowned + later.disowned,
        )


@dataclass(slots=True)
class Loaded:
    """What the previous run left."""

    events: list[EventRow]
    delivered: list[str]
    owned: list[OwnerRow]


class Journal:
    """The SQLite file; ``write`` may run in any thread, one at a time."""

    def __init__(self, directory: Path, delivered_capacity: int) -> None:
        self.path = directory / FILE_NAME
        self.delivered_capacity = delivered_capacity
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._runs: deque[tuple[int, int]] = deque()
        """(seq, number of keys) of each ``delivered_runs`` row, oldest first."""
        self._run_keys = 0
        self._legacy = 0
        """Rows left in the one-key-per-row ``delivered`` table of earlier versions."""
        self._waiting = WaitingEvents()

    def open(self) -> Loaded:
        """Open (or create) the file and read what the previous run left."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # writes touch the newest pages and reads happen once, at start: a quarter of
            # SQLite's default 2 MB page cache serves them (the file's pages stay in the OS's)
            db.execute("PRAGMA cache_size=-512")
            db.executescript(EVENTS_SCHEMA + SCHEMA)
            events = self._waiting.read(db)
            delivered = self._read_delivered(db)
            owned = db.execute("SELECT topic, instance, account, payload FROM retained").fetchall()
        except BaseException:
            db.close()
            raise
        self._db = db
        log.debug(
            "state %s: %d waiting event(s), %d delivered id(s), %d retained topic(s)",
            self.path,
            len(events),
            len(delivered),
            len(owned),
        )
        return Loaded(
            events,
            delivered,
            [(t, i, a, bytes(p) if p is not None else None) for t, i, a, p in owned],
        )

    def _read_delivered(self, db: sqlite3.Connection) -> list[str]:
        """The newest ``delivered_capacity`` keys, oldest first: earlier versions' rows, then
        the runs."""
        capacity = self.delivered_capacity
        self._count_runs(db)
        keys: list[str] = []
        for (text,) in db.execute("SELECT keys FROM delivered_runs ORDER BY seq"):
            keys.extend(json.loads(text))
        legacy = [
            key
            for (key,) in db.execute(
                "SELECT key FROM (SELECT key, seq FROM delivered ORDER BY seq DESC LIMIT ?)"
                " ORDER BY seq",
                (max(capacity - len(keys), 0),),
            )
        ]
        return (legacy + keys)[-capacity:] if capacity else []

    def _count_runs(self, db: sqlite3.Connection) -> None:
        """What the file holds of delivered ids: its runs and the rows of earlier versions."""
        runs = db.execute("SELECT seq, n FROM delivered_runs ORDER BY seq").fetchall()
        self._runs = deque((int(seq), int(n)) for seq, n in runs)
        self._run_keys = sum(n for _, n in self._runs)
        self._legacy = int(db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0])

    def _write_delivered(self, db: sqlite3.Connection, keys: list[str]) -> None:
        """One run of keys; then forget the oldest runs (and rows) past the capacity."""
        cursor = db.execute(
            "INSERT INTO delivered_runs (n, keys) VALUES (?, ?)", (len(keys), json.dumps(keys))
        )
        assert cursor.lastrowid is not None
        self._runs.append((cursor.lastrowid, len(keys)))
        self._run_keys += len(keys)
        capacity = self.delivered_capacity
        oldest = None
        while self._runs and self._run_keys - self._runs[0][1] >= capacity:
            oldest, n = self._runs.popleft()
            self._run_keys -= n
        if oldest is not None:
            db.execute("DELETE FROM delivered_runs WHERE seq <= ?", (oldest,))
        if self._legacy:
            keep = max(capacity - self._run_keys, 0)
            db.execute(
                "DELETE FROM delivered WHERE seq <= (SELECT MAX(seq) FROM delivered) - ?", (keep,)
            )
            self._legacy = min(self._legacy, keep)

    def write(self, batch: Batch) -> None:
        """Commit ``batch`` in one transaction."""
        with self._lock:
            db = self._db
            if db is None or not batch:
                return
            db.execute("BEGIN")
            try:
                if batch.events:
                    self._waiting.put(db, batch.events)
                if batch.gone:
                    self._waiting.drop(db, batch.gone)
                if batch.delivered:
                    self._write_delivered(db, batch.delivered)
                if batch.owned:
                    db.executemany(
                        "INSERT OR REPLACE INTO retained (topic, instance, account, payload)"
                        " VALUES (?, ?, ?, ?)",
                        batch.owned,
                    )
                if batch.disowned:
                    db.executemany(
                        "DELETE FROM retained WHERE topic = ?", [(t,) for t in batch.disowned]
                    )
                db.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL, SQLITE_IOERR):
                # a ROLLBACK then fails and its error would hide the real one (a full disk)
                if db.in_transaction:
                    db.execute("ROLLBACK")
                with contextlib.suppress(sqlite3.Error):
                    # what the rolled-back transaction did not write
                    self._count_runs(db)
                    self._waiting.read(db)
                raise

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
