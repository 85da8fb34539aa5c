"""What a crash was: its leaf exception (never the ExceptionGroup around it), and where."""

from __future__ import annotations

import asyncio
import traceback
from collections import OrderedDict


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, depth first; ``[exc]`` for a plain one."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def leaf(exc: BaseException) -> BaseException:
    """The failure that matters: the first leaf that is not a cancellation."""
    found = leaves(exc)
    return next((e for e in found if not isinstance(e, asyncio.CancelledError)), found[0])


def describe(exc: BaseException) -> str:
    """``Type: message`` of the leaf failure (what the link topic's ``error`` says)."""
    inner = leaf(exc)
    return f"{type(inner).__name__}: {inner}".rstrip(": ")


def location(exc: BaseException) -> str:
    """``file:line`` of the innermost frame that raised the leaf failure."""
    frames = traceback.extract_tb(leaf(exc).__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename}:{last.lineno}"


class SeenFaults:
    """Which crashes had their traceback shown: keyed by leaf type and location, bounded (LRU).

    Two different bugs show two tracebacks even when their messages are alike; one bug that
    keeps happening with changing messages shows one.
    """

    def __init__(self, size: int = 100) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def first(self, exc: BaseException) -> bool:
        """True the first time (lately) this kind of crash is seen: show its traceback."""
        inner = leaf(exc)
        key = (f"{type(inner).__module__}.{type(inner).__qualname__}", location(exc))
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
