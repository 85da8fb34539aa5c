"""Ids of events the broker acknowledged: bounded in memory, kept across restarts by the journal.

An id is committed only on PUBACK (``Outbox.done``): an event that was dropped or died with the
process was never committed, so the upstream's replay of it is delivered.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

GENERATIONS = 6
"""Full generations kept besides the newest: the window holds the keys of the last ``capacity``
commits and at most ``capacity / GENERATIONS`` more."""


class SeenIds:
    """The keys of at least the last ``capacity`` commits; ``take_unsaved`` feeds the journal.

    Keys are held in generations: sets of ``capacity / GENERATIONS`` keys each, a commit going to
    the newest. When the newest is full a new one begins and the oldest goes whole, once the
    others hold ``capacity`` commits without it. Nothing is ever removed from a set one by one:
    a single set of 100,000 keys that forgot its oldest key per commit was rebuilt by CPython
    every ~57,000 commits (a pause of the loop, and a second 4 MB table meanwhile, the peak of
    the daemon's memory); a set of ~16,700 keys stays within a 512 KB table. A key committed
    again is added to the newest generation, so it is remembered from its last commit.

    Keys are held as their ``hash()`` (64 bits, keyed per process): an int of 32-40 bytes
    instead of a string of 70-120. Two keys of one hash would make the second a false
    duplicate; with ~110,000 keys held, a new key meets one with a chance of about 6 in 10^15.
    The journal keeps the keys themselves, and ``load`` hashes them again in the new process.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._size = max(1, math.ceil(capacity / GENERATIONS))
        """Keys per generation."""
        self._keep = math.ceil(capacity / self._size) + 1
        """Generations kept: enough full ones for ``capacity`` commits, and the newest."""
        self._generations: deque[set[int]] = deque([set()])
        """Oldest first; the last one takes the commits."""
        self._unsaved: list[str] = []
        self.persistent = False
        """True once keys are kept across restarts (set by whoever writes them)."""

    def load(self, keys: Iterable[str]) -> None:
        """Keys the previous run committed, oldest first."""
        for key in keys:
            self._remember(hash(key))

    def __contains__(self, key: str) -> bool:
        return self._known(hash(key))

    def commit(self, key: str) -> None:
        """The broker acknowledged the event with ``key``.

        A key already in an older generation is committed (and saved) again, so that the
        journal too remembers it from its last commit.
        """
        if self._remember(hash(key)) and self.persistent:
            self._unsaved.append(key)

    def take_unsaved(self) -> list[str]:
        """The keys committed since the last call."""
        keys, self._unsaved = self._unsaved, []
        return keys

    def _remember(self, key: int) -> bool:
        """``key`` (a key's hash) is the newest; False when the newest generation had it."""
        generations = self._generations
        newest = generations[-1]
        if key in newest:
            return False
        newest.add(key)
        if len(newest) >= self._size:
            generations.append(set())
            if len(generations) > self._keep:
                generations.popleft()
        return True

    def _known(self, key: int) -> bool:
        # a loop, not any() over a generator, which takes twice as long (7 sets per new key)
        for generation in self._generations:  # noqa: SIM110
            if key in generation:
                return True
        return False

    def __len__(self) -> int:
        """Keys held (a key committed again in a newer generation counts twice)."""
        return sum(map(len, self._generations))
