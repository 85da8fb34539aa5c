"""The example configuration and the systemd unit stay valid and complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from bridge.config.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "fin2mqtt.example.toml"
UNIT = ROOT / "systemd" / "fin2mqtt.service"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        elif name != "providers":
            keys.append(f"{prefix}{name}")
    return keys


def test_example_config_is_valid():
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_example_config_documents_every_key():
    text = EXAMPLE.read_text()
    missing = []
    for key in _keys(Settings):
        *tables, name = key.split(".")
        section = f"[{'.'.join(tables)}]" if tables else None
        start = text.index(section) if section else 0
        body = text[start:]
        if not re.search(rf"^#? ?{name}(_file)? = ", body, re.MULTILINE):
            missing.append(key)
    assert missing == []


def test_unit_file_has_what_the_daemon_relies_on():
    unit = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=fin2mqtt",
        "CacheDirectory=fin2mqtt",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestartPreventExitStatus=2",
        "PrivateUsers=yes",
        "PrivateMounts=yes",
        "SystemCallFilter=~@resources",
        "SystemCallErrorNumber=EPERM",
    ):
        assert f"\n{line}\n" in unit, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_verifies(tmp_path: Path):
    unit = tmp_path / "fin2mqtt.service"
    unit.write_text(
        UNIT.read_text().replace("/opt/fin2mqtt/bin/fin2mqtt", str(Path(sys.executable)))
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [l for l in result.stderr.splitlines() if "fin2mqtt.service" in l]
    assert problems == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_exposure_is_at_most_1_1():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for fin2mqtt.service: ([0-9.]+)", result.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze cannot rate a unit file offline: {result.stderr[:200]}")
    assert float(found.group(1)) <= 1.1, result.stdout
