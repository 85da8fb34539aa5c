"""MQTT brokers for tests and demos: mosquitto when installed, else amqtt in its own environment.

amqtt pins an old websockets, so it never enters the project's environment; ``uv tool run`` gives
it one of its own. Production uses a real broker such as mosquitto.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path

from bridge.testing.ports import free_port

AMQTT_REQUIREMENT = "amqtt==0.12.1"
START_TIMEOUT = 60.0
"""amqtt's first start may have to install it into a uv tool environment."""


def mosquitto_path() -> str | None:
    """The mosquitto binary, if installed."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"broker did not listen on {port} within {timeout} s: {log.read_text()}")


class Broker(ABC):
    """A broker process on 127.0.0.1 that can be stopped and started again on the same port."""

    name: str
    supports_persistence: bool

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.persistence = persistence
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def _command(self) -> list[str]: ...

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # its own session: Ctrl-C in a terminal (SIGINT to the foreground group) must not stop
        # the broker before the daemon publishes its last messages; ``stop`` ends it
        self._proc = subprocess.Popen(
            self._command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        _wait_listening(self.port, self._proc, self.log_path, timeout)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM; mosquitto saves its persistence file)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None


class Mosquitto(Broker):
    """Debian's (or any) mosquitto, with no queue limit so subscribers never silently lose."""

    name = "mosquitto"
    supports_persistence = True

    def _command(self) -> list[str]:
        binary = mosquitto_path()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        conf.write_text("\n".join(lines) + "\n")
        return [binary, "-c", str(conf)]


class Amqtt(Broker):
    """amqtt (MQTT 3.1.1 only, no persistence) in a uv tool environment of its own."""

    name = "amqtt"
    supports_persistence = False

    def _command(self) -> list[str]:
        uv = shutil.which("uv")
        if uv is None:
            raise RuntimeError("neither mosquitto nor uv is installed: cannot start a broker")
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        return [uv, "tool", "run", "--from", AMQTT_REQUIREMENT, "amqtt", "-c", str(conf)]


def make_broker(workdir: Path, *, persistence: bool = False) -> Broker:
    """mosquitto when installed (or forced with FIN2MQTT_TEST_BROKER=mosquitto), else amqtt."""
    choice = os.environ.get("FIN2MQTT_TEST_BROKER", "")
    if choice == "amqtt" or (choice != "mosquitto" and mosquitto_path() is None):
        return Amqtt(workdir, persistence=persistence)
    return Mosquitto(workdir, persistence=persistence)
