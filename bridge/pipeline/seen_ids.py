"""Ids of events the broker acknowledged: bounded in memory, kept across restarts by the journal.

An id is committed only on PUBACK (``Outbox.done``): an event that was dropped or died with the
process was never committed, so the upstream's replay of it is delivered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class SeenIds:
    """The last ``capacity`` delivered event keys; ``take_unsaved`` feeds the journal."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()
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
            self._keys.move_to_end(key)
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
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)
