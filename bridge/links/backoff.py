"""Capped exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays ``minimum · factor^n``, capped at ``maximum``, each jittered by ±``jitter``."""

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.15,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._uniform = uniform
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        base = min(self.maximum, self.minimum * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        delay = base * self._uniform(1 - self.jitter, 1 + self.jitter)
        return min(delay, self.maximum)

    def reset(self) -> None:
        """Start again from ``minimum`` (after a healthy period)."""
        self.attempts = 0
