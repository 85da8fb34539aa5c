"""The fault matrix's table of recovery times: runs ``tests/faults`` and writes the table.

uv run python -m bench.faults      # -> bench/results/faults.md (a few minutes)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TABLE = Path(__file__).with_name("results") / "faults.md"


def main() -> int:
    """Run the fault suite with the table going to ``bench/results/faults.md``."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FIN2MQTT_FAULT_TABLE": str(TABLE)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
