"""Ids of events the broker acknowledged: bounded in memory, kept across restarts by the journal.

An id is committed only on PUBACK (``Outbox.done``): an event that was dropped or died with the
process was never committed, so the upstream's replay of it is delivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class SeenIds:
    """The last ``capacity`` delivered event keys; ``take_unsaved`` feeds the journal.

    A set for lookups and a deque for their order: each commit past ``capacity`` forgets the
    oldest key, in constant time. (A dict in commit order was rebuilt every few thousand
    commits to drop its oldest keys, a ~14 ms pause of the event loop each time; an
    ``OrderedDict`` costs twice the memory per key.) A key committed again becomes the newest:
    it is queued once more and its older place skipped (``_repeats`` counts such places).

    Keys are held as their ``hash()`` (64 bits, keyed per process): an int of 32-40 bytes
    instead of a string of 70-120, about 4 MB less for a full window. Two keys of one hash would
    make the second a false duplicate; with 100,000 keys held, a new key meets one with a
    chance of about 5 in 10^15. The journal keeps the keys themselves, and ``load`` hashes them
    again in the new process.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: set[int] = set()
        self._order: deque[int] = deque()
        self._repeats: dict[int, int] = {}
        """Keys committed again → how many of their older places are still in ``_order``."""
        self._unsaved: list[str] = []
        self.persistent = False
        """True once keys are kept across restarts (set by whoever writes them)."""

    def load(self, keys: Iterable[str]) -> None:
        """Keys the previous run committed, oldest first."""
        for key in keys:
            self._remember(hash(key))

    def __contains__(self, key: str) -> bool:
        return hash(key) in self._keys

    def commit(self, key: str) -> None:
        """The broker acknowledged the event with ``key``."""
        if self._remember(hash(key)) and self.persistent:
            self._unsaved.append(key)

    def take_unsaved(self) -> list[str]:
        """The keys committed since the last call."""
        keys, self._unsaved = self._unsaved, []
        return keys

    def _remember(self, key: int) -> bool:
        """``key`` (a key's hash) is the newest; False when it was already known."""
        self._order.append(key)
        if key in self._keys:
            self._repeats[key] = self._repeats.get(key, 0) + 1
            return False
        self._keys.add(key)
        if len(self._keys) > self.capacity:
            self._forget_oldest()
        return True

    def _forget_oldest(self) -> None:
        order, repeats = self._order, self._repeats
        while True:
            key = order.popleft()
            places = repeats.get(key)
            if places is None:
                self._keys.discard(key)
                return
            if places == 1:
                del repeats[key]
            else:
                repeats[key] = places - 1

    def __len__(self) -> int:
        return len(self._keys)
