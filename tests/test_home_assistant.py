"""What Home Assistant makes of the discovery configs of every installed plugin (``fin2mqtt demo``).

The configs are validated by Home Assistant 2024.3.3's own MQTT discovery schemas, installed with
uv into an environment of its own (it cannot share ours); names are checked as a person reads them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.testing.broker import make_broker
from bridge.testing.recorder import retained

HA_VERSION = "2024.3.3"
# the first run on a machine downloads Home Assistant into a venv of its own
pytestmark = pytest.mark.timeout(900)
VALIDATOR = Path(__file__).parent / "homeassistant" / "validate.py"


@pytest.fixture(scope="module")
def discovery(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every retained discovery config after a few seconds of the demo: topic → config."""
    broker = make_broker(tmp_path_factory.mktemp("broker"))
    broker.start()
    try:
        env = {
            **os.environ,
            "FIN2MQTT_MQTT__HOST": broker.host,
            "FIN2MQTT_MQTT__PORT": str(broker.port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "demo", "--seconds", "4"],
            env=env, cwd=tmp_path_factory.mktemp("demo"), capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        found = asyncio.run(retained(broker.host, broker.port, "homeassistant/#"))
    finally:
        broker.stop()
    return {topic: message.json() for topic, message in found.items()}


@pytest.fixture(scope="module")
def ha_python() -> Path:
    """Python of an environment with Home Assistant (made once, kept in the user's cache)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "fin2mqtt-tests" / f"homeassistant-{HA_VERSION}"
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        uv = ["uv", "--quiet"]
        subprocess.run(
            [*uv, "venv", "--clear", "--python", sys.executable, str(venv)], check=True, timeout=120
        )
        subprocess.run(
            [*uv, "pip", "install", "--python", str(python), f"homeassistant=={HA_VERSION}",
             "paho-mqtt==1.6.1"],
            check=True, timeout=600,
        )  # fmt: skip
        (venv / "ready").touch()
    return python


def test_every_discovery_config_passes_home_assistants_schemas(discovery, ha_python):
    items = [{"topic": t, "config": c} for t, c in discovery.items()]
    done = subprocess.run(
        [str(ha_python), str(VALIDATOR)], input=json.dumps(items).encode(),
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    problems = {t: p for t, p in json.loads(done.stdout).items() if p}
    assert problems == {}
    platforms = {t.split("/")[1] for t in discovery}
    assert platforms == {"sensor", "binary_sensor", "button", "event"}


def test_the_validator_refuses_what_home_assistant_refuses(ha_python):
    bad = [
        {"topic": "homeassistant/sensor/x/a/config",
         "config": {"name": "A", "state_topic": "t", "device_class": "monetary",
                    "state_class": "measurement", "unit_of_measurement": "USD"}},
        {"topic": "homeassistant/event/x/b/config", "config": {"name": "B", "state_topic": "t"}},
        {"topic": "homeassistant/sensor/x/c/config",
         "config": {"name": "C", "state_topic": "t", "device_class": "enum"}},
        {"topic": "homeassistant/button/x/d/config",
         "config": {"name": "D", "command_topic": "t", "device": {"name": "D", "colour": "red"}}},
    ]  # fmt: skip
    done = subprocess.run(
        [str(ha_python), str(VALIDATOR)], input=json.dumps(bad).encode(),
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    problems = json.loads(done.stdout)
    assert all(problems[item["topic"]] for item in bad), problems


def test_money_is_monetary_with_state_class_total(discovery):
    balances = {
        t: c for t, c in discovery.items() if "_balance_" in t and t.endswith("_total/config")
    }
    assert balances
    for config in balances.values():
        assert (config["device_class"], config["state_class"]) == ("monetary", "total")
        assert config["unit_of_measurement"]
    pnl = [c for t, c in discovery.items() if t.endswith("_unrealized_pnl/config")]
    assert pnl and all(c["device_class"] == "monetary" and c["state_class"] == "total" for c in pnl)
    numeric = [c for c in discovery.values() if c.get("state_class")]
    assert len(numeric) > 10
    for config in numeric:  # every number has a unit
        assert config.get("unit_of_measurement"), config


def test_names_read_as_a_person_would_write_them(discovery):
    devices = {json.dumps(c["device"], sort_keys=True): c["device"] for c in discovery.values()}
    names = {d["name"] for d in devices.values()}
    assert {"fin2mqtt bridge", "Hibachi main", "Vezgo"} <= names, names
    for config in discovery.values():
        device, name = config["device"]["name"], config["name"]
        for text in (device, name):
            words = [w.lower() for w in text.split()]
            assert len(words) == len(set(words)), f"a word repeats in {text!r}"
        assert not name.lower().startswith(device.lower())
        assert "object_id" not in config
        platform = config["default_entity_id"].split(".")[0]
        assert config["default_entity_id"] == (
            f"{platform}."
            + "_".join(
                "".join(ch if ch.isalnum() else " " for ch in f"{device} {name}".lower()).split()
            )
        )
        identifiers = config["device"]["identifiers"][0].split("_")
        assert identifiers.count("fin2mqtt") == 1, identifiers
        if config["device"]["name"] != "fin2mqtt bridge":
            assert config["device"]["via_device"] == "fin2mqtt_bridge"
        if config.get("device_class") == "enum":
            assert config["options"]
