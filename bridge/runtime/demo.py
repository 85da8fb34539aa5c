"""``fin2mqtt demo``: the real daemon, every installed plugin against its simulator, live view."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bridge.config.loader import LoadedConfig
from bridge.config.settings import MqttSettings, ProviderEntry, Settings, WebhookSettings
from bridge.links.webhook_server import ListenFailure, listen_failures
from bridge.model.errors import ConfigError
from bridge.runtime.daemon import EXIT_CANNOT_LISTEN, Daemon
from bridge.runtime.plugin_loader import resolve_instances
from bridge.runtime.sdnotify import Notifier
from bridge.testing.broker import Broker, make_broker
from bridge.testing.ports import free_port
from bridge.testing.recorder import MqttRecorder, Received
from bridge.testing.simulator import DemoSetup

SIMULATORS = "fin2mqtt.simulators"
HIDDEN = {"schema", "provider", "account", "id", "received_at", "source_time", "details", "kind"}
EVENT_KINDS = {"transaction", "order", "trade", "notification", "raw"}


def demo_setups() -> dict[str, DemoSetup]:
    """Every installed provider's simulator (entry-point group ``fin2mqtt.simulators``)."""
    setups: dict[str, DemoSetup] = {}
    for ep in importlib.metadata.entry_points(group=SIMULATORS):
        setups[ep.name] = ep.load()()
    return setups


def short(message: Received, width: int = 70) -> str:
    """A one-line summary of a payload: its telling fields as ``key=value``."""
    if not message.payload:
        return "(cleared)"
    try:
        data = json.loads(message.payload)
    except ValueError:
        return message.payload[:width].decode(errors="replace")
    if not isinstance(data, dict):
        return str(data)[:width]
    if "kind" not in data and "state" in data and len(data) == 1:
        return f"state={data['state']}"
    parts = [f"{k}={v}" for k, v in data.items() if k not in HIDDEN and v not in (None, {}, [])]
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def printer(out: TextIO, base: str) -> Callable[[Received], None]:
    """Prints each message as ``time  E  topic  summary`` (E marks an event, not retained)."""

    def show(message: Received) -> None:
        if message.topic.startswith("homeassistant/"):
            what = "discovery" if message.payload else "(cleared)"
            line = f"{message.topic}  {what}"
        else:
            line = f"{message.topic.removeprefix(base + '/')}  {short(message)}"
        kind = message.topic.rsplit("/", 1)[-1]
        flag = "E" if kind in EVENT_KINDS else " "
        print(f"{time.strftime('%H:%M:%S')} {flag} {line}", file=out, flush=True)

    return show


async def run_demo(
    mqtt: MqttSettings | None, seconds: float | None, out: TextIO = sys.stdout
) -> int:
    """Run the demo until Ctrl-C (or for ``seconds``); returns the exit code."""
    setups = demo_setups()
    if not setups:
        print("no installed plugin has a simulator; nothing to show", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fin2mqtt-demo-") as tmp:
        work = Path(tmp)
        broker: Broker | None = None
        if mqtt is None:
            broker = make_broker(work / "broker")
            kind = "mosquitto" if broker.name == "mosquitto" else "amqtt (pure Python)"
            print(f"starting an embedded MQTT broker ({kind}) …", file=out, flush=True)
            broker.start()
            mqtt = MqttSettings(host=broker.host, port=broker.port)
        try:
            code = await _run(setups, mqtt, work, seconds, out)
        except* ListenFailure as group:  # its free port taken in the meantime, say
            for message in listen_failures(group):
                print(f"error: {message}", file=sys.stderr)
            code = EXIT_CANNOT_LISTEN
        finally:
            if broker is not None:
                broker.stop()
        return code


async def _run(
    setups: dict[str, DemoSetup],
    mqtt: MqttSettings,
    work: Path,
    seconds: float | None,
    out: TextIO,
) -> int:
    async with contextlib.AsyncExitStack() as stack:
        for setup in setups.values():
            await setup.simulator.start()
            stack.push_async_callback(setup.simulator.stop)
        # a free port, not the default 8787: the demo runs beside a fin2mqtt service too
        webhooks = WebhookSettings(port=free_port())
        server = f"http://{webhooks.host}:{webhooks.port}"
        for setup in setups.values():
            if setup.webhooks is not None:
                setup.webhooks(server)
        entries = [
            ProviderEntry.model_validate({"type": t, "name": t, **s.settings()})
            for t, s in setups.items()
        ]
        settings = Settings(
            mqtt=mqtt, providers=entries, state_dir=work / "state", webhooks=webhooks
        )
        try:
            instances = resolve_instances(list(enumerate(entries)), "demo")
        except ConfigError as exc:
            for problem in exc.problems:
                print(f"error: {problem}", file=sys.stderr)
            return 2
        daemon = Daemon(LoadedConfig(settings, None, instances), Notifier(None))
        base = mqtt.base_topic
        sub = "mosquitto_sub"
        if not shutil.which(sub):
            sub += " (apt install mosquitto-clients)"
        print(
            f"fin2mqtt demo: providers {', '.join(setups)} against their simulators; "
            f"broker {mqtt.host}:{mqtt.port}; webhooks and /healthz on {server}\n"
            f"watch it yourself:  {sub} -h {mqtt.host} -p {mqtt.port} -t '{base}/#' -v\n"
            "Ctrl-C stops.  (E = event, QoS 1, not retained; the rest is retained state)\n",
            file=out,
            flush=True,
        )
        recorder = MqttRecorder(
            mqtt.host, mqtt.port, (f"{base}/#", "homeassistant/#"), on_message=printer(out, base)
        )
        await stack.enter_async_context(recorder)
        async with asyncio.TaskGroup() as tg:
            drivers = [tg.create_task(s.drive()) for s in setups.values() if s.drive]
            if seconds is not None:
                timer = tg.create_task(_stop_after(daemon, seconds))
                drivers.append(timer)
            code = await daemon.run()
            for task in drivers:
                task.cancel()
        # the broker may pass the last messages on a moment after the daemon is gone (amqtt
        # is slow): show them before closing the view
        offline = f"{base}/bridge/state"
        with contextlib.suppress(AssertionError):
            await recorder.wait_for(
                lambda ms: any(m.topic == offline and b"offline" in m.payload for m in ms),
                timeout=3,
            )
        print(f"\nstopped ({len(recorder.messages)} messages published)", file=out, flush=True)
        return code


async def _stop_after(daemon: Daemon, seconds: float) -> None:
    await asyncio.sleep(seconds)
    daemon.request_stop()


__all__ = ["run_demo", "short"]
