"""Median [min-max] summaries."""

from __future__ import annotations

import statistics


def summary(values: list[float], fmt: str = "{:,.0f}") -> str:
    """``median [min-max]``."""
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )
