"""The state directory's disk fills up while events flow.

A real full disk: the state directory is a 1 MiB tmpfs mounted for the test (root only; the test
is skipped where mounting is not allowed) and a file fills what the journal has not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.testing.broker import Broker
from bridge.testing.daemon import DaemonProcess

from .conftest import Subscriber, no_crash, record, request_stats, stop_cleanly, tally


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk is full."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        chunk = b"\0" * 4096
        while True:
            try:
                fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


async def until_logged(daemon: DaemonProcess, text: str, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, f"never logged {text!r}: {daemon.log()[-3000:]}"
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_disk_full_for_the_state_directory(
    broker: Broker, subscriber: Subscriber, daemon_config, small_disk: Path, tmp_path
):
    state = small_disk / "state"
    providers = '[[providers]]\ntype = "testprov"\nname = "alpha"\ninterval = 0.005\nticks = 1200\n'
    config = daemon_config(providers).replace(f'state_dir = "{tmp_path / "state"}"', "")
    config = f'state_dir = "{state}"\n' + config
    expected = [f"tx-{n}" for n in range(1200)]
    async with DaemonProcess(config, tmp_path / "d") as daemon:
        await daemon.wait_ready()
        await subscriber.wait_for(lambda _: len(subscriber.ids()) >= 100, what="100 events")
        filler = fill(small_disk)
        await until_logged(daemon, "cannot write the state file")
        # the cause, named: not a failed ROLLBACK hiding it
        assert "database or disk is full; events are kept in memory only (retrying)" in (
            daemon.log()
        )
        stats = await request_stats(broker)
        failing = stats["state_writes_failing"]
        assert isinstance(failing, str) and "full" in failing, failing
        assert stats["dropped_events"] == 0
        n_during = len(subscriber.ids())
        await asyncio.sleep(0.5)
        assert len(subscriber.ids()) > n_during + 50  # still publishing
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
        freed = time.monotonic()
        recovered = await until_logged(daemon, "writable again") - freed
        assert (await request_stats(broker))["state_writes_failing"] is None
        await subscriber.wait_ids(expected)
        await asyncio.sleep(0.3)
        # nothing reported dropped, nothing lost; the broker never went away: nothing repeated
        lost, dup = tally(subscriber.ids(), expected)
        no_crash(daemon)
        assert subscriber.links("fin2mqtt/alpha/link")[-1] == ("connected", None)
        await stop_cleanly(daemon)
    record(
        "disk_full", "state directory's disk full for ~1 s under 200 events/s", 1200, lost, dup,
        recovered, "space freed → the daemon says the state file is writable again",
    )  # fmt: skip
