"""MQTT brokers for tests and demos: mosquitto when installed, else amqtt in its own environment.

amqtt pins an old websockets, so it never enters the project's environment; ``uv tool run`` gives
it one of its own. Production uses a real broker such as mosquitto.

mosquitto can also serve TLS with a self-signed CA (``tls=True``; the CA a client must trust is
``broker.tls.ca_file``) and require a user name and password (``users={"name": "password"}``,
changed at run time with ``set_users``). Tests that need either skip on amqtt
(``supports_auth``).
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
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA and a server certificate it signed (for 127.0.0.1 and localhost), PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed: cannot make test certificates")
    subprocess.run([openssl, *args], check=True, capture_output=True)


def make_tls(directory: Path, name: str = "test") -> TlsFiles:
    """A fresh self-signed CA ``<name>-ca.crt`` and a server certificate it signed (openssl)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, crt = (directory / f"{name}-server.{ext}" for ext in ("key", "csr", "crt"))
    ext = directory / f"{name}-server.ext"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2",
        "-subj", f"/CN=fin2mqtt {name} CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return TlsFiles(ca_crt, crt, key)


class Broker(ABC):
    """A broker process on 127.0.0.1 that can be stopped and started again on the same port."""

    name: str
    supports_persistence: bool
    supports_auth: bool
    """TLS and passwords (``tls``, ``users``) are available."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistence: bool = False,
        *,
        tls: bool = False,
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.persistence = persistence
        self.users = dict(users) if users is not None else None
        self.tls: TlsFiles | None = None
        if tls and self.supports_auth:
            self.tls = make_tls(workdir / "tls", "broker")
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

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the accepted users and passwords while the broker runs."""
        raise NotImplementedError(f"{self.name} is started without passwords")


class Mosquitto(Broker):
    """Debian's (or any) mosquitto, with no queue limit so subscribers never silently lose."""

    name = "mosquitto"
    supports_persistence = True
    supports_auth = True

    def set_users(self, users: Mapping[str, str]) -> None:
        """Rewrite the password file and make mosquitto read it again (SIGHUP)."""
        self.users = dict(users)
        self._write_passwords()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def _write_passwords(self) -> Path:
        path = self.workdir / "passwords"
        path.write_text("")
        for user, password in (self.users or {}).items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(path), user, password],
                check=True,
                capture_output=True,
            )
        return path

    def _command(self) -> list[str]:
        binary = mosquitto_path()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1"]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        if self.users is not None:
            lines += ["allow_anonymous false", f"password_file {self._write_passwords()}"]
        else:
            lines.append("allow_anonymous true")
        lines += [
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
    supports_auth = False

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


def make_broker(
    workdir: Path,
    *,
    persistence: bool = False,
    tls: bool = False,
    users: Mapping[str, str] | None = None,
) -> Broker:
    """mosquitto when installed (or forced with FIN2MQTT_TEST_BROKER=mosquitto), else amqtt.

    amqtt ignores ``tls`` and ``users``: check ``supports_auth`` before relying on them.
    """
    choice = os.environ.get("FIN2MQTT_TEST_BROKER", "")
    if choice == "amqtt" or (choice != "mosquitto" and mosquitto_path() is None):
        return Amqtt(workdir, persistence=persistence, tls=tls, users=users)
    return Mosquitto(workdir, persistence=persistence, tls=tls, users=users)
