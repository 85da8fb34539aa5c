"""Event ids already published: bounded in memory, kept across restarts in SQLite."""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, seq INTEGER NOT NULL)"


class SeenIds:
    """Remembers the last ``capacity`` event keys; ``flush`` persists the new ones."""

    def __init__(self, path: Path | None, capacity: int = 100_000) -> None:
        self.path = path
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._unsaved: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._seq = 0

    def open(self) -> None:
        """Load the keys saved by the previous run."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute(SCHEMA)
        rows = self._db.execute(
            "SELECT key, seq FROM seen ORDER BY seq DESC LIMIT ?", (self.capacity,)
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

    def flush(self) -> None:
        """Write the keys added since the last flush and forget the oldest on disk."""
        if self._db is None or not self._unsaved:
            return
        rows = []
        for key in self._unsaved:
            self._seq += 1
            rows.append((key, self._seq))
        self._unsaved.clear()
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO seen (key, seq) VALUES (?, ?)", rows)
            self._db.execute("DELETE FROM seen WHERE seq <= ?", (self._seq - self.capacity,))

    def close(self) -> None:
        """Flush and close the database."""
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        return len(self._keys)
