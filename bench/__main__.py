"""``uv run python -m bench [--quick]``: run the benchmarks and print their figures."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import link, publisher, ready, scale


async def main(quick: bool) -> None:
    """Run every benchmark in turn."""
    with tempfile.TemporaryDirectory(prefix="f2m-bench-") as tmp:
        work = Path(tmp)
        n, rounds = (5_000, 3) if quick else (30_000, 5)
        await publisher.run(work / "publisher", n, rounds)
        await ready.run(work / "ready", 3 if quick else 7)
        await link.run(n, rounds)
        idle = 10.0 if quick else 60.0
        await scale.run(work / "scale100", 100, idle)
        await scale.run(work / "scale1000", 1000, idle)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    asyncio.run(main(parser.parse_args().quick))
