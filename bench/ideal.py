"""The ideal bridge in a process of its own, so its CPU time can be measured apart.

``python -m bench.ideal SIMULATOR_URL HOST PORT QOS [ACCOUNT]`` prints ``started`` once its
stream is started, then forwards until killed.
"""

from __future__ import annotations

import asyncio
import sys

from bench.e2e import ACCOUNT, ideal_bridge


def main() -> None:
    """Run until killed."""
    url, host, port, qos = sys.argv[1:5]
    account = int(sys.argv[5]) if len(sys.argv) > 5 else ACCOUNT
    stop = asyncio.Event()
    asyncio.run(ideal_bridge(url, host, int(port), int(qos), stop, started=True, account=account))


if __name__ == "__main__":
    main()
