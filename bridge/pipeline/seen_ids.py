"""Ids of events the broker acknowledged: bounded in memory, kept across restarts by the journal.

An id is committed only on PUBACK (``Outbox.done``): an event that was dropped or died with the
process was never committed, so the upstream's replay of it is delivered.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice


class SeenIds:
    """The last ``capacity`` delivered event keys (and up to ``slack`` more); ``take_unsaved``
    feeds the journal.

    A plain dict in commit order: less than half the memory of an ``OrderedDict`` per key
    (38 bytes against 91, besides the key). A dict cannot drop its oldest entry cheaply, so the
    oldest are dropped ``slack`` at a time, in one pass.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self.slack = max(capacity // 16, 1)
        self._keys: dict[str, None] = {}
        self._unsaved: list[str] = []
        self.persistent = False
        """True once keys are kept across restarts (set by whoever writes them)."""

    def load(self, keys: Iterable[str]) -> None:
        """Keys the previous run committed, oldest first."""
        for key in keys:
            self._remember(key)

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def commit(self, key: str) -> None:
        """The broker acknowledged the event with ``key``."""
        if key in self._keys:
            del self._keys[key]  # the newest again
            self._keys[key] = None
            return
        self._remember(key)
        if self.persistent:
            self._unsaved.append(key)

    def take_unsaved(self) -> list[str]:
        """The keys committed since the last call."""
        keys, self._unsaved = self._unsaved, []
        return keys

    def _remember(self, key: str) -> None:
        self._keys[key] = None
        excess = len(self._keys) - self.capacity
        if excess > self.slack:
            self._keys = dict.fromkeys(islice(self._keys, excess, None))

    def __len__(self) -> int:
        return len(self._keys)
