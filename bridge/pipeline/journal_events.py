"""The waiting events in the state file: one row per write, not one per event.

Under a burst the journal writes every event still waiting at a tick (~500 per tick at
saturation) and deletes them a tick later. One row per event cost ~7.6 µs per event in the
writer thread (a B-tree insert and delete each, the payload through the WAL twice); one row per
write (``outbox_runs``: a JSON head of seq, key, topic, qos and size per event, and the payloads
joined in one blob) costs ~1 µs. A run's row is deleted once all its events are gone (delivered
or dropped); until then the seqs gone from it are kept as ranges (``outbox_gone``): acks come
mostly in order, so a write adds a few. A start reads the runs less their gone events.

The one-row-per-event ``outbox`` table of earlier versions is read at start, older than every
run, and its rows are deleted as their events go; nothing is added to it.
"""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left, bisect_right
from operator import itemgetter

EventRow = tuple[int, str | None, str, bytes, int]
"""seq, dedup key, topic, payload, qos."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, key TEXT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_runs (
    seq INTEGER PRIMARY KEY, head TEXT NOT NULL, payloads BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox_gone (
    id INTEGER PRIMARY KEY, first INTEGER NOT NULL, last INTEGER NOT NULL);
"""
"""``outbox`` is what earlier versions wrote; ``outbox_runs.seq`` is its first event's."""

_SEQ = itemgetter(0)


def pack(rows: list[EventRow]) -> tuple[str, bytes]:
    """A run's head (JSON: seq, key, topic, qos and payload size per event) and payloads."""
    head = [(seq, key, topic, qos, len(payload)) for seq, key, topic, payload, qos in rows]
    return json.dumps(head, separators=(",", ":")), b"".join([row[3] for row in rows])


def unpack(head: str, payloads: bytes) -> list[EventRow]:
    """The events of one run, in order."""
    rows: list[EventRow] = []
    pos = 0
    for seq, key, topic, qos, size in json.loads(head):
        rows.append((seq, key, topic, payloads[pos : pos + size], qos))
        pos += size
    return rows


def seq_runs(seqs: list[int]) -> list[tuple[int, int]]:
    """Sequence numbers as (first, last) runs of consecutive numbers: acknowledgements come
    mostly in order, so a batch's deletes are a few ranges rather than a row each."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


class WaitingEvents:
    """The file's waiting events and which of them are still waiting (its one owner)."""

    def __init__(self) -> None:
        self._live: dict[int, set[int]] = {}
        """Run (its first seq) → the seqs of its events not gone yet."""
        self._firsts: list[int] = []
        """The runs' first seqs, ascending."""
        self._dead: list[int] = []
        """Runs read with no event left: deleted by the next write."""
        self._legacy = 0
        """Rows left in the one-event-per-row ``outbox`` table of earlier versions."""

    def read(self, db: sqlite3.Connection) -> list[EventRow]:
        """What waits, in order; remembers which run holds which of them."""
        ranges = db.execute("SELECT first, last FROM outbox_gone ORDER BY first").fetchall()
        starts = [first for first, _ in ranges]

        def gone(seq: int) -> bool:
            i = bisect_right(starts, seq) - 1
            return i >= 0 and seq <= ranges[i][1]

        legacy = [
            (int(s), k, t, bytes(p), int(q))
            for s, k, t, p, q in db.execute(
                "SELECT seq, key, topic, payload, qos FROM outbox ORDER BY seq"
            )
        ]
        self._legacy = len(legacy)
        self._live, self._firsts, self._dead = {}, [], []
        events: list[EventRow] = []
        for first, head, payloads in db.execute(
            "SELECT seq, head, payloads FROM outbox_runs ORDER BY seq"
        ):
            rows = [row for row in unpack(head, bytes(payloads)) if not gone(row[0])]
            if not rows:
                self._dead.append(first)
                continue
            self._live[first] = {row[0] for row in rows}
            self._firsts.append(first)
            events.extend(rows)
        return sorted(legacy + events, key=_SEQ) if legacy else events

    def put(self, db: sqlite3.Connection, rows: list[EventRow]) -> None:
        """Write ``rows`` (events newer than every written one) as one run."""
        rows = sorted(rows, key=_SEQ)
        head, payloads = pack(rows)
        first = rows[0][0]
        db.execute(
            "INSERT INTO outbox_runs (seq, head, payloads) VALUES (?, ?, ?)",
            (first, head, payloads),
        )
        self._live[first] = {row[0] for row in rows}
        self._firsts.append(first)  # seqs only grow (the outbox numbers events as they come)

    def drop(self, db: sqlite3.Connection, seqs: list[int]) -> None:
        """Forget written events (delivered or dropped): a run goes once all of its have."""
        if self._legacy:
            cursor = db.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", seq_runs(seqs))
            self._legacy = max(self._legacy - cursor.rowcount, 0)
        firsts, live = self._firsts, self._live
        emptied, kept = list(self._dead), []
        gone = sorted(set(seqs))
        i = max(bisect_right(firsts, gone[0]) - 1, 0) if gone else len(firsts)
        lo = bisect_left(gone, firsts[i]) if i < len(firsts) else len(gone)
        while lo < len(gone) and i < len(firsts):  # each run's share of ``gone``, in one go
            first = firsts[i]
            i += 1
            hi = bisect_left(gone, firsts[i]) if i < len(firsts) else len(gone)
            if hi > lo:
                waiting = live[first]
                waiting.difference_update(gone[lo:hi])
                if waiting:
                    kept.extend(gone[lo:hi])  # seqs never written in it are harmless there
                else:
                    emptied.append(first)
            lo = hi
        if emptied:
            db.executemany("DELETE FROM outbox_runs WHERE seq = ?", [(f,) for f in emptied])
            for first in emptied:
                live.pop(first, None)
            self._firsts = firsts = [f for f in firsts if f in live]
            self._dead = []
        if kept:
            db.executemany("INSERT INTO outbox_gone (first, last) VALUES (?, ?)", seq_runs(kept))
        if emptied:  # ranges older than every run left are of nothing
            if firsts:
                db.execute("DELETE FROM outbox_gone WHERE last < ?", (firsts[0],))
            else:
                db.execute("DELETE FROM outbox_gone")
