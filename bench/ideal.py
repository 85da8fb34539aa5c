"""The ideal bridge in a process of its own, so its CPU time can be measured apart.

``python -m bench.ideal SIMULATOR_URL HOST PORT QOS`` prints ``started`` once its stream is
started, then forwards until killed.
"""

from __future__ import annotations

import asyncio
import sys

from bench.e2e import ideal_bridge


def main() -> None:
    """Run until killed."""
    url, host, port, qos = sys.argv[1:5]
    asyncio.run(ideal_bridge(url, host, int(port), int(qos), asyncio.Event(), started=True))


if __name__ == "__main__":
    main()
