"""pytest fixtures of the plugin-author kit: ``broker``, ``recorder``, ``daemon_config``.

Enable them in a ``conftest.py`` with ``pytest_plugins = ["bridge.testing.fixtures"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bridge.testing.broker import Broker, make_broker
from bridge.testing.recorder import MqttRecorder


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker on a free port for this test only (mosquitto when installed)."""
    b = make_broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def recorder(broker: Broker) -> AsyncIterator[MqttRecorder]:
    """A subscriber to ``#`` on the test broker, recording everything it receives."""
    async with MqttRecorder(broker.host, broker.port) as rec:
        yield rec


@pytest.fixture
def daemon_config(broker: Broker, tmp_path: Path) -> Callable[..., str]:
    """Builds a TOML configuration pointing at the test broker, with fast test intervals."""

    def build(
        providers: str = "", *, base_topic: str = "fin2mqtt", extra: str = "", mqtt: str = ""
    ) -> str:
        return (
            f'state_dir = "{tmp_path / "state"}"\n'
            'log_level = "debug"\n'
            f"{extra}\n"
            "[mqtt]\n"
            f'host = "{broker.host}"\n'
            f"port = {broker.port}\n"
            f'base_topic = "{base_topic}"\n'
            "reconnect_min = 0.05\n"
            "reconnect_max = 0.5\n"
            f"{mqtt}\n"
            "[supervisor]\n"
            "restart_min = 0.05\n"
            "restart_max = 0.5\n"
            f"{providers}\n"
        )

    return build
