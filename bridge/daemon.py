"""Builds the parts, hands them their collaborators, and runs them under one TaskGroup."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sqlite3
import time
from typing import Any

from pydantic import JsonValue

from bridge import __version__
from bridge.context import InstanceContext
from bridge.dedup import SeenIds
from bridge.discovery import Discovery, ProviderInfo
from bridge.hub import Hub
from bridge.loader import LoadedConfig
from bridge.outbox import Outbox
from bridge.publisher import Publisher
from bridge.requests import RequestHandler
from bridge.sdnotify import Notifier, watchdog_interval
from bridge.supervisor import ProviderRunner
from bridge.topics import TopicMap
from bridge.webhooks import WebhookServer

log = logging.getLogger("fin2mqtt")

STATS_INTERVAL = 30.0
DEDUP_FLUSH_INTERVAL = 1.0


class Daemon:
    """The running bridge: publisher, hub, and one supervised runner per provider instance."""

    def __init__(self, config: LoadedConfig, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier
        settings = config.settings
        self.topics = TopicMap(settings.mqtt.base_topic)
        self.outbox = Outbox(settings.mqtt.outbox_size)
        self.seen = SeenIds(settings.state_dir / "seen-events.sqlite3")
        ha = settings.homeassistant
        self.discovery = (
            Discovery(ha.discovery_prefix, self.topics, __version__) if ha.discovery else None
        )
        self.hub = Hub(self.topics, self.outbox, self.seen, self.discovery, settings.mqtt.event_qos)
        self.webhooks = WebhookServer(settings.webhooks)
        self.runners: list[ProviderRunner] = []
        for instance in config.instances:
            provider = instance.build()
            if self.discovery is not None:
                self.discovery.register(
                    ProviderInfo(instance.name, instance.provider_type, provider.entities)
                )
            ctx = InstanceContext(provider, self.hub, self.webhooks)
            self.runners.append(ProviderRunner(provider, ctx, settings.supervisor))
        self.requests = RequestHandler(
            self.topics, self.outbox, {"info": self._info_request, "stats": self._stats_request}
        )
        self.ha_status_topic = f"{ha.discovery_prefix}/status"
        self.publisher = Publisher(
            settings.mqtt,
            self.topics,
            self.outbox,
            info=self._info_payload,
            on_message=self._on_message,
            subscriptions=(self.topics.bridge_requests, self.ha_status_topic),
        )
        self._started = time.monotonic()
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Stop as SIGTERM would (used by ``fin2mqtt demo --seconds``)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        settings = self.config.settings
        _raise_file_limit()
        self._open_state()
        stop = self._stop
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        broker = f"{settings.mqtt.host}:{settings.mqtt.port}"
        self.notifier.status(f"connecting to MQTT broker {broker}")
        log.info("fin2mqtt %s starting: %d provider instance(s)", __version__, len(self.runners))
        try:
            async with asyncio.TaskGroup() as tg:
                publisher = tg.create_task(self.publisher.run(), name="mqtt-publisher")
                chores = [
                    tg.create_task(self._flush_loop(), name="state-flush"),
                    tg.create_task(self.webhooks.run(), name="webhook-server"),
                ]
                if (interval := watchdog_interval()) is not None:
                    chores.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                async with asyncio.TaskGroup() as providers:
                    tasks = [
                        providers.create_task(r.run(), name=f"provider-{r.provider.name}")
                        for r in self.runners
                    ]
                    await self._announce_ready(stop, broker)
                    await stop.wait()
                    log.info("stopping")
                    self.notifier.stopping()
                    await self._stop_providers(tasks, settings.supervisor.stop_timeout * 0.4)
                await self._stop_publisher(publisher, settings.supervisor.stop_timeout * 0.5)
                for chore in chores:
                    chore.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.seen.close()
        log.info("stopped")
        return 0

    def _open_state(self) -> None:
        try:
            self.seen.open()
        except (OSError, sqlite3.Error) as exc:
            log.warning(
                "state directory %s unusable (%s): duplicate events are not remembered "
                "across restarts",
                self.config.settings.state_dir,
                exc,
            )
            self.seen.path = None

    async def _announce_ready(self, stop: asyncio.Event, broker: str) -> None:
        """READY=1 once the broker is connected (providers are already running)."""
        if not self.publisher.connected.is_set():
            log.info("waiting for MQTT broker %s", broker)
        waiter = asyncio.ensure_future(self.publisher.connected.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        if self.publisher.connected.is_set():
            status = f"connected to {broker}; {len(self.runners)} provider instance(s)"
            self.notifier.ready(status)
            log.info("ready (%.2f s after start)", time.monotonic() - self._started)

    async def _stop_providers(self, tasks: list[asyncio.Task[None]], timeout: float) -> None:
        """Give every link a clean stop, bounded in time, then cancel the runners."""
        try:
            async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
                for runner in self.runners:
                    tg.create_task(runner.close(), name=f"close-{runner.provider.name}")
        except TimeoutError:
            log.warning("links did not stop cleanly within %.1f s", timeout)
        for task in tasks:
            task.cancel()

    async def _stop_publisher(self, task: asyncio.Task[None], timeout: float) -> None:
        """Flush the outbox, publish offline, disconnect — or give up after ``timeout``."""
        self.publisher.stop(flush_timeout=timeout * 0.8)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("MQTT shutdown did not finish within %.1f s", timeout)
            task.cancel()

    async def _flush_loop(self) -> None:
        last_stats = 0.0
        while True:
            await asyncio.sleep(DEDUP_FLUSH_INTERVAL)
            try:
                await asyncio.to_thread(self.seen.write, self.seen.take_unsaved())
            except sqlite3.Error as exc:
                log.warning("could not save seen event ids: %s", exc)
            now = time.monotonic()
            if now - last_stats >= STATS_INTERVAL:
                last_stats = now
                stats = json.dumps(self.stats(), separators=(",", ":")).encode()
                self.outbox.set_state(self.topics.bridge_stats, stats)

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 at half the interval, only while the loop and the publisher are healthy."""
        period = interval / 2
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(period)
            lag = loop.time() - before - period
            if lag < period and self.publisher.healthy():
                self.notifier.watchdog()
            else:
                log.warning(
                    "watchdog not fed: loop lag %.2f s, publisher healthy: %s",
                    lag,
                    self.publisher.healthy(),
                )

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.ha_status_topic:
            if payload.strip().lower() == b"online":
                log.info("Home Assistant came online: re-sending discovery and state")
                self.outbox.republish_state()
            return
        op = self.topics.request_op(topic)
        if op is not None:
            self.requests.handle(op, payload)

    def _info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "plugins": self.config.plugin_versions(),
            "providers": [{"name": i.name, "type": i.provider_type} for i in self.config.instances],
            "config": self.config.redacted(),
        }

    def _info_payload(self) -> bytes:
        return json.dumps(self._info(), separators=(",", ":")).encode()

    def _info_request(self, _request: JsonValue) -> JsonValue:
        return self._info()

    def _stats_request(self, _request: JsonValue) -> JsonValue:
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: outbox, drops, duplicates, reconnects, restarts."""
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "published": self.outbox.published,
            "outbox_events": self.outbox.pending_events,
            "outbox_state": self.outbox.pending_state,
            "inflight": self.outbox.inflight,
            "dropped_events": self.outbox.dropped,
            "duplicate_events": self.hub.duplicates,
            "mqtt_connects": self.publisher.connects,
            "providers": {
                r.provider.name: {
                    "restarts": r.restarts,
                    "parse_errors": r.ctx.parse_errors,
                    "link": (s.state if (s := r.ctx.link_state()) else None),
                }
                for r in self.runners
            },
        }


def _raise_file_limit() -> None:
    """One socket per upstream link: lift the soft open-files limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)


async def run_daemon(config: LoadedConfig) -> int:
    """Run the daemon with systemd notifications when a service manager listens."""
    notifier = Notifier.from_env()
    try:
        return await Daemon(config, notifier).run()
    finally:
        notifier.close()
