"""Validates discovery configs with Home Assistant's own code; run by Home Assistant's Python.

Reads ``[{"topic": …, "config": {…}}, …]`` on stdin and prints ``{topic: [problems]}``: what
``DISCOVERY_SCHEMA`` of the MQTT platform refuses, the keys it silently drops, and what Home
Assistant's sensor entity would warn about (state class or unit impossible for the device class).
Checks of newer releases that 2024.3 lacks are marked "newer HA".
"""

import importlib
import json
import sys

from homeassistant.components import sensor

NEWER = {"default_entity_id", "options"}
"""Keys Home Assistant 2024.3 does not know yet (its schemas drop them without a word)."""


def problems(topic: str, config: dict) -> list[str]:
    component = topic.split("/")[1]
    platform = importlib.import_module(f"homeassistant.components.mqtt.{component}")
    out: list[str] = []
    try:
        valid = platform.DISCOVERY_SCHEMA(dict(config))
    except Exception as exc:  # voluptuous.Invalid and friends
        return [f"refused: {exc}"]
    dropped = set(config) - set(valid) - NEWER
    if dropped:
        out.append(f"ignored keys: {sorted(dropped)}")
    if component == "sensor":
        out += sensor_problems(config)
    if "default_entity_id" in config and not config["default_entity_id"].startswith(
        f"{component}."
    ):
        out.append("newer HA: default_entity_id must start with the platform")
    return out


def sensor_problems(config: dict) -> list[str]:
    out = []
    device_class = config.get("device_class")
    state_class = config.get("state_class")
    unit = config.get("unit_of_measurement")
    if device_class is not None:
        dc = sensor.SensorDeviceClass(device_class)
        allowed = sensor.DEVICE_CLASS_STATE_CLASSES.get(dc)
        if state_class is not None and allowed is not None and state_class not in allowed:
            out.append(f"state class {state_class} impossible for device class {device_class}")
        units = sensor.DEVICE_CLASS_UNITS.get(dc)
        if unit is not None and units is not None and unit not in units:
            out.append(f"unit {unit} impossible for device class {device_class}")
        if dc is sensor.SensorDeviceClass.ENUM:
            if not config.get("options"):
                out.append("an enum sensor needs options")
            if state_class or unit:
                out.append("newer HA: an enum sensor takes neither state class nor unit")
    elif config.get("options"):
        out.append("newer HA: options need device_class enum")
    return out


def main() -> None:
    items = json.load(sys.stdin)
    json.dump({i["topic"]: problems(i["topic"], i["config"]) for i in items}, sys.stdout)


if __name__ == "__main__":
    main()
