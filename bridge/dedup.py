"""Event ids already published: bounded in memory, kept across restarts in SQLite."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS seen2 (seq INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL)"
"""``seq`` is the rowid, so forgetting the oldest ids is a range delete, not a table scan."""


class SeenIds:
    """Remembers the last ``capacity`` event keys; ``flush`` persists the new ones.

    ``take_unsaved`` (event loop) and ``write`` (any thread, e.g. ``asyncio.to_thread``) split a
    flush so the database work never blocks the loop.
    """

    def __init__(self, path: Path | None, capacity: int = 100_000) -> None:
        self.path = path
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._unsaved: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._seq = 0

    def open(self) -> None:
        """Load the keys saved by the previous run."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute(SCHEMA)
        rows = self._db.execute(
            "SELECT key, seq FROM seen2 ORDER BY seq DESC LIMIT ?", (self.capacity,)
        ).fetchall()
        for key, _seq in reversed(rows):
            self._keys[key] = None
        self._seq = rows[0][1] if rows else 0
        log.debug("loaded %d seen event ids from %s", len(rows), self.path)

    def add(self, key: str) -> bool:
        """Record ``key``; False when it was seen before (a duplicate)."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return False
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        if self._db is not None:
            self._unsaved.append(key)
        return True

    def take_unsaved(self) -> list[tuple[str, int]]:
        """The keys added since the last call, numbered; to be passed to ``write``."""
        if self._db is None or not self._unsaved:
            return []
        rows = []
        for key in self._unsaved:
            self._seq += 1
            rows.append((key, self._seq))
        self._unsaved = []
        return rows

    def write(self, rows: list[tuple[str, int]]) -> None:
        """Store ``rows`` and forget the oldest keys on disk (safe from another thread)."""
        if not rows:
            return
        with self._lock:
            if self._db is None:
                return
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO seen2 (key, seq) VALUES (?, ?)", rows)
                self._db.execute("DELETE FROM seen2 WHERE seq <= ?", (rows[-1][1] - self.capacity,))

    def flush(self) -> None:
        """Write the keys added since the last flush, here and now."""
        self.write(self.take_unsaved())

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        return len(self._keys)
