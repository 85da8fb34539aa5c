"""Which connections one of several daemons runs: a stable slice of (instance, account) pairs.

The slice of a pair is ``blake2b(instance, account) mod n``: the same on every host, in every
run and Python version (unlike ``hash``), so two daemons configured ``0/2`` and ``1/2`` never
hold the same upstream session. A connection of no account (the instance's own) is sliced by
the instance alone.
"""

from __future__ import annotations

import hashlib


def shard_of(instance: str, account: str | None, count: int) -> int:
    """The slice (0 … count-1) that runs ``instance``'s connection of ``account``."""
    key = instance if account is None else f"{instance}\x1f{account}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


class ShardFilter:
    """``owns(instance, account)``: True for the connections of slice ``index`` of ``count``."""

    def __init__(self, index: int, count: int) -> None:
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count}: the index must be below the count")
        self.index = index
        self.count = count

    def owns(self, instance: str, account: str | None) -> bool:
        """True when this daemon runs the connection."""
        return shard_of(instance, account, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
