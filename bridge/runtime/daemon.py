"""Builds the parts, hands them their collaborators, and runs them under one TaskGroup."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import resource
import signal
import sqlite3
import time
from collections.abc import Awaitable
from typing import Any

from pydantic import JsonValue

from bridge import __version__
from bridge.config.loader import LoadedConfig
from bridge.config.settings import parse_shard
from bridge.links.webhook_server import ListenFailure, WebhookServer, listen_failures
from bridge.mqtt.bridge_requests import RequestHandler
from bridge.mqtt.discovery import Discovery, ProviderInfo
from bridge.mqtt.publisher import OFFLINE_TIMEOUT, Publisher
from bridge.mqtt.topics import TopicMap
from bridge.pipeline.context import InstanceContext, recall_statuses
from bridge.pipeline.hub import UP, Hub
from bridge.pipeline.journal import Journal
from bridge.pipeline.outbox import Outbox
from bridge.pipeline.persister import Persister
from bridge.pipeline.retained_state import RetainedState
from bridge.pipeline.seen_ids import SeenIds
from bridge.runtime.actions import ActionRegistry
from bridge.runtime.health import Health
from bridge.runtime.sdnotify import Notifier, watchdog_interval
from bridge.runtime.shard import ShardFilter
from bridge.runtime.supervisor import ProviderRunner

log = logging.getLogger("fin2mqtt")

EXIT_CANNOT_LISTEN = 3
"""Exit status when a server the configuration asks for cannot listen (a port in use)."""

STATS_INTERVAL = 30.0
HOUSEKEEPING_INTERVAL = 0.25
DEDUP_CAPACITY = 100_000
WEBHOOK_HIGH_WATER = 0.9
"""Webhooks are refused (503) while the outbox is fuller than this."""


class Daemon:
    """The running bridge: publisher, hub, and one supervised runner per provider instance."""

    def __init__(self, config: LoadedConfig, notifier: Notifier) -> None:
        self.config = config
        self.notifier = notifier
        settings = config.settings
        self.topics = TopicMap(settings.mqtt.base_topic, settings.node_id)
        self.seen = SeenIds(DEDUP_CAPACITY)
        self.outbox = Outbox(
            settings.mqtt.outbox_size,
            max_bytes=settings.mqtt.outbox_bytes,
            retained=RetainedState(),
            seen=self.seen,
        )
        self.journal = Journal(settings.state_dir, DEDUP_CAPACITY)
        self.persister = Persister(self.journal, self.outbox)
        ha = settings.homeassistant
        self.discovery = (
            Discovery(ha.discovery_prefix, self.topics, __version__) if ha.discovery else None
        )
        self.hub = Hub(
            self.topics,
            self.outbox,
            self.discovery,
            settings.mqtt.event_qos,
            cleanup_delay=settings.mqtt.cleanup_delay,
            max_payload=settings.mqtt.max_payload,
        )
        self.webhooks = WebhookServer(
            settings.webhooks,
            durable=self.outbox.sync,
            overloaded=lambda: self.outbox.above(WEBHOOK_HIGH_WATER),
        )
        self.runners: list[ProviderRunner] = []
        owns = ShardFilter(*parse_shard(settings.shard)).owns if settings.shard else None
        self.actions = ActionRegistry()
        for instance in config.instances:
            provider = instance.build()
            if not provider.restores_state:
                self.outbox.retained.keep_stale(instance.name)
            actions = tuple(provider.actions())
            self.actions.register(instance.name, actions)
            if self.discovery is not None:
                self.discovery.register(
                    ProviderInfo(
                        instance.name,
                        instance.provider_type,
                        provider.entities,
                        actions,
                        title=provider.display_name,
                    )
                )
            ctx = InstanceContext(provider, self.hub, self.webhooks)
            self.runners.append(ProviderRunner(provider, ctx, settings.supervisor, owns))
        self.requests = RequestHandler(
            self.topics,
            self.outbox,
            {
                "health": self._health_request,
                "info": self._info_request,
                "stats": self._stats_request,
                "action": self.actions.request,
                "resync": self._resync_request,
                "restart": self._restart_request,
                "discovery/refresh": self._discovery_refresh_request,
            },
        )
        self.health = Health(self, settings.health.interval)
        self.outbox.on_delivered = self.health.delivered
        if settings.metrics.enabled:
            from bridge.runtime.metrics import CONTENT_TYPE, Metrics

            metrics = Metrics(self.health, account_labels=settings.metrics.account_labels)
            self.webhooks.add_page("/metrics", metrics.render, CONTENT_TYPE)
        self.ha_status_topic = f"{ha.discovery_prefix}/status"
        mqtt = settings.mqtt
        if settings.node_id and mqtt.client_id is None:
            mqtt = mqtt.model_copy(update={"client_id": f"fin2mqtt-{settings.node_id}"})
        self.publisher = Publisher(
            mqtt,
            self.topics,
            self.outbox,
            info=self._info_payload,
            on_message=self._on_message,
            subscriptions=(self.topics.bridge_requests, self.ha_status_topic),
            on_connection=self._broker_changed,
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
        self._publish_buttons()
        stop = self._stop
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.notifier.status(self._status())
        log.info("fin2mqtt %s starting: %d provider instance(s)", __version__, len(self.runners))
        budget = settings.supervisor.stop_timeout
        try:
            async with asyncio.TaskGroup() as tg:
                publisher = tg.create_task(self.publisher.run(), name="mqtt-publisher")
                chores = [
                    tg.create_task(self.persister.run(), name="state-writer"),
                    tg.create_task(self._housekeeping(), name="housekeeping"),
                    tg.create_task(self.health.run(), name="health"),
                    tg.create_task(self.webhooks.run(), name="webhook-server"),
                    tg.create_task(self.requests.run(), name="requests"),
                ]
                if (interval := watchdog_interval()) is not None:
                    chores.append(tg.create_task(self._watchdog(interval), name="watchdog"))
                async with asyncio.TaskGroup() as providers:
                    tasks = [
                        providers.create_task(r.run(), name=f"provider-{r.provider.name}")
                        for r in self.runners
                    ]
                    # what start-up built (modules, models, schemas: ~40k objects) lives as long
                    # as the process: the collector need not walk it on every full collection
                    # (each ~15 ms at saturation, one every ~25k events)
                    gc.freeze()
                    self.notifier.ready(self._status())
                    log.info("ready (%.2f s after start)", time.monotonic() - self._started)
                    await stop.wait()
                    log.info("stopping")
                    self.notifier.stopping()
                    await self._stop_providers(tasks, budget * 0.4)
                await self._stop_publisher(publisher, budget * 0.55)
                for chore in chores:
                    chore.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.journal.close()
        waiting = self.outbox.pending_events + self.outbox.inflight
        if self.outbox.dropped:
            log.error("%d event(s) were dropped in this run (outbox full)", self.outbox.dropped)
        if waiting:
            kept = "kept for the next start" if self.outbox.persistent else "lost: no state file"
            log.warning("stopped; %d event(s) not delivered, %s", waiting, kept)
        else:
            log.info("stopped")
        return 0

    def _open_state(self) -> None:
        """Read what the previous run left: waiting events, delivered ids, retained topics."""
        try:
            loaded = self.journal.open()
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "state directory %s unusable (%s): events are kept in memory only, and "
                "delivered ids and retained topics are not remembered across restarts",
                self.config.settings.state_dir,
                exc,
            )
            return
        self.outbox.persistent = self.seen.persistent = self.outbox.retained.persistent = True
        self.seen.load(loaded.delivered)
        self.outbox.retained.load(loaded.owned)
        self.outbox.load(loaded.events)
        for runner in self.runners:
            if not runner.provider.restores_state:  # e.g. a failure counter builds on them
                kept = self.outbox.retained.kept_payloads(runner.provider.name)
                recall_statuses(runner.ctx.statuses, kept.values())
        gone = self.hub.clear_instances_gone({i.name for i in self.config.instances})
        if gone:
            log.info(
                "clearing %d retained topic(s) of provider instances no longer configured", gone
            )

    def _publish_buttons(self) -> None:
        """The bridge device and the providers' action buttons (static: known from the start)."""
        if self.discovery is None:
            return
        for config in self.discovery.bridge_configs():
            self.outbox.set_state(config.topic, config.encode())
        for instance in self.config.instances:
            for config, account in self.discovery.action_configs(instance.name):
                self.outbox.set_state(config.topic, config.encode(), owner=(instance.name, account))

    def _broker_changed(self, _up: bool) -> None:
        if not self._stop.is_set():  # after STOPPING, the status stays "stopping"
            self.notifier.status(self._status())

    def _status(self) -> str:
        """The STATUS= line: the broker's state and the providers."""
        mqtt = self.config.settings.mqtt
        state = "connected to" if self.publisher.connected.is_set() else "connecting to"
        return f"{state} MQTT broker {mqtt.host}:{mqtt.port}; {len(self.runners)} provider(s)"

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
        """Flush the outbox, publish offline, disconnect — or give up after ``timeout``.

        Time for the acknowledgement of ``offline`` is reserved; a publisher cancelled past the
        budget drops the connection without DISCONNECT, so the broker's will says offline.
        """
        self.publisher.stop(flush_timeout=max(timeout - OFFLINE_TIMEOUT - 0.2, 0.1))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("MQTT shutdown did not finish within %.1f s", timeout)
            task.cancel()

    async def _housekeeping(self) -> None:
        """Stale retained topics cleared when due, stats every 30 s."""
        last_stats = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            now = time.monotonic()
            if cleared := self.hub.clear_stale(now):
                log.info("cleared %d retained topic(s) the providers no longer publish", cleared)
            if now - last_stats >= STATS_INTERVAL:
                last_stats = now
                stats = json.dumps({"schema": 1, **self.stats()}, separators=(",", ":")).encode()
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
            "schema": 1,
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

    def _health_request(self, _request: JsonValue) -> JsonValue:
        """Healthy: connected to the broker, state writable, every link up or in fallback."""
        links = {r.provider.name: self._links(r) for r in self.runners}
        down = sorted(
            f"{name}/{account}" if account else name
            for name, states in links.items()
            for account, state in states.items()
            if state not in UP
        )
        problems: list[JsonValue] = [f"link {where} is not up" for where in down]
        if not self.publisher.connected.is_set():
            problems.append("not connected to the MQTT broker")
        if self.persister.failing:
            problems.append(f"state cannot be written: {self.persister.failing}")
        return {
            "healthy": not problems,
            "problems": problems,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "links": {
                name: {a or "": s for a, s in states.items()} for name, states in links.items()
            },
            "report": self.health.request(_request),  # what bridge/health holds, now
        }

    def _runner(self, request: JsonValue) -> ProviderRunner:
        if not isinstance(request, dict):
            raise ValueError('a resync request is a JSON object: {"instance": "<instance>"}')
        instance = request.get("instance")
        if not isinstance(instance, str) or not instance:
            raise ValueError("'instance' is missing (a string)")
        for runner in self.runners:
            if runner.provider.name == instance:
                return runner
        known = ", ".join(sorted(r.provider.name for r in self.runners)) or "none"
        raise ValueError(f"unknown instance '{instance}' (known: {known})")

    def _resync_request(self, request: JsonValue) -> Awaitable[JsonValue]:
        """Reconnect one instance's links now (each snapshot is taken again)."""
        runner = self._runner(request)

        async def resync() -> JsonValue:
            count = await runner.resync()
            log.info(
                "resync of %s asked: %d connection(s) reconnecting", runner.provider.name, count
            )
            return {"instance": runner.provider.name, "connections": count}

        return resync()

    def _restart_request(self, _request: JsonValue) -> Awaitable[JsonValue]:
        """The bridge's Restart button: every provider connection reconnects (not the process)."""

        async def restart() -> JsonValue:
            counts: dict[str, int] = {}
            for runner in self.runners:
                counts[runner.provider.name] = await runner.resync()
            log.info("restart asked: %d connection(s) reconnecting", sum(counts.values()))
            return {"connections": dict[str, JsonValue](counts)}

        return restart()

    def _discovery_refresh_request(self, _request: JsonValue) -> JsonValue:
        """Send every discovery config again, and the state after it."""
        if self.discovery is None:
            raise ValueError("Home Assistant discovery is off (homeassistant.discovery = false)")
        self._publish_buttons()
        self.outbox.republish_state()
        return {"retained_topics": len(self.outbox.retained)}

    @staticmethod
    def _links(runner: ProviderRunner) -> dict[str | None, str | None]:
        """The state of each of an instance's links, by account."""
        out: dict[str | None, str | None] = {}
        for connection in runner.connections:
            state = runner.ctx.link_state(connection.spec.account)
            out[connection.spec.account] = state.state if state else None
        return out

    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: outbox, drops, duplicates, reconnects, restarts."""
        providers = {
            r.provider.name: {
                "restarts": r.restarts,
                "parse_errors": r.ctx.parse_errors,
                "link": _overall(links := self._links(r)),
                "links": {account or "": state for account, state in links.items()},
            }
            for r in self.runners
        }
        return {
            "uptime_s": round(time.monotonic() - self._started, 1),
            "published": self.outbox.published,
            "outbox_events": self.outbox.pending_events,
            "outbox_state": self.outbox.pending_state,
            "inflight": self.outbox.inflight,
            "outbox_bytes": self.outbox.pending_bytes,
            "state_writes_failing": self.persister.failing,
            "retained_topics": len(self.outbox.retained),
            "dropped_events": self.outbox.dropped,
            "duplicate_events": self.hub.duplicates,
            "oversized_events": self.hub.oversized,
            "mqtt_connects": self.publisher.connects,
            "restarts": sum(p["restarts"] for p in providers.values()),
            "parse_errors": sum(p["parse_errors"] for p in providers.values()),
            "providers": providers,
        }


def _overall(links: dict[str | None, str | None]) -> str | None:
    """One state for an instance: the instance link's, else the worst of its accounts' links."""
    if None in links:
        return links[None]
    for state in ("auth_failed", "disconnected", "connecting", "fallback", "connected"):
        if state in links.values():
            return state
    return None


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
        code = await Daemon(config, notifier).run()
    except* ListenFailure as group:
        for message in listen_failures(group):
            log.error("%s", message)
        code = EXIT_CANNOT_LISTEN
    finally:
        notifier.close()
    return code
