"""The plugin boundary is enforced: a plugin importing a private module of the core fails lint."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

import bridge.api

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PLUGINS = ["axisor", "example", "hibachi", "ibex", "vezgo", "vezta"]


def ruff(source: str, path: str) -> subprocess.CompletedProcess[str]:
    """ruff check of ``source`` as if it were the file at ``path`` (nothing is written)."""
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--stdin-filename", path, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def private_modules() -> set[str]:
    found = set()
    for entry in (ROOT / "bridge").iterdir():
        name = entry.stem
        is_module = entry.suffix == ".py" or (entry / "__init__.py").exists()
        if is_module and name not in ("__init__", "api", "testing"):
            found.add(f"bridge.{name}")
    return found


def test_every_private_module_of_the_core_is_banned_for_plugins():
    banned = PYPROJECT["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert private_modules() <= set(banned), private_modules() - set(banned)


@pytest.mark.parametrize(
    "line",
    [
        "from bridge.links.websocket import WebSocketLink",
        "from bridge.links.tokens import TokenSettings",
        "import bridge.pipeline.context",
        "from bridge import pipeline",
        "from bridge.model.events import BalanceEvent",
    ],
)
def test_a_plugin_importing_a_private_module_fails_the_lint(line):
    source = f'"""A plugin module."""\n\n{line}\n\n__all__ = ["x"]\nx = 1\n'
    result = ruff(source, "plugins/example/fin2mqtt_example/probe.py")
    assert result.returncode == 1, result.stdout
    assert "TID251" in result.stdout
    assert "private to fin2mqtt" in result.stdout


def test_the_public_api_and_the_kit_pass_and_the_core_may_use_anything():
    plugin = '"""A plugin module."""\n\nfrom bridge.api import Provider\nfrom bridge.testing.simulator import WebSocketSimulator\n\n__all__ = ["Provider", "WebSocketSimulator"]\n'
    assert ruff(plugin, "plugins/example/fin2mqtt_example/probe.py").returncode == 0
    core = '"""A core module."""\n\nfrom bridge.pipeline.hub import Hub\n\n__all__ = ["Hub"]\n'
    assert ruff(core, "bridge/probe.py").returncode == 0


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugins_pin_a_compatible_range_of_the_core(plugin):
    meta = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())
    (core,) = [d for d in meta["project"]["dependencies"] if d.startswith("fin2mqtt")]
    spec = SpecifierSet(core.removeprefix("fin2mqtt"))
    assert version("fin2mqtt") in spec
    assert ".".join(version("fin2mqtt").split(".")[:2]) == bridge.api.API_VERSION
    assert "0.3.0" not in spec  # a new minor version of the API is not assumed compatible
