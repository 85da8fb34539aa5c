"""Runs ``fin2mqtt run`` as a real process, listening to its sd_notify messages (tests only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

BROKER_CONNECTED = "STATUS=connected to MQTT broker"
"""The STATUS= line the daemon sends once the broker connection is up."""


class DaemonProcess:
    """The daemon in a subprocess with ``NOTIFY_SOCKET`` pointing at a socket of ours."""

    def __init__(self, config_text: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.config_text = config_text
        self.workdir = workdir
        self.extra_env = env or {}
        self.config_path = workdir / "fin2mqtt.toml"
        self.log_path = workdir / "daemon.log"
        self.notifications: list[str] = []
        self.returncode: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._sockdir = Path(tempfile.mkdtemp(prefix="f2m-"))  # AF_UNIX paths must be short
        self._sock: socket.socket | None = None
        self._changed = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._reader: asyncio.Task[None] | None = None
        self.started_at = 0.0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.kill()
        await self.close()

    async def start(self) -> None:
        """Write the configuration and start the process."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text)
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(str(self._sockdir / "notify"))
            self._sock.setblocking(False)
            self._group = asyncio.TaskGroup()
            await self._group.__aenter__()
            self._reader = self._group.create_task(self._read_notifications(), name="sd-notify")
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "WATCHDOG_USEC")}
        env.update({"NOTIFY_SOCKET": str(self._sockdir / "notify"), **self.extra_env})
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "run", "-c", str(self.config_path),
            stdout=log, stderr=log, env=env, cwd=self.workdir,
        )  # fmt: skip
        log.close()
        self.returncode = None

    async def _read_notifications(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 65536)
            self.notifications.extend(data.decode().splitlines())
            self._changed.set()

    async def wait_notification(
        self, line: str, timeout: float = 15, *, prefix: bool = False
    ) -> float:
        """Wait for an sd_notify line (e.g. ``READY=1``); returns seconds since start."""
        deadline = time.monotonic() + timeout
        while not (
            any(n.startswith(line) for n in self.notifications)
            if prefix
            else line in self.notifications
        ):
            if self._proc is not None and self._proc.returncode is not None:
                raise AssertionError(f"daemon exited {self._proc.returncode}: {self.log()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {line} within {timeout} s; log:\n{self.log()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
        return time.monotonic() - self.started_at

    async def wait_ready(self, timeout: float = 15, *, broker: bool = True) -> float:
        """Wait for READY=1 (providers started) and, with ``broker``, the broker connection."""
        took = await self.wait_notification("READY=1", timeout)
        if broker:
            took = await self.wait_notification(BROKER_CONNECTED, timeout, prefix=True)
        return took

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.returncode is None

    async def terminate(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took to exit."""
        assert self._proc is not None
        began = time.monotonic()
        self._proc.send_signal(signal.SIGTERM)
        self.returncode = await asyncio.wait_for(self._proc.wait(), timeout)
        return self.returncode, time.monotonic() - began

    def kill(self) -> None:
        """SIGKILL: no chance to say goodbye."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def wait_exit(self, timeout: float = 10) -> int:
        """Wait for the process to end."""
        assert self._proc is not None
        self.returncode = await asyncio.wait_for(self._proc.wait(), timeout)
        return self.returncode

    def log(self) -> str:
        """Everything the daemon wrote to stdout and stderr."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    async def wait_log(self, text: str, timeout: float = 10) -> str:
        """Wait until a line of the log contains ``text``; returns the first such line.

        The log is where a passing state shows for sure: a state topic keeps only the latest
        state, so a link that reconnects quickly may never be seen ``disconnected`` on MQTT.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = next((line for line in self.log().splitlines() if text in line), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {text!r} within {timeout} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop listening for notifications and remove the socket."""
        if self._proc is not None and self._proc.returncode is None:
            self.kill()
            await self._proc.wait()
        if self._reader is not None and self._group is not None:
            self._reader.cancel()
            await self._group.__aexit__(None, None, None)
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        shutil.rmtree(self._sockdir, ignore_errors=True)
