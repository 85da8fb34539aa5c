"""Bad configurations: one clear line per problem, naming the file and key path; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_missing_and_wrong_keys_each_get_a_line(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[mqtt]
port = "eighty"
colour = "blue"

[[providers]]
type = "testprov"
name = "alpha"
interval = "fast"
unknown_knob = 1

[[providers]]
type = "testprov"
"""
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {path}: mqtt.port: input should be a valid integer, unable to parse string as an integer",
        f"error: {path}: mqtt.colour: unknown key",
        f"error: {path}: providers[1].name: field required",
        f"error: {path}: providers[0].interval: input should be a valid number, unable to parse string as a number",
        f"error: {path}: providers[0].unknown_knob: unknown key",
    ]


def test_plugin_settings_are_validated_by_the_plugin_model(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[[providers]]
type = "testprov"
name = "alpha"
interval = "fast"
unknown_knob = 1
"""
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: providers[0].interval: input should be a valid number, unable to parse string as a number",
        f"error: {path}: providers[0].unknown_knob: unknown key",
    ]


def test_unknown_provider_type_names_the_installed_ones(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[[providers]]\ntype = "kraken"\nname = "k"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: providers[0].type: unknown provider type 'kraken' "
        "(installed: axisor, brokenprov, example, hibachi, ibex, testprov, vezgo, vezta)"
    ]


def test_plugin_that_fails_to_import_is_named(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text('[[providers]]\ntype = "brokenprov"\nname = "b"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: providers[0].type: provider type 'brokenprov' failed to load: "
        "ImportError: this plugin is broken on purpose (needs a library that is not installed)"
    ]


def test_duplicate_instance_names(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[providers]]\ntype = "testprov"\nname = "a"\n[[providers]]\ntype = "testprov"\nname = "a"\n'
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: providers[1].name: 'a' is already used by providers[0]; "
        "instance names must be unique"
    ]


def test_invalid_toml_and_missing_file(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("[mqtt\nport = 1")
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: invalid TOML: ")
    missing = tmp_path / "nope.toml"
    result = run_cli("run", "-c", str(missing))
    assert result.returncode == 2
    assert result.stderr == f"error: {missing}: configuration file not found\n"


def test_secret_file_that_cannot_be_read(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[mqtt]\npassword_file = "{tmp_path}/absent"\n'
        f'[[providers]]\ntype = "testprov"\nname = "a"\napi_key_file = "{tmp_path}/gone"\n'
    )
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {path}: mqtt: password_file: cannot read {tmp_path}/absent: No such file or directory",
        f"error: {path}: providers[0]: api_key_file: cannot read {tmp_path}/gone: No such file or directory",
    ]


def test_env_overrides_and_credentials(tmp_path: Path):
    path = tmp_path / "ok.toml"
    path.write_text('[mqtt]\nhost = "from-file"\n[[providers]]\ntype = "testprov"\nname = "main"\n')
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt__password").write_text("pw-from-credential\n")
    (creds / "provider__main__api_key").write_text("key-from-credential\n")
    env = {
        "FIN2MQTT_MQTT__HOST": "from-env",
        "FIN2MQTT_MQTT__PORT": "1884",
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    code = (
        "from pathlib import Path; from bridge.config.loader import load_config;"
        f"c = load_config(Path({str(path)!r}));"
        "print(c.settings.mqtt.host, c.settings.mqtt.port,"
        " c.settings.mqtt.password.get_secret_value(),"
        " c.instances[0].settings.api_key.get_secret_value())"
    )
    import os

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    assert out.stdout.split() == ["from-env", "1884", "pw-from-credential", "key-from-credential"]


def test_check_reports_a_good_config_without_connecting(tmp_path: Path):
    path = tmp_path / "ok.toml"
    path.write_text('[mqtt]\nhost = "192.0.2.1"\n[[providers]]\ntype = "testprov"\nname = "main"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"configuration OK: {path}",
        "  broker: 192.0.2.1:1883, base topic 'fin2mqtt'",
        f"  state directory: {Path.home() / '.local/state/fin2mqtt'}",
        "  provider 'main': type testprov",
    ]


def test_plugins_and_version():
    result = run_cli("plugins")
    assert result.returncode == 0
    assert (
        "testprov    fin2mqtt-testprovider 0.1.0  (fin2mqtt_testprovider:TestProvider)"
        in result.stdout
    )
    version = run_cli("--version")
    assert version.stdout.startswith("fin2mqtt 0.2.0")


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["check", "--help"]])
def test_help_is_readable(args: list[str]):
    result = run_cli(*args)
    assert result.returncode == 0
    assert "configuration" in result.stdout or "COMMAND" in result.stdout
